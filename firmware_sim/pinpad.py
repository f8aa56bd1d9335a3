"""An encrypting PIN pad (EPP) on a pseudo-terminal, of the kind Chinese POS terminals drive over serial.

    python -m firmware_sim.pinpad --link /tmp/ttyPin [--tmk HEX32]

The pad holds a terminal master key (TMK, loaded at key injection: ``--tmk``) and up to 4 working PIN keys
loaded *encrypted under the TMK*. Asked for a PIN for a PAN, it waits for the cardholder and answers an ISO 9564
format-0 PIN block encrypted under the working key (TDES ECB, ``psec``). The clear PIN never leaves the pad:
it is keyed on the simulator's control channel (``pin 1234``), never sent through the terminal.

Frames, both ways: ``STX | LEN (2 bytes, big-endian: CMD + DATA) | CMD | DATA | ETX | LRC`` where LRC is the
XOR of every byte from LEN to ETX. A frame that fails its LRC or length is answered with NAK (0x15) and
ignored; the host sends it again. Answers carry ``CMD | 0x80`` and start with a status byte.

| command | data | answer (status, data) |
| --- | --- | --- |
| 0x31 LOAD KEY | slot (1..4) + 16-byte key under the TMK + 4-byte check value | 00; 0x21 check value wrong; 0x24 bad slot |
| 0x32 GET PIN | slot + timeout s (1) + min len + max len + PAN (ASCII digits) | when the entry ends: 00 + 8-byte block; 0x40 timed out; 0x41 cancelled on the pad; 0x42 cancelled by the terminal; 0x43 no PIN entered (bypass); 0x22 no key in slot; 0x23 bad PAN or lengths; 0x25 busy |
| 0x33 CANCEL | — | 00 (then the pending GET PIN answers 0x42) |
| 0x34 INFO | — | 00 + ASCII ``model=...;serial=...;keys=SLOTS`` |

Control lines on stdin: ``pin DIGITS`` (the cardholder keys a PIN and presses OK), ``bypass`` (OK with no
PIN), ``cancel`` (the cardholder presses cancel), ``expire`` (the pad's entry timeout fires now), ``fault
SPEC`` (``delay``, ``noise``, ``unplug`` as firmware_sim.faults), ``clear``, ``status``, ``unplug``,
``replug``, ``quit``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from firmware_sim import control
from firmware_sim.faults import FaultPlan
from firmware_sim.loop import EventLoop, serve_control
from firmware_sim.program import add_common_options, add_fault, then_status
from firmware_sim.pty_port import PtyPort, default_link

with warnings.catch_warnings():  # psec still reaches TripleDES through cryptography's old name
    warnings.simplefilter("ignore")
    import psec.des
    import psec.pinblock

STX, ETX, NAK = 0x02, 0x03, 0x15
LOAD_KEY, GET_PIN, CANCEL, INFO = 0x31, 0x32, 0x33, 0x34
OK, BAD_KCV, NO_KEY, BAD_INPUT, BAD_SLOT, BUSY = 0x00, 0x21, 0x22, 0x23, 0x24, 0x25
TIMED_OUT, CANCELLED_ON_PAD, CANCELLED_BY_TERMINAL, BYPASSED = 0x40, 0x41, 0x42, 0x43
#: a well-known test key, never a production one
DEFAULT_TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def lrc(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def frame(cmd: int, data: bytes = b"") -> bytes:
    body = (1 + len(data)).to_bytes(2, "big") + bytes([cmd]) + data + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


def tdes(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psec.des.decrypt_tdes_ecb(key, data) if decrypt else psec.des.encrypt_tdes_ecb(key, data)


def kcv(key: bytes) -> bytes:
    """The key's check value: the first 4 bytes of TDES-encrypting 8 zero bytes."""
    return tdes(key, bytes(8))[:4]


class PinPad:
    def __init__(self, port: PtyPort, tmk: bytes = DEFAULT_TMK, *, plan: FaultPlan | None = None,
                 loop: EventLoop | None = None, serial: str = "EPP0000001") -> None:
        self.port = port
        self.tmk = tmk
        self.plan = plan or FaultPlan()
        self.loop = loop or EventLoop()
        self.serial = serial
        self.keys: dict[int, bytes] = {}
        self.pending: dict[str, Any] | None = None  # the GET PIN waiting for the cardholder
        self._entry = 0  # which entry a timer belongs to
        self._buf = b""
        self.counters = {"frames": 0, "naks": 0, "pins": 0}
        self.unplugged = False

    # -- the line ---------------------------------------------------------------------------------------
    def plug(self) -> None:
        self.port.plug()
        self.loop.add_reader(self.port.master, self._on_readable)
        self.unplugged = False

    def unplug(self) -> None:
        if self.port.open:
            self.loop.remove_reader(self.port.master)
        self.port.unplug()
        self.unplugged = True
        self.pending = None

    def _send(self, data: bytes) -> None:
        wire = self.plan.noisy(data)
        delay = self.plan.take("delay")
        if delay:
            self.loop.call_later(delay.number("seconds", 0.5), lambda: self.port.write(wire))
        else:
            self.port.write(wire)

    def _answer(self, cmd: int, status: int, data: bytes = b"") -> None:
        self._send(frame(cmd | 0x80, bytes([status]) + data))

    def _on_readable(self) -> None:
        self._buf += self.port.read()
        while self._buf:
            start = self._buf.find(bytes([STX]))
            if start < 0:
                self._buf = b""
                return
            self._buf = self._buf[start:]
            if len(self._buf) < 3:
                return
            n = int.from_bytes(self._buf[1:3], "big")
            if n == 0 or n > 512:
                self._buf = self._buf[1:]
                self._nak()
                continue
            whole = 3 + n + 2
            if len(self._buf) < whole:
                return
            raw, self._buf = self._buf[:whole], self._buf[whole:]
            if raw[-2] != ETX or lrc(raw[1:-1]) != raw[-1]:
                self._nak()
                continue
            self.counters["frames"] += 1
            self._command(raw[3], raw[4:-2])

    def _nak(self) -> None:
        self.counters["naks"] += 1
        self.port.write(bytes([NAK]))

    # -- commands ---------------------------------------------------------------------------------------
    def _command(self, cmd: int, data: bytes) -> None:
        if cmd == LOAD_KEY:
            self._load_key(data)
        elif cmd == GET_PIN:
            self._get_pin(data)
        elif cmd == CANCEL:
            self._answer(CANCEL, OK)
            self._finish(CANCELLED_BY_TERMINAL)
        elif cmd == INFO:
            slots = ",".join(str(s) for s in sorted(self.keys)) or "-"
            self._answer(INFO, OK, f"model=POSGUARD-EPP-SIM;serial={self.serial};keys={slots}".encode())
        else:
            self._answer(cmd, BAD_INPUT)

    def _load_key(self, data: bytes) -> None:
        if len(data) != 21:
            self._answer(LOAD_KEY, BAD_INPUT)
            return
        slot, under_tmk, check = data[0], data[1:17], data[17:21]
        if not 1 <= slot <= 4:
            self._answer(LOAD_KEY, BAD_SLOT)
            return
        key = tdes(self.tmk, under_tmk, decrypt=True)
        if kcv(key) != check:
            self._answer(LOAD_KEY, BAD_KCV)
            return
        self.keys[slot] = key
        self._answer(LOAD_KEY, OK)

    def _get_pin(self, data: bytes) -> None:
        if self.pending is not None:
            self._answer(GET_PIN, BUSY)
            return
        if len(data) < 4 + 12:
            self._answer(GET_PIN, BAD_INPUT)
            return
        slot, timeout, low, high, pan = data[0], data[1], data[2], data[3], data[4:]
        if not (pan.isdigit() and 12 <= len(pan) <= 19 and 4 <= low <= high <= 12):
            self._answer(GET_PIN, BAD_INPUT)
            return
        if slot not in self.keys:
            self._answer(GET_PIN, NO_KEY)
            return
        self._entry += 1
        entry = self._entry
        self.pending = {"slot": slot, "pan": pan.decode(), "low": low, "high": high, "entry": entry}
        if timeout:
            self.loop.call_later(float(timeout), lambda: self._timer(entry))

    def _timer(self, entry: int) -> None:
        if self.pending is not None and self.pending["entry"] == entry:
            self._finish(TIMED_OUT)

    def _finish(self, status: int, data: bytes = b"") -> None:
        if self.pending is None:
            return
        self.pending = None
        self._answer(GET_PIN, status, data)

    # -- the cardholder (control channel) ---------------------------------------------------------------
    def key_pin(self, pin: str) -> dict[str, Any]:
        if self.pending is None:
            raise control.CommandError("no PIN entry is pending on the pad")
        p = self.pending
        if not (pin.isdigit() and p["low"] <= len(pin) <= p["high"]):
            raise control.CommandError(f"the pad takes {p['low']} to {p['high']} digits")
        block = tdes(self.keys[p["slot"]], psec.pinblock.encode_pinblock_iso_0(pin, p["pan"]))
        self.counters["pins"] += 1
        self._finish(OK, block)
        return self.status()

    def status(self) -> dict[str, Any]:
        return {"link": str(self.port.link), "tty": self.port.slave_name, "keys": sorted(self.keys),
                "pending": self.pending is not None, "counters": dict(self.counters),
                "unplugged": self.unplugged, "faults": self.plan.describe()}

    def handlers(self) -> dict[str, control.Handler]:
        def pin(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            if not args:
                raise control.CommandError("pin DIGITS")
            return self.key_pin(args[0])

        def fault(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            add_fault(self.plan, args, kw, self.unplug)
            return self.status()

        def simple(action: Any) -> control.Handler:
            return then_status(action, self.status)

        return {"pin": pin, "bypass": simple(lambda: self._finish(BYPASSED)),
                "cancel": simple(lambda: self._finish(CANCELLED_ON_PAD)),
                "expire": simple(lambda: self._finish(TIMED_OUT)), "fault": fault,
                "unplug": simple(self.unplug), "replug": simple(self.plug), "clear": simple(self.plan.clear),
                "status": simple(lambda: None), "quit": simple(self.loop.stop)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.pinpad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", type=Path, default=None, help="symlink to publish")
    parser.add_argument("--tmk", default=DEFAULT_TMK.hex(), help="the terminal master key, 32 hex digits")
    add_common_options(parser)
    args = parser.parse_args(argv)
    try:
        tmk = bytes.fromhex(args.tmk)
        if len(tmk) != 16:
            raise ValueError("--tmk must be 32 hex digits (a double-length TDES key)")
        plan = FaultPlan(args.fault, args.seed)
        port = PtyPort(args.link or default_link("pin"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pad = PinPad(port, tmk, plan=plan)
    pad.plug()
    serve_control(pad.loop, pad.handlers())
    control.emit("ready", {"link": str(port.link), "tty": port.slave_name, "tmk_kcv": kcv(tmk).hex().upper()})
    try:
        pad.loop.run()
    finally:
        pad.unplug()
    return 0


if __name__ == "__main__":
    sys.exit(main())
