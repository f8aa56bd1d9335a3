"""``posguard incidents [list|show ID|follow-ups] [--json]`` and ``posguard report [--since DATE] [--json]``.

Both read the journal: ``--journal PATH``, else the ``journal.path`` of ``--config FILE``, else
``$POSGUARD_JOURNAL`` or ``posguard-journal.db``. ``--json`` prints JSON Lines (one object per line).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from posguard.cli.exits import epilog
from posguard.cli.standalone import run_standalone

__all__ = ["add_flow_commands", "main", "DEFAULT_JOURNAL", "journal_path", "open_journal"]

DEFAULT_JOURNAL = os.environ.get("POSGUARD_JOURNAL", "posguard-journal.db")


def journal_path(args: argparse.Namespace) -> str:
    """``--journal`` wins; else the configuration's ``journal.path`` (``--config``); else the default."""
    if args.journal:
        return str(args.journal)
    if getattr(args, "config", None):
        from posguard.config import load_config

        if not os.path.exists(args.config):
            raise SystemExit(f"posguard: no configuration at {args.config}; pass --config FILE or --journal PATH")
        cfg, _problems = load_config(args.config, read_keys=False)  # only journal.path is needed here
        return cfg.journal
    return DEFAULT_JOURNAL


def _config_timezone(args: argparse.Namespace) -> str | None:
    """``terminal.timezone`` of ``--config`` (the report's days are local days), else None (UTC days)."""
    if not getattr(args, "config", None) or not os.path.exists(args.config):
        return None
    from posguard.config import load_config

    return load_config(args.config, read_keys=False)[0].timezone or None


def open_journal(path: str) -> object:
    """The journal, or a one-line error (exit 1) saying what is wrong with it."""
    from posguard.engine.journal import Journal, JournalError

    if not os.path.exists(path):
        raise SystemExit(f"posguard: no journal at {path}; pass --journal PATH or --config FILE, or set "
                         "POSGUARD_JOURNAL")
    try:
        return Journal(path)
    except JournalError as exc:
        print(f"posguard: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _cmd_incidents(args: argparse.Namespace) -> int:
    from posguard.engine.journal import Journal, JournalError
    from posguard.incidents import get_incident, load_incidents, render_incident, render_list

    journal = open_journal(journal_path(args))
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
            sys.stdout.write(json.dumps(inc.to_dict(), ensure_ascii=False) + "\n" if args.json
                             else render_incident(inc))
            return 0
        if args.action == "follow-ups":
            return _follow_ups(journal, args.json)
        incidents = load_incidents(journal)
        if args.json:
            sys.stdout.write("".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in incidents))
        else:
            sys.stdout.write(render_list(incidents))
    return 0


def _follow_ups(journal: Any, as_json: bool) -> int:
    """``posguard incidents follow-ups``: unsigned sales whose customer is to be contacted (guide 004)."""
    from posguard.flows.unsigned_follow_up import follow_ups

    now = time.time()
    tasks = [f for f in follow_ups(journal) if f.open]
    if as_json:
        sys.stdout.write("".join(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in tasks))
        return 0
    lines = [f"{'incident':>8}  {'transaction':<20} {'deadline (UTC)':<20} {'contact':<24} contacted"]
    for f in tasks:
        due = time.strftime("%Y-%m-%d %H:%M", time.gmtime(f.deadline)) + (" !" if now >= f.deadline else "")
        lines.append(f"{f.incident_id:>8}  {f.txn_id:<20} {due:<20} {f.contact or '-':<24} {f.contacted}"
                     + ("  escalated to the bank" if f.escalated else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _parse_date(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {text!r}: use YYYY-MM-DD") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from posguard.engine.journal import Journal
    from posguard.report import build_report, render_report

    journal = open_journal(journal_path(args))
    assert isinstance(journal, Journal)
    with journal:
        report = build_report(journal, since=args.since, timezone=_config_timezone(args))
    sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n" if args.json else render_report(report))
    return 0


def add_flow_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``incidents`` and ``report`` on a parent CLI."""
    inc = subparsers.add_parser("incidents", help="list or show incidents (masked)", epilog=epilog("incidents"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    inc.add_argument("action", nargs="?", choices=("list", "show", "follow-ups"), default="list",
                     help="follow-ups: unsigned sales whose customer is to be contacted (guide 004)")
    inc.add_argument("id", nargs="?", type=int, help="incident id (for show)")
    inc.add_argument("--json", action="store_true", help="JSON Lines: one object per incident")
    _journal_options(inc)
    inc.set_defaults(func=_cmd_incidents)
    rep = subparsers.add_parser("report", help="error statistics from the incidents", epilog=epilog("report"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("--since", type=_parse_date, metavar="DATE", help="YYYY-MM-DD (UTC)")
    rep.add_argument("--json", action="store_true", help="the report as one JSON line")
    _journal_options(rep)
    rep.set_defaults(func=_cmd_report)


def _journal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--journal", metavar="PATH", help="the journal (wins over --config; default $POSGUARD_JOURNAL "
                   "or posguard-journal.db)")
    p.add_argument("--config", metavar="FILE", help="the service's TOML file: read its journal.path")


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("posguard", add_flow_commands, argv)


if __name__ == "__main__":
    raise SystemExit(main())
