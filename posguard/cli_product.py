"""Product commands: ``posguard demo``, ``record``, ``replay``, ``capture import-pcap`` (and ``diagnose``, ``run``
when those parts are installed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_product_commands"]

DIALECT_CHOICES = ("cup", "iso87ascii")


def add_product_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a scripted trading day against the simulators, with every error kind",
                          description="Start the simulators (card in a private pcscd via vpcd, or the serial "
                          "GemPC Twin; the acquirer host) and run a scripted trading day through the real stack, "
                          "showing what was detected and corrected, then the day's incident report.")
    demo.add_argument("--dialect", choices=DIALECT_CHOICES, default="cup")
    demo.add_argument("--record", metavar="FILE", help="write a sanitised capture of the day (JSON Lines)")
    demo.add_argument("--reader", choices=("auto", "pcsc", "twin"), default="auto",
                      help="auto: pcscd + vpcd when pcscd is installed, else the serial Twin reader")
    demo.add_argument("--journal-dir", metavar="DIR", help="keep the day's journal here (default: a temporary "
                      "directory)")
    demo.set_defaults(func=_demo)

    rec = sub.add_parser("record", help="record the demo day into a capture file (quietly)")
    rec.add_argument("file")
    rec.add_argument("--dialect", choices=DIALECT_CHOICES, default="cup")
    rec.add_argument("--reader", choices=("auto", "pcsc", "twin"), default="auto")
    rec.set_defaults(func=_record)

    rep = sub.add_parser("replay", help="replay a capture: the incidents it holds and the corrections they get",
                         description="Deterministic (virtual time, no network) dry run: nothing is sent; the "
                         "corrections run on a scratch journal against the recorded answers. Exit 0 when the "
                         "capture replays, 1 when it cannot be read (the line is named).")
    rep.add_argument("file")
    rep.add_argument("--json", action="store_true", help="one JSON object per incident")
    rep.add_argument("--verbose", "-v", action="store_true", help="also print the replayed till's log")
    rep.set_defaults(func=_replay)

    cap = sub.add_parser("capture", help="capture file tools")
    capsub = cap.add_subparsers(dest="capture_command", metavar="COMMAND")
    imp = capsub.add_parser("import-pcap", help="turn a pcap of the host link (TCP) into a capture")
    imp.add_argument("pcap")
    imp.add_argument("output")
    imp.add_argument("--dialect", choices=("cup", "iso87ascii", "iso87", "iso87bcd"), default="cup")
    imp.add_argument("--framing", choices=("binary2", "ascii4", "bcd2"), default="binary2")
    imp.add_argument("--host-port", type=int, default=None,
                     help="the acquirer's TCP port (default: the port the first SYN went to)")
    imp.add_argument("--tid", default="")
    imp.add_argument("--mid", default="")
    imp.set_defaults(func=_import_pcap)
    cap.set_defaults(func=lambda ns: (cap.print_help(), 2)[1])

    from posguard.service.run import add_run_command

    add_run_command(sub)
    try:
        from posguard.diagnose.cli import add_diagnose_command
    except ModuleNotFoundError as exc:
        if exc.name not in ("posguard.diagnose", "posguard.diagnose.cli"):
            raise
    else:
        add_diagnose_command(sub)


def _demo(ns: argparse.Namespace) -> int:
    from posguard.demo import run_demo
    from posguard.demo.rig import SimulatorsMissing, load_simulators

    try:
        _, rig_error = load_simulators()
    except SimulatorsMissing as exc:
        print(f"posguard demo: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_demo(ns.dialect, record=ns.record, reader_kind=ns.reader, journal_dir=ns.journal_dir)
    except rig_error as exc:
        print(f"posguard demo: {exc}", file=sys.stderr)
        return 2
    if ns.record:
        print(f"capture written to {ns.record} (sanitised); replay it with: posguard replay {ns.record}")
    return 0 if result.incidents else 1


def _record(ns: argparse.Namespace) -> int:
    import io

    from posguard.demo import run_demo

    result = run_demo(ns.dialect, record=ns.file, reader_kind=ns.reader, out=io.StringIO())
    print(f"{ns.file}: {len(result.incidents)} incident(s) recorded in {result.seconds:.1f} s")
    return 0


def _replay(ns: argparse.Namespace) -> int:
    from posguard.capture import CaptureError
    from posguard.capture.replay import replay

    say = (lambda line: print(f"  {line}")) if ns.verbose and not ns.json else None
    try:
        result = replay(ns.file, say=say)
    except CaptureError as exc:
        print(f"posguard replay: {ns.file}: {exc}", file=sys.stderr)
        return 1
    try:
        for inc in result.incidents:
            if ns.json:
                print(json.dumps(inc.to_dict(), sort_keys=True))
            else:
                print(inc.line())
                for m in inc.messages:
                    print(f"    {m}")
        if not ns.json:
            kept = ", ".join(f"{n} {k}" for k, n in sorted(result.skipped.items()))
            print(f"{len(result.incidents)} incident(s) in {ns.file} ({result.capture.dialect}, "
                  f"{len(result.sent)} message(s) replayed, nothing sent"
                  + (f"; reader records not replayed: {kept}" if kept else "") + ")")
    finally:
        result.journal.close()
    return 0


def _import_pcap(ns: argparse.Namespace) -> int:
    from posguard.capture.pcap import PcapError, import_pcap

    try:
        n = import_pcap(ns.pcap, ns.output, dialect=ns.dialect, framing=ns.framing, host_port=ns.host_port,
                        tid=ns.tid, mid=ns.mid)
    except PcapError as exc:
        print(f"posguard capture import-pcap: {exc}", file=sys.stderr)
        return 1
    print(f"{ns.output}: {n} message(s) imported")
    return 0
