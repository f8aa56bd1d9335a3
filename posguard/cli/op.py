"""``posguard op``: the operator's client of a running ``posguard run`` (its operator socket).

``posguard op status`` sends one command and prints the answer; ``posguard op`` alone reads commands line by
line from the terminal (or a pipe) and prints each answer. Exit status: 0 when every answer was ``ok``, 1 when
one was refused, 2 when the service could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from posguard.cli.exits import epilog
from posguard.config import DEFAULT_CONFIG

__all__ = ["add_op_command"]


def add_op_command(sub: Any) -> None:
    p = sub.add_parser("op", help="send operator commands to the running service (posguard run)",
                       description=__doc__, epilog=epilog("op"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="*", metavar="COMMAND", help="one command, e.g. `status` or `sale 1250`")
    p.add_argument("--socket", metavar="PATH", help="the operator socket (default: operator.socket of --config)")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="print the answers as JSON lines")
    p.set_defaults(func=_op)


def _socket_path(ns: argparse.Namespace) -> str:
    if ns.socket:
        return str(ns.socket)
    from posguard.config import load_config

    cfg, _problems = load_config(ns.config, read_keys=False)
    return cfg.operator_socket


def _show(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer, sort_keys=True, ensure_ascii=False))
    elif not answer.get("ok"):
        print(f"refused: {answer.get('error', '?')}")
    else:
        shown = {k: v for k, v in answer.items() if k not in ("ok", "incidents") and v not in (None, [], {})}
        print("ok " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in shown.items()))
        for inc in answer.get("incidents", []):
            print(f"  incident {inc['incident']} [{inc['rule']}] -> {inc['outcome']}")


def _op(ns: argparse.Namespace) -> int:
    from posguard.service.operator import OperatorClient

    path = _socket_path(ns)
    if path == "stdin":
        print("posguard op: this service reads operator commands on its stdin (operator.socket = \"stdin\")",
              file=sys.stderr)
        return 2
    lines = [" ".join(ns.words)] if ns.words else None
    worst = 0
    try:
        with OperatorClient(path) as client:
            for line in lines if lines is not None else sys.stdin:
                if not line.strip():
                    continue
                answer = client.ask(line)
                _show(answer, ns.json)
                if not answer.get("ok"):
                    worst = 1
    except ConnectionError as exc:
        print(f"posguard op: {exc}", file=sys.stderr)
        return 2
    return worst
