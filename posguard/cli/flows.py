"""``posguard incidents [list|show ID] [--json]`` and ``posguard report [--since DATE] [--json]``."""

from __future__ import annotations

import argparse
import calendar
import json
import os
import sys
import time
from collections.abc import Sequence

__all__ = ["add_flow_commands", "main", "DEFAULT_JOURNAL"]

DEFAULT_JOURNAL = os.environ.get("POSGUARD_JOURNAL", "posguard-journal.db")


def _open(path: str) -> object:
    """The journal, or a one-line error (exit 1) saying what is wrong with it."""
    from posguard.engine.journal import Journal, JournalError

    if not os.path.exists(path):
        raise SystemExit(f"posguard: no journal at {path}; pass --journal PATH or set POSGUARD_JOURNAL")
    try:
        return Journal(path)
    except JournalError as exc:
        print(f"posguard: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _cmd_incidents(args: argparse.Namespace) -> int:
    from posguard.engine.journal import Journal, JournalError
    from posguard.incidents import get_incident, load_incidents, render_incident, render_list

    journal = _open(args.journal)
    assert isinstance(journal, Journal)
    with journal:
        if args.action == "show":
            if args.id is None:
                print("posguard incidents show: give the incident ID", file=sys.stderr)
                return 2
            try:
                inc = get_incident(journal, args.id)
            except JournalError as exc:
                print(f"posguard: {exc}", file=sys.stderr)
                return 1
            sys.stdout.write(json.dumps(inc.to_dict(), ensure_ascii=False, indent=2) + "\n" if args.json
                             else render_incident(inc))
            return 0
        incidents = load_incidents(journal)
        if args.json:
            sys.stdout.write(json.dumps([i.to_dict() for i in incidents], ensure_ascii=False, indent=2) + "\n")
        else:
            sys.stdout.write(render_list(incidents))
    return 0


def _parse_date(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {text!r}: use YYYY-MM-DD") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from posguard.engine.journal import Journal
    from posguard.report import build_report, render_report

    journal = _open(args.journal)
    assert isinstance(journal, Journal)
    with journal:
        report = build_report(journal, since=args.since)
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n" if args.json else render_report(report))
    return 0


def add_flow_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``incidents`` and ``report`` on a parent CLI."""
    inc = subparsers.add_parser("incidents", help="list or show incidents (masked)")
    inc.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    inc.add_argument("id", nargs="?", type=int, help="incident id (for show)")
    inc.add_argument("--json", action="store_true")
    inc.add_argument("--journal", default=DEFAULT_JOURNAL, metavar="PATH")
    inc.set_defaults(func=_cmd_incidents)
    rep = subparsers.add_parser("report", help="error statistics from the incidents")
    rep.add_argument("--since", type=_parse_date, metavar="DATE", help="YYYY-MM-DD (UTC)")
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--journal", default=DEFAULT_JOURNAL, metavar="PATH")
    rep.set_defaults(func=_cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posguard")
    add_flow_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
