"""``posguard card read`` and ``posguard readers``: read a chip card, list readers.

``card read`` is a technician's read that burns nothing (:mod:`posguard.emv.inspect`): selection, GPO, records,
the CVM list and the ATC (GET DATA 9F36) — no GENERATE AC, so the card's ATC does not move — unless ``--amount
MINOR`` asks for the first GENERATE AC at that amount, whose request data (CDOL1 with 9F02 = MINOR, the CVM
decision at that amount) and answer are printed under ``generate_ac``.

The lead's CLI calls :func:`add_card_commands`; ``python -m posguard.cli.card ...`` runs standalone.
Output is masked: PAN as 476173******0119, a keyed token instead of the PAN, never track data. While it waits
for a card and while a slow card is read, ``card read`` prints progress lines on stderr; ``--trace`` prints the
APDU exchange on stderr afterwards (also when the read failed), sanitised as a capture is: PANs replaced by test
PANs, the PIN block of a VERIFY zeroed, the cardholder's name blanked.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from posguard.capture.taps import RecordingReader, as_reader
from posguard.cli.exits import epilog
from posguard.cli.standalone import run_standalone
from posguard.drivers.errors import ReaderError
from posguard.drivers.reader import Reader, ReaderInfo
from posguard.drivers.waits import wait_for_card
from posguard.emv.errors import CardSessionError
from posguard.emv.inspect import inspect_card
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.extras import MissingExtra

TOKEN_KEY_ENV = "POSGUARD_PAN_TOKEN_KEY"
#: Serial ports probed for a GemPC Twin by ``readers`` (plus any given with --serial).
SERIAL_GLOBS = ("/dev/ttyS[0-3]", "/dev/ttyUSB*", "/dev/ttyACM*")
EXIT_OK, EXIT_CARD, EXIT_READER = 0, 2, 3


def add_card_commands(subparsers: Any) -> None:
    """Register ``card read`` and ``readers`` on an argparse subparsers object."""
    card = subparsers.add_parser("card", help="chip card operations")
    card_sub = card.add_subparsers(dest="card_command", required=True)
    read = card_sub.add_parser("read", help="wait for a card, read it without spending it, print the masked result",
                               epilog=epilog("card read"), formatter_class=argparse.RawDescriptionHelpFormatter)
    src = read.add_mutually_exclusive_group()
    src.add_argument("--reader", metavar="NAME", help="PC/SC reader name or prefix (default: first reader)")
    src.add_argument("--serial", metavar="PATH", help="GemPC Twin on this serial port (no pcscd)")
    read.add_argument("--json", action="store_true", help="print the result (or the error) as one JSON line")
    read.add_argument("--trace", action="store_true",
                      help="print the APDU trace on stderr, card data masked as in captures")
    read.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for a card")
    read.add_argument("--amount", type=int, default=None, metavar="MINOR",
                      help="run the first GENERATE AC at this amount (minor units) and print the ARQC request data "
                           "(CDOL1, the CVM decision at that amount); without it nothing is generated and the "
                           "card's ATC does not move")
    read.set_defaults(func=cmd_card_read)

    readers = subparsers.add_parser("readers", help="list PC/SC readers and GemPC Twin serial readers",
                                    epilog=epilog("readers"), formatter_class=argparse.RawDescriptionHelpFormatter)
    readers.add_argument("--json", action="store_true",
                         help='JSON Lines: one object per reader, then one {"problem": ...} per problem')
    readers.add_argument("--serial", metavar="PATH", action="append", default=[],
                         help="also probe this serial port for a GemPC Twin (repeatable)")
    readers.add_argument("--no-scan", action="store_true", help="do not probe /dev/ttyS*, ttyUSB*, ttyACM*")
    readers.set_defaults(func=cmd_readers)


def _token_key() -> tuple[bytes, bool]:
    """The PAN token key from $POSGUARD_PAN_TOKEN_KEY (hex); else a random one (tokens not comparable)."""
    value = os.environ.get(TOKEN_KEY_ENV, "")
    if value:
        return bytes.fromhex(value), True
    return secrets.token_bytes(32), False


def _open_reader(args: argparse.Namespace) -> Reader:
    if args.serial:
        from posguard.drivers.twin.reader import TwinReader

        return TwinReader(args.serial)
    from posguard.drivers.pcsc import PcscReader

    return PcscReader(args.reader)


def _error(args: argparse.Namespace, exc: Exception, code: int) -> int:
    notes = getattr(exc, "__notes__", [])
    if getattr(args, "json", False):
        print(json.dumps({"error": type(exc).__name__, "message": str(exc), "notes": notes}))
    else:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
    return code


class Watched(RecordingReader):
    """The reader ``card read`` uses: a capture tap keeps every APDU (for ``--trace``), and a progress line goes
    to ``out`` about every second while a slow card is being read."""

    def __init__(self, inner: Reader, out: TextIO, every: float = 1.0) -> None:
        super().__init__(inner)
        self.out, self.every = out, every
        self._start = self._told = 0.0

    def power_on(self) -> bytes:
        self._start = self._told = time.monotonic()
        return super().power_on()

    def transmit_raw(self, apdu: bytes) -> bytes:
        response = super().transmit_raw(apdu)
        now = time.monotonic()
        if now - self._told >= self.every:
            self._told = now
            print(f"reading the card: {len(self.apdus)} APDUs, {now - self._start:.1f} s", file=self.out, flush=True)
        return response

    def trace(self) -> list[str]:
        """The exchange as text, sanitised as a capture's ``apdu`` records are."""
        from posguard.capture.sanitize import Sanitiser, sanitise_apdu

        sanitiser = Sanitiser()
        for _c, r in self.apdus:  # learn every PAN first, so one read in a later answer is replaced everywhere
            sanitiser.learn_from_response(r)
        lines = [f"atr {self.atr.hex().upper()}"] if self.atr else []
        for c, r in self.apdus:
            ch, rh = sanitise_apdu(c, r, sanitiser)
            lines += [f"> {ch}", f"< {rh}"]
        return lines


def cmd_card_read(args: argparse.Namespace) -> int:
    key, stable = _token_key()
    cfg = EmvTerminal(pan_token_key=key)
    if args.amount is not None and not 0 <= args.amount <= 999_999_999_999:
        print(f"error: --amount {args.amount}: give the amount in minor units, 0 to 999999999999 (n12)",
              file=sys.stderr)
        return 2
    if not args.timeout > 0:
        print(f"error: --timeout {args.timeout:g}: give the seconds to wait for a card, more than 0", file=sys.stderr)
        return 2
    try:
        watched = Watched(_open_reader(args), sys.stderr)
    except (ReaderError, MissingExtra) as e:
        return _error(args, e, EXIT_READER)
    reader = as_reader(watched)
    try:
        print(f"waiting up to {args.timeout:g} s for a card in {reader.name} ...", file=sys.stderr, flush=True)
        wait_for_card(reader, args.timeout, progress=lambda s: print(
            f"waiting for a card: {s:.0f} s of {args.timeout:g}", file=sys.stderr, flush=True))
        session = inspect_card(reader, cfg, Transaction(amount=args.amount or 0),
                               generate_ac=args.amount is not None)
        reader.power_off()
    except ReaderError as e:
        return _error(args, e, EXIT_READER)
    except CardSessionError as e:
        return _error(args, e, EXIT_CARD)
    finally:
        if args.trace:
            for line in watched.trace():
                print(f"trace {line}", file=sys.stderr)
        reader.close()
    result = session.to_dict()
    result["reader"] = reader.name
    result["pan_token_stable"] = stable
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for k, v in result.items():
            print(f"{k:<{width}}  {v}")
        if not stable:
            print(f"(pan_token uses a random key: set {TOKEN_KEY_ENV} to compare tokens)", file=sys.stderr)
    return EXIT_OK


def discover(serial_ports: Sequence[str] = (), scan: bool = True) -> tuple[list[ReaderInfo], list[str]]:
    """PC/SC readers plus serial ports answering the Twin protocol; also returns problems found."""
    found: list[ReaderInfo] = []
    problems: list[str] = []
    try:
        from posguard.drivers.pcsc import list_readers

        found.extend(list_readers())
    except MissingExtra as e:
        problems.append(f"{e}: PC/SC readers not listed")
    except ReaderError as e:
        problems.append(str(e))
    from posguard.drivers.twin.reader import probe

    ports = list(serial_ports)
    if scan:
        ports += [p for pattern in SERIAL_GLOBS for p in sorted(glob.glob(pattern)) if p not in ports]
    for port in ports:
        info = probe(port)
        if info is not None:
            found.append(info)
    return found, problems


def cmd_readers(args: argparse.Namespace) -> int:
    found, problems = discover(args.serial, scan=not args.no_scan)
    if args.json:
        for r in found:
            print(json.dumps(r.to_dict()))
        for p in problems:
            print(json.dumps({"problem": p}))
    else:
        if not found:
            print("no readers found")
        for r in found:
            atr = r.atr.hex().upper() if r.atr else "-"
            card = "card present" if r.card_present else "no card"
            extra = f"  ({r.detail})" if r.detail else ""
            print(f"{r.transport:<12} {r.name}: {card}, ATR {atr}{extra}")
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
    return EXIT_OK if found or not problems else EXIT_READER


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("python -m posguard.cli.card", add_card_commands, argv, description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


if __name__ == "__main__":
    sys.exit(main())
