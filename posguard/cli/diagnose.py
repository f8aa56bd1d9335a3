"""``posguard diagnose``: the technician's check list (see :mod:`posguard.diagnose`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from posguard.cli.exits import epilog
from posguard.diagnose import CHECKS, DiagnoseConfig, exit_status, run_checks

__all__ = ["add_diagnose_command"]

_MARK = {"ok": "ok", "skip": "--", "warn": "WARN", "fail": "FAIL"}


def add_diagnose_command(sub: Any) -> None:
    p = sub.add_parser("diagnose", help="checks for field technicians (config, reader, card, host, journal, clock)",
                       description="Each check prints ok/warn/fail, the measured figure and what to do next. "
                       "Exit 0 all ok, 1 a warning, 2 a failure. Settings come from the service config "
                       "(--config) and can be overridden here.", epilog=epilog("diagnose"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="the service's TOML file (default /etc/posguard/posguard.toml if present)")
    p.add_argument("--check", action="append", choices=sorted(CHECKS), help="run only this check (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.add_argument("--reader", help="PC/SC reader name or prefix")
    p.add_argument("--serial", help="serial reader device (GemPC Twin)")
    p.add_argument("--pinpad", help="encrypting PIN pad serial device")
    p.add_argument("--host", type=_host_port, help="acquirer host[:port]")
    p.add_argument("--dialect", choices=("cup", "iso87ascii", "iso87", "iso87bcd"))
    p.add_argument("--framing", choices=("binary2", "ascii4", "bcd2"))
    p.add_argument("--journal", help="journal database")
    p.add_argument("--timezone", help="IANA zone of the host's fields 12/13 (terminal.timezone; default the box's)")
    p.add_argument("--soak", type=float, default=1.0, help="seconds of serial soak (default 1)")
    p.set_defaults(func=_diagnose)


def _host_port(text: str) -> tuple[str, int | None]:
    """``--host HOST[:PORT]``; a port that is not 1-65535 is refused by argparse (exit 2, naming --host).

    >>> _host_port("10.0.0.5:5000")
    ('10.0.0.5', 5000)
    """
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (sep and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST[:PORT] with a port 1-65535")
    return host, int(port) if port else None


#: the configuration keys diagnose reads: a value written there that is wrong changes what is checked
_READS = ("reader.kind", "reader.name", "reader.serial_port", "pinpad.port", "host.address", "host.port",
          "host.framing", "journal.path", "operator.socket", "terminal.dialect", "terminal.timezone")


class ConfigUnreadable(Exception):
    """The configuration file cannot be read at all: every check would run on defaults and mislead."""


def _written_keys(path: str) -> set[str]:
    """``section.key`` of every key the file sets (a key left out is not a problem for diagnose)."""
    import tomllib

    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return {f"{section}.{key}" for section, table in data.items() if isinstance(table, dict) for key in table}


def config_from(ns: argparse.Namespace, problems: list[str] | None = None) -> DiagnoseConfig:
    """The checks' settings: the configuration file, then the command line. ``problems`` receives what is wrong
    in the keys diagnose reads (a half-configured box is still diagnosed); an unreadable file raises
    :class:`ConfigUnreadable`."""
    import os

    from posguard.config import DEFAULT_CONFIG, load_config

    cfg = DiagnoseConfig(soak_seconds=ns.soak)
    path = ns.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if path:
        cfg.config_path = str(path)
        svc, found = load_config(path, read_keys=False)  # diagnose runs on a half-configured box too
        if any(p.key == "config" for p in found):
            raise ConfigUnreadable("; ".join(p.message for p in found if p.key == "config"))
        if problems is not None:
            written = _written_keys(path)
            problems += [str(p) for p in found if p.key in _READS and p.key in written]
        cfg.reader = svc.reader_name or None if svc.reader_kind == "pcsc" else None
        cfg.serial_port = (svc.serial_port or None) if svc.reader_kind == "twin" else None
        cfg.host, cfg.port = svc.host or None, svc.port or None
        cfg.dialect, cfg.framing, cfg.tid, cfg.mid = svc.dialect, svc.framing, svc.tid or cfg.tid, svc.mid or cfg.mid
        cfg.journal = svc.journal
        cfg.timezone = svc.timezone
        cfg.pinpad_port = svc.pinpad_port or None
        cfg.reader_kind = svc.reader_kind
        cfg.service_socket = svc.operator_socket if svc.operator_socket != "stdin" else None
    if ns.reader:
        cfg.reader = ns.reader
    if ns.serial:
        cfg.serial_port = ns.serial
    if ns.pinpad:
        cfg.pinpad_port = ns.pinpad
    if ns.reader or ns.serial:  # a reader named here is the one to check, whatever the configuration says
        cfg.reader_kind = "auto" if ns.reader and ns.serial else "pcsc" if ns.reader else "twin"
    if ns.host:
        host, port = ns.host
        cfg.host, cfg.port = host, port or cfg.port
    if ns.dialect:
        cfg.dialect = ns.dialect
    if ns.framing:
        cfg.framing = ns.framing
    if ns.journal:
        cfg.journal = ns.journal
    if ns.timezone:
        cfg.timezone = ns.timezone
    return cfg


def _diagnose(ns: argparse.Namespace) -> int:
    import sys

    problems: list[str] = []
    try:
        cfg = config_from(ns, problems)
    except ConfigUnreadable as exc:
        print(f"posguard diagnose: {exc}; no check run", file=sys.stderr)
        return 2
    for problem in problems:  # on stderr: stdout stays one JSON object per check
        print(f"posguard diagnose: configuration {problem}", file=sys.stderr)
    results = run_checks(cfg, ns.check)
    if ns.json:
        for r in results:
            print(json.dumps(r.to_dict(), sort_keys=True))
    else:
        width = max(len(r.name) for r in results)
        for r in results:
            print(f"{r.name:{width}}  {_MARK[r.verdict]:4}  {r.figure}")
            if r.advice and r.verdict in ("warn", "fail"):
                print(f"{'':{width}}        -> {r.advice}")
    return max(exit_status(results), 1 if problems else 0)
