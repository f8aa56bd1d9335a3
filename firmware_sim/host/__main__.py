"""``python -m firmware_sim.host``: run the simulated acquirer until SIGINT/SIGTERM or a ``stop`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .dialects import DIALECTS, describe
from .framing import FRAMINGS
from .mac import ALGORITHMS
from .rules import RuleSet
from .server import DAY, HostSimulator, OffsetScheduler, SimConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware_sim.host", description=__doc__)
    p.add_argument("--dialect", choices=sorted(DIALECTS), default="cup")
    p.add_argument("--framing", choices=FRAMINGS, default="binary2")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed on start)")
    p.add_argument("--control-port", type=int, default=None, help="JSON-lines control port (0 = any)")
    p.add_argument("--mac-algorithm", choices=ALGORITHMS, default=None)
    p.add_argument("--mac-key", default=None, help="MAC key in hex (test keys only)")
    p.add_argument("--mac-padding", type=int, choices=(1, 2), default=1)
    p.add_argument("--security", choices=("strict", "open"), default="strict",
                   help="strict (default): sign-on, fresh working keys and a MAC required; open: for tests of other "
                        "concerns")
    p.add_argument("--tmk", action="append", default=[], metavar="TID=HEX",
                   help="a terminal's master key (repeatable); others get the test TMK")
    p.add_argument("--key-life", type=float, default=24 * 3600.0, help="seconds a sign-on's keys stay good")
    p.add_argument("--rules", default=None, help="approval rules JSON file")
    p.add_argument("--ledger-dump", default=None, help="write the ledger as JSON here on exit")
    p.add_argument("--settlement-report", default=None, metavar="FILE",
                   help="write the acquirer's settlement report here on exit (.json: JSON, else CSV)")
    p.add_argument("--print-dialect", choices=sorted(DIALECTS), default=None)
    p.add_argument("--no-issuer", action="store_true", help="no card issuer: the approval rules decide alone")
    p.add_argument("--card-file", default=None, help="the issuer's card file (default: host/cardfile.json)")
    p.add_argument("--issuer-strict-unknown", action="store_true",
                   help="decline (RC 14) sales on cards not in the card file")
    p.add_argument("--pin-key", default=None, help="the host's clear working PIN key in hex (test keys only)")
    p.add_argument("--card-pin", action="append", default=[], metavar="PAN=PIN", help="a card's PIN (repeatable)")
    p.add_argument("--pin-tries", type=int, default=3, help="wrong PINs in a row before RC 75")
    p.add_argument("--require-pin-block", action=argparse.BooleanOptionalAction, default=True,
                   help="refuse a PIN CVM that carries no field 52 (default: on, as a real acquirer)")
    p.add_argument("--terminal-timezone", default="", help="IANA zone of the terminals (default CUP: Asia/Shanghai)")
    p.add_argument("--date-window", type=float, default=DAY,
                   help="refuse a local date further than this from the host's wall clock (seconds; default a day)")
    p.add_argument("--no-date-window", dest="date_window", action="store_const", const=None,
                   help="do not check the terminal's local date")
    p.add_argument("--clock-start", type=float, default=None, metavar="EPOCH",
                   help="start the host's clock here and let it run (tests against a terminal on virtual time); "
                        "default: the wall clock")
    args = p.parse_args(argv)

    if args.print_dialect:
        print(describe(args.print_dialect))
        return 0
    rules = None
    if args.rules:
        with open(args.rules, encoding="utf-8") as fh:
            rules = RuleSet.from_json(fh.read())
    config = SimConfig(
        dialect=args.dialect,
        framing=args.framing,
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        mac_algorithm=args.mac_algorithm,
        mac_key=bytes.fromhex(args.mac_key) if args.mac_key else None,
        mac_padding=args.mac_padding,
        issuer=not args.no_issuer,
        issuer_card_file=args.card_file,
        issuer_strict_unknown=args.issuer_strict_unknown,
        pin_key=bytes.fromhex(args.pin_key) if args.pin_key else None,
        card_pins=dict(item.split("=", 1) for item in args.card_pin),
        pin_tries=args.pin_tries,
        require_pin_block=args.require_pin_block,
        terminal_timezone=args.terminal_timezone,
        date_window=args.date_window,
        security=args.security,
        terminal_keys=dict(item.split("=", 1) for item in args.tmk),
        key_life=args.key_life,
    )
    scheduler = OffsetScheduler(args.clock_start) if args.clock_start is not None else None
    sim = HostSimulator(config, rules=rules, scheduler=scheduler).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(json.dumps({"port": sim.port, "control_port": sim.control_port, "dialect": args.dialect,
                      "framing": args.framing}), flush=True)
    while not done.wait(0.2):
        if sim.stopped:
            break
    if args.ledger_dump:
        sim.ledger.dump_json(args.ledger_dump)
    if args.settlement_report:
        from .report import write_report

        write_report(sim.ledger, args.dialect, args.settlement_report)
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
