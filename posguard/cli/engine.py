"""``posguard engine ...`` commands: print the state chart, inspect a journal.

The main CLI calls :func:`add_engine_commands` with its subparsers; ``main`` runs the group standalone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from posguard.cli.exits import epilog
from posguard.cli.standalone import run_standalone
from posguard.engine.chart import KINDS, render_dot, render_table

__all__ = ["add_engine_commands", "main"]


def _cmd_chart(args: argparse.Namespace) -> int:
    sys.stdout.write(render_dot(args.kind) if args.dot else render_table(args.kind))
    return 0


def _cmd_journal(args: argparse.Namespace) -> int:
    from posguard.cli.flows import journal_path, open_journal
    from posguard.engine.journal import Journal

    if args.path is None:
        if not args.config:
            print("posguard engine journal: give the journal's PATH or --config FILE", file=sys.stderr)
            return 2
        args.path = journal_path(argparse.Namespace(journal=None, config=args.config))
    journal = open_journal(args.path)  # a damaged journal is one line, exit 1
    assert isinstance(journal, Journal)
    with journal:
        problems = journal.integrity_check()
        print(f"{args.path}: schema {journal.schema_version()}, journal_mode={journal.pragma('journal_mode')}, "
              f"synchronous={journal.pragma('synchronous')}, integrity: {'; '.join(problems)}")
        for txn in journal.find_txns():
            print(f"  {txn.id}  {txn.kind:<10} {txn.state:<18} {txn.amount_minor:>10} {txn.currency} "
                  f"{txn.pan_masked or '-':<19} stan={txn.stan} rrn={txn.rrn} rc={txn.response_code}")
        pending = journal.saf_items(["armed", "queued", "sent"])
        for item in pending:
            print(f"  SAF {item}")
        return 0 if problems == ["ok"] else 1


def _build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chart = sub.add_parser("chart", help="print the transaction state chart", epilog=epilog("engine chart"),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    chart.add_argument("--dot", action="store_true", help="Graphviz dot instead of a text table")
    chart.add_argument("--kind", choices=KINDS, help="only this transaction kind")
    chart.set_defaults(func=_cmd_chart)
    journal = sub.add_parser("journal", help="check a journal file and list its transactions (masked)",
                             epilog=epilog("engine journal"), formatter_class=argparse.RawDescriptionHelpFormatter)
    journal.add_argument("path", nargs="?", help="the journal (wins over --config)")
    journal.add_argument("--config", metavar="FILE", help="the service's TOML file: read its journal.path")
    journal.set_defaults(func=_cmd_journal)


def add_engine_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``engine chart [--dot]`` and ``engine journal PATH`` to a parent CLI."""
    engine = subparsers.add_parser("engine", help="transaction engine: state chart, journal")
    _build(engine.add_subparsers(dest="engine_command", required=True))


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("posguard engine", _build, argv, dest="engine_command")


if __name__ == "__main__":
    raise SystemExit(main())
