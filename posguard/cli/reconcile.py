"""``posguard reconcile --report FILE [--config FILE] [--batch N] [--json] [--outbox DIR]``.

Imports the acquirer's settlement report (docs/settlement-report.md) and compares it with the journal in both
directions, batch by batch, as the service's ``reconcile`` verb does (pos-flows.md §A "Not arrived"): each batch's
reconciliation incident is raised once, resumed by a new report and closed when the report matches. Nothing is
sent to the host: only closed batches are compared. While the service runs it holds the journal: send it the verb
instead (``posguard op reconcile FILE``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from posguard.cli.exits import epilog
from posguard.cli.standalone import run_standalone

__all__ = ["add_reconcile_command", "main"]


class _NoHost:
    """The host link of an offline reconciliation: it never sends (a closed batch needs nothing sent)."""

    def exchange(self, request: Any, *, timeout: float) -> Any:
        from posguard.engine.ports import HostLinkError

        raise HostLinkError(f"posguard reconcile sends nothing to the host (asked to send a {request.mti})")

    def close(self) -> None:
        return None


def _cmd_reconcile(args: argparse.Namespace) -> int:
    from posguard.engine.acquirer_report import ReportError, load_report

    try:
        report = load_report(args.report)
    except ReportError as exc:
        print(f"posguard reconcile: {exc}", file=sys.stderr)
        return 2
    from posguard.config import DEFAULT_CONFIG, load_config

    path = args.config or DEFAULT_CONFIG
    try:
        cfg, problems = load_config(path)
    except OSError as exc:
        print(f"posguard reconcile: configuration {path}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    if problems:
        print(f"posguard reconcile: configuration {path}: " + "; ".join(str(p) for p in problems), file=sys.stderr)
        return 3
    from posguard.clock import SystemClock
    from posguard.engine.detectors import Detectors
    from posguard.engine.engine import TerminalConfig, TransactionEngine
    from posguard.engine.instance_lock import JournalInUse, JournalLock
    from posguard.engine.journal import Journal, JournalError
    from posguard.flows import FlowPolicies
    from posguard.incidents import get_incident
    from posguard.service.till import Till

    try:
        lock = JournalLock(cfg.journal).acquire()
    except JournalInUse as exc:
        print(f"posguard reconcile: {exc}; the service holds the journal: send it `reconcile {args.report}` "
              "(posguard op)", file=sys.stderr)
        return 3
    lines: list[str] = []
    try:
        clock = SystemClock()
        try:
            journal = Journal(cfg.journal, clock=clock)
        except JournalError as exc:
            print(f"posguard reconcile: {exc}", file=sys.stderr)
            return 3
        with journal:
            terminal = TerminalConfig(cfg.tid, cfg.mid, cfg.token_key, cfg.data_key, currency=cfg.currency,
                                      host_timeout=cfg.timeout)
            engine = TransactionEngine(journal, _NoHost(), cfg.dialect, terminal, clock, Detectors.default(clock))
            till = Till(engine, dialect=cfg.dialect, say=lines.append,
                        policies=FlowPolicies(timezone=cfg.timezone or None, outbox=args.outbox))
            found = till.do("reconcile", report=args.report, batch=args.batch)
            if till.refusal is not None:
                print(f"posguard reconcile: {till.refusal}", file=sys.stderr)
                return 3
            incidents = [get_incident(journal, i.incident_id) for i in (found or []) if i.incident_id is not None]
    finally:
        lock.release()
    open_ones = [i for i in incidents if i.status == "open"]
    if args.json:
        sys.stdout.write(json.dumps({"report": report.source, "sha256": report.digest, "said": lines,
                                     "incidents": [i.to_dict() for i in incidents]}, ensure_ascii=False) + "\n")
    else:
        for line in lines:
            print(line)
        for inc in incidents:
            print(f"incident {inc.id}: {inc.outcome} — {inc.reason}")
            for step in inc.steps:
                if str(step.get("name", "")).startswith("acquirer_contact"):
                    print(step.get("detail", ""))
    return 1 if open_ones else 0


def add_reconcile_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("reconcile", help="import the acquirer's settlement report and reconcile both ways",
                              epilog=epilog("reconcile"), formatter_class=argparse.RawDescriptionHelpFormatter,
                              description=__doc__)
    p.add_argument("--report", required=True, metavar="FILE", help="the settlement report (CSV or JSON)")
    p.add_argument("--config", metavar="FILE", help="the service's TOML file (default /etc/posguard/posguard.toml)")
    p.add_argument("--batch", type=int, metavar="N", help="compare this closed batch only (default: the batches the "
                   "report names; the last closed batch when it names none)")
    p.add_argument("--outbox", metavar="DIR", help="write the customer notices here (one JSON file each)")
    p.add_argument("--json", action="store_true", help="one JSON line: what was said and the incidents")
    p.set_defaults(func=_cmd_reconcile)


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("posguard", add_reconcile_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
