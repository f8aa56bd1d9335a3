"""The ``posguard`` command: one module per command group in this package.

``iso8583`` (codec), ``card`` (card read, readers), ``engine`` (chart, journal), ``flows`` (incidents, report),
``reconcile`` (the acquirer's settlement report), ``demo``, ``capture`` (record, replay, capture import-pcap),
``run`` (the service), ``op`` (its operator client),
``diagnose`` and ``keygen`` (the key files).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from posguard import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posguard",
        description="Terminal-side POS error handler: ISO 8583 codec, card readers, transaction engine and "
        "correction flows.",
    )
    parser.add_argument("--version", action="version", version=f"posguard {__version__}")
    # Imported here rather than at the top so that ``python -m posguard.cli.card`` (a group run standalone) does
    # not find its own module already imported by this package.
    from posguard.cli import capture, card, demo, diagnose, engine, flows, iso8583, keygen, op, reconcile, run

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    iso8583.add_iso8583_commands(sub)
    card.add_card_commands(sub)
    engine.add_engine_commands(sub)
    flows.add_flow_commands(sub)
    reconcile.add_reconcile_command(sub)
    demo.add_demo_command(sub)
    capture.add_capture_commands(sub)
    run.add_run_command(sub)
    op.add_op_command(sub)
    diagnose.add_diagnose_command(sub)
    keygen.add_keygen_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        result = ns.func(ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # a one-shot command whose reader went away (``posguard incidents | head``) ended as asked; the service
        # handles its own streams and never ends here quietly
        return 1 if ns.command == "run" else 0
    return int(result or 0)
