"""``posguard demo``: a scripted trading day against the simulators (see :mod:`posguard.demo`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from posguard.cli.exits import epilog

__all__ = ["DIALECT_CHOICES", "add_demo_command"]

DIALECT_CHOICES = ("cup", "iso87ascii")


def add_demo_command(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a scripted trading day against the simulators, with every error kind",
                          description="Start the simulators (card in a private pcscd via vpcd, or the serial "
                          "GemPC Twin; the acquirer host) and run a scripted trading day through the real stack, "
                          "showing what was detected and corrected, then the day's incident report.",
                          epilog=epilog("demo"), formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--dialect", choices=DIALECT_CHOICES, default="cup")
    demo.add_argument("--record", metavar="FILE", help="write a sanitised capture of the day (JSON Lines)")
    demo.add_argument("--reader", choices=("auto", "pcsc", "twin"), default="auto",
                      help="auto: pcscd + vpcd when pcscd is installed, else the serial Twin reader")
    demo.add_argument("--journal-dir", metavar="DIR", help="keep the day's journal here (default: a temporary "
                      "directory)")
    demo.set_defaults(func=_demo)



def _demo(ns: argparse.Namespace) -> int:
    from posguard.demo import run_demo
    from posguard.demo.rig import SimulatorsMissing, load_simulators

    try:
        _, rig_error = load_simulators()
    except SimulatorsMissing as exc:
        print(f"posguard demo: {exc}", file=sys.stderr)
        return 2
    reader_kind = ns.reader
    if reader_kind in ("auto", "pcsc"):
        from posguard.extras import MissingExtra

        try:
            import posguard.drivers.pcsc  # noqa: F401 - only whether the pcsc extra is there
        except MissingExtra as exc:
            if reader_kind == "pcsc":
                print(f"posguard demo: --reader pcsc: {exc}", file=sys.stderr)
                return 2
            print(f"posguard demo: {exc}; the day uses the serial Twin reader", file=sys.stderr)
            reader_kind = "twin"
    try:
        result = run_demo(ns.dialect, record=ns.record, reader_kind=reader_kind, journal_dir=ns.journal_dir)
    except rig_error as exc:
        print(f"posguard demo: {exc}", file=sys.stderr)
        return 2
    if ns.record:
        print(f"capture written to {ns.record} (sanitised); replay it with: posguard replay {ns.record}")
    return 0 if result.incidents else 1
