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
from .server import HostSimulator, SimConfig


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
    p.add_argument("--print-dialect", choices=sorted(DIALECTS), default=None)
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
        security=args.security,
        terminal_keys=dict(item.split("=", 1) for item in args.tmk),
        key_life=args.key_life,
    )
    sim = HostSimulator(config, rules=rules).start()
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
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
