"""``posguard record``, ``replay`` and ``capture import-pcap``: capture files of a trading day."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from posguard.cli.demo import DIALECT_CHOICES
from posguard.cli.exits import epilog

__all__ = ["add_capture_commands"]


def add_capture_commands(sub: Any) -> None:
    rec = sub.add_parser("record", help="record the demo day into a capture file (quietly)", epilog=epilog("record"),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rec.add_argument("file")
    rec.add_argument("--dialect", choices=DIALECT_CHOICES, default="cup")
    rec.add_argument("--reader", choices=("auto", "pcsc", "twin"), default="auto")
    rec.set_defaults(func=_record)

    rep = sub.add_parser("replay", help="replay a capture: the incidents it holds and the corrections they get",
                         description="Deterministic (virtual time, no network) dry run: nothing is sent; the "
                         "corrections run on a scratch journal against the recorded answers. Exit 0 when the "
                         "capture replays, 1 when it cannot be read (the line is named).",
                         epilog=epilog("replay"), formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("file")
    rep.add_argument("--json", action="store_true", help="one JSON object per incident")
    rep.add_argument("--verbose", "-v", action="store_true", help="also print the replayed till's log")
    rep.set_defaults(func=_replay)

    cap = sub.add_parser("capture", help="capture file tools")
    capsub = cap.add_subparsers(dest="capture_command", metavar="COMMAND")
    imp = capsub.add_parser("import-pcap", help="turn a pcap or pcapng of the host link (TCP) into a capture",
                            description="Reads pcap and pcapng (Wireshark's default), link types Ethernet, Linux "
                            "cooked SLL and SLL2 (tcpdump -i any), loopback/null and raw IP, IPv4 and IPv6; each "
                            "TCP connection to the host port is reassembled (retransmissions dropped, out-of-order "
                            "segments put back in order). Exit 1 with one line naming the packet when it cannot.",
                            epilog=epilog("capture import-pcap"), formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("pcap", help="the .pcap or .pcapng file")
    imp.add_argument("output")
    imp.add_argument("--dialect", choices=("cup", "iso87ascii", "iso87", "iso87bcd"), default="cup")
    imp.add_argument("--framing", choices=("binary2", "ascii4", "bcd2"), default="binary2")
    imp.add_argument("--host-port", type=int, default=None,
                     help="the acquirer's TCP port (default: the port the first SYN went to)")
    imp.add_argument("--tid", default="", help="terminal id of the capture (default: field 41 of the first request)")
    imp.add_argument("--mid", default="", help="merchant id of the capture (default: field 42 of the first request)")
    imp.set_defaults(func=_import_pcap)
    cap.set_defaults(func=lambda ns: (cap.print_help(), 2)[1])


def _record(ns: argparse.Namespace) -> int:
    import io

    from posguard.demo import run_demo

    result = run_demo(ns.dialect, record=ns.file, reader_kind=ns.reader, out=io.StringIO())
    print(f"{ns.file}: {len(result.incidents)} incident(s) recorded in {result.seconds:.1f} s")
    return 0


def _replay(ns: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from posguard.capture import CaptureError
    from posguard.capture.replay import UNDATED_START, replay
    from posguard.service.till import Till

    say = (lambda line: print(f"  {line}")) if ns.verbose and not ns.json else None
    try:
        result = replay(ns.file, desk=Till.for_replay, say=say)
    except CaptureError as exc:
        print(f"posguard replay: {ns.file}: {exc}", file=sys.stderr)
        return 1
    try:
        side = sys.stderr if ns.json else sys.stdout  # --json keeps standard output one incident per line
        for line, op, why in result.refused:  # an action that did nothing is said, never skipped quietly
            print(f"refused at line {line}: {op}: {why}", file=side)
        for line, key in result.capture.ignored:  # an author's own key (a "comment"): read past, and said
            print(f"ignored at line {line}: the key {key}, which no record kind defines", file=side)
        if not result.capture.header.get("started"):  # dates on the wire, expiry and deadlines follow from it
            day = datetime.fromtimestamp(UNDATED_START, UTC).isoformat(timespec="seconds")
            print(f"line 1: the header has no \"started\": replayed as of {day} (write the capture's own time, "
                  "e.g. \"started\": \"2026-11-30T09:00:00+00:00\")", file=side)
        if not ns.verbose or ns.json:  # (the verbose log has them already)
            for event in result.late_answers:
                print(f"late answer: {event.mti} STAN {event.stan} rc {event.response_code}: {event.detail}",
                      file=side)
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
        result.close()  # the scratch journal goes with it
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
