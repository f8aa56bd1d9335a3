"""``posguard run``: the command line of the terminal service (:mod:`posguard.service.run`)."""

from __future__ import annotations

import argparse
from typing import Any

from posguard.cli.exits import epilog
from posguard.config import DEFAULT_CONFIG
from posguard.logs import LEVELS
from posguard.service import run as service

__all__ = ["add_run_command"]


def add_run_command(sub: Any) -> None:
    p = sub.add_parser("run", help="the terminal service (reader, engine, host link, flows, operator interface)",
                       description=service.__doc__, epilog=epilog("run"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--stdin", action="store_true", help="operator commands on stdin (answers on stdout)")
    p.add_argument("--record", metavar="FILE", help="write a sanitised capture of the session")
    p.add_argument("--check-config", action="store_true", help="only list the configuration's problems")
    p.add_argument("--log-level", choices=LEVELS, default="info",
                   help="the lowest level logged (default info; link failures are warnings)")
    p.set_defaults(func=_run)
    h = sub.add_parser("supervisor-hash", help="read the supervisor's credential on stdin; print the scrypt line "
                                               "for supervisor.credential", epilog=epilog("supervisor-hash"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    h.set_defaults(func=_supervisor_hash)


def _run(ns: argparse.Namespace) -> int:
    return service.serve(ns.config, stdin=ns.stdin, record=ns.record, check_config=ns.check_config,
                         log_level=ns.log_level)


def _supervisor_hash(_ns: argparse.Namespace) -> int:
    import getpass
    import sys

    from posguard.service.supervisor import hash_credential

    secret = getpass.getpass("supervisor credential: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not secret:
        print("posguard supervisor-hash: the credential is empty; nothing printed", file=sys.stderr)
        return 2
    print(hash_credential(secret))
    return 0
