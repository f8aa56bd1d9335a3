"""The encrypting PIN pad (EPP) on a serial line: load a working PIN key, ask for a PIN, cancel.

The pad never gives the clear PIN: :meth:`PinPad.get_pin_block` returns the ISO 9564 format-0 block encrypted
under the working key, which goes to field 52 as it is. The protocol (frames, commands, status codes) is the one
:mod:`firmware_sim.pinpad` documents — ``STX | LEN(2) | CMD | DATA | ETX | LRC``, answers ``CMD | 0x80`` with a
status byte; a NAK (0x15) asks for the frame again.

Every failure is a typed :class:`PinPadError` whose text says what to do; none carries the PAN, and the PIN
block is never part of a repr, a log or an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "PinPad", "PinPadError", "PinPadNotResponding", "PinPadFrameError", "KeyCheckFailed", "NoWorkingKey",
    "PinEntryTimeout", "PinEntryCancelled", "PinBypassed", "PinPadBusy", "PinPadCounters", "open_pin_pad",
]

STX, ETX, NAK = 0x02, 0x03, 0x15
LOAD_KEY, GET_PIN, CANCEL, INFO = 0x31, 0x32, 0x33, 0x34


class PinPadError(Exception):
    """Base of the PIN pad's failures; ``hint`` says what a person should check."""

    hint = "check the PIN pad's cable and power, then `posguard diagnose`"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class PinPadNotResponding(PinPadError):
    """No (valid) answer within the time the command allows."""


class PinPadFrameError(PinPadError):
    """The pad's answer is not a frame of its protocol (or never got through after retries)."""


class KeyCheckFailed(PinPadError):
    """The pad decrypted the working key under its TMK and the check value differs: wrong TMK or key."""

    hint = "sign on again to get fresh keys; if it persists, the pad's TMK differs from the terminal's"


class NoWorkingKey(PinPadError):
    """No working PIN key in that slot: sign on first."""

    hint = "sign on (the working keys come with the sign-on answer)"


class PinEntryTimeout(PinPadError):
    """The cardholder did not finish the PIN in time."""

    hint = "ask the customer to enter the PIN again, or choose another cardholder verification"


class PinEntryCancelled(PinPadError):
    """The PIN entry was cancelled — on the pad (``by="cardholder"``) or by the terminal (``by="terminal"``)."""

    def __init__(self, message: str, *, by: str) -> None:
        super().__init__(message, hint="start the sale again if the customer wants to pay")
        self.by = by


class PinBypassed(PinPadError):
    """The cardholder pressed OK with no PIN (PIN bypass): the card's CVM list decides what follows."""

    hint = "continue with the next CVM the card allows (signature), or decline"


class PinPadBusy(PinPadError):
    """A PIN entry is already in progress on the pad."""


_STATUS: dict[int, tuple[type[PinPadError], str]] = {
    0x21: (KeyCheckFailed, "the working key's check value does not match after decryption under the TMK"),
    0x22: (NoWorkingKey, "the pad has no working PIN key in that slot"),
    0x23: (PinPadError, "the pad refused the request's data (PAN or PIN lengths)"),
    0x24: (PinPadError, "no such key slot on the pad"),
    0x25: (PinPadBusy, "a PIN entry is already in progress on the pad"),
    0x40: (PinEntryTimeout, "the cardholder did not enter the PIN in time"),
    0x43: (PinBypassed, "the cardholder pressed OK without a PIN"),
}


class SerialLine(Protocol):
    """What the driver needs of a serial port (pyserial's ``Serial`` has it)."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...

    @property
    def timeout(self) -> float | None: ...


@dataclass
class PinPadCounters:
    frames_sent: int = 0
    frames_received: int = 0
    naks_received: int = 0
    resends: int = 0
    pin_entries: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def lrc(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def encode(cmd: int, data: bytes = b"") -> bytes:
    body = (1 + len(data)).to_bytes(2, "big") + bytes([cmd]) + data + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


class PinPad:
    """One PIN pad on ``line`` (a pyserial ``Serial`` whose read timeout is short: it is polled)."""

    def __init__(self, line: SerialLine, *, name: str = "pinpad", command_timeout: float = 2.0, retries: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.line = line
        self.name = name
        self.command_timeout = command_timeout
        self.retries = retries
        self.clock = clock
        self.counters = PinPadCounters()
        self._buf = b""
        self._last = b""  # the last frame sent: what a NAK asks for again

    def __repr__(self) -> str:
        return f"PinPad({self.name!r})"

    # -- commands ----------------------------------------------------------------------------------------
    def info(self) -> dict[str, str]:
        """``model``, ``serial`` and ``keys`` (the loaded slots) as the pad reports them."""
        data = self._call(INFO, b"")
        return dict(part.split("=", 1) for part in data.decode("ascii", "replace").split(";") if "=" in part)

    def load_working_key(self, key_under_tmk: bytes, check_value: bytes, *, slot: int = 1) -> None:
        """Load a working PIN key, encrypted under the pad's TMK, with its check value (4 bytes)."""
        if len(key_under_tmk) != 16 or len(check_value) != 4 or not 1 <= slot <= 4:
            raise PinPadError("a working key is 16 bytes under the TMK with a 4-byte check value, slot 1 to 4")
        self._call(LOAD_KEY, bytes([slot]) + key_under_tmk + check_value)

    def get_pin_block(self, pan: Any, *, slot: int = 1, timeout: int = 30, min_len: int = 4, max_len: int = 12,
                      cancel: threading.Event | None = None) -> bytes:
        """Ask the cardholder for a PIN; the 8-byte format-0 block encrypted under the working key.

        ``pan`` may be a :class:`posguard.sensitive.Pan`; it goes to the pad only. ``cancel``, when set from
        another thread (the operator, SIGTERM), cancels the entry on the pad.
        """
        digits = pan.reveal() if hasattr(pan, "reveal") else str(pan)
        if not (digits.isdigit() and 12 <= len(digits) <= 19):
            raise PinPadError("the PIN block needs a PAN of 12 to 19 digits")
        if not (1 <= timeout <= 255 and 4 <= min_len <= max_len <= 12):
            raise PinPadError("PIN entry: timeout 1-255 s, lengths 4 to 12")
        data = bytes([slot, timeout, min_len, max_len]) + digits.encode("ascii")
        self._send(encode(GET_PIN, data))
        self.counters.pin_entries += 1
        deadline = self.clock() + timeout + self.command_timeout  # the pad times out first; this is the guard
        cancelled = False
        while True:
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True
                self._send(encode(CANCEL))
            slice_end = min(deadline, self.clock() + 0.1)  # short slices: a cancel is seen at once
            answer = self._read_frame(slice_end, expect=(GET_PIN | 0x80, CANCEL | 0x80))
            if answer is None:
                if self.clock() < deadline:
                    continue
                self._count("timeout")
                raise PinPadNotResponding(f"{self.name}: no answer to the PIN entry within {timeout} s")
            cmd, status, payload = answer
            if cmd == CANCEL | 0x80:
                continue  # the cancel was taken; the entry's own answer follows
            if status == 0x00:
                if len(payload) != 8:
                    raise PinPadFrameError(f"{self.name}: a PIN block must be 8 bytes, got {len(payload)}")
                return payload
            if status in (0x41, 0x42):
                self._count("cancelled")
                by = "cardholder" if status == 0x41 else "terminal"
                raise PinEntryCancelled(f"{self.name}: PIN entry cancelled by the {by}", by=by)
            raise self._error(status)

    def cancel(self) -> None:
        """Cancel an entry in progress (from the thread that waits, use ``get_pin_block(cancel=...)``)."""
        self._send(encode(CANCEL))

    def close(self) -> None:
        self.line.close()

    # -- the line ----------------------------------------------------------------------------------------
    def _call(self, cmd: int, data: bytes) -> bytes:
        request = encode(cmd, data)
        self._send(request)
        answer = self._read_frame(self.clock() + self.command_timeout, expect=(cmd | 0x80,))
        if answer is None:
            self._count("timeout")
            raise PinPadNotResponding(f"{self.name}: no answer within {self.command_timeout:g} s")
        _cmd, status, payload = answer
        if status != 0x00:
            raise self._error(status)
        return payload

    def _send(self, data: bytes) -> None:
        try:
            self.line.write(data)
        except OSError as exc:
            self._count("io")
            raise PinPadNotResponding(f"{self.name}: cannot write to the pad ({exc.strerror or exc})") from None
        self.counters.frames_sent += 1
        self._last = data

    def _error(self, status: int) -> PinPadError:
        cls, text = _STATUS.get(status, (PinPadError, f"the pad answered status 0x{status:02X}"))
        self._count(cls.__name__)
        return cls(f"{self.name}: {text}")

    def _count(self, what: str) -> None:
        self.counters.errors[what] = self.counters.errors.get(what, 0) + 1

    def _read_frame(self, deadline: float, *, expect: tuple[int, ...]) -> tuple[int, int, bytes] | None:
        """The next answer frame among ``expect`` before ``deadline``; a NAK resends the last frame sent."""
        resends = 0
        while self.clock() < deadline:
            try:
                chunk = self.line.read(64)
            except OSError as exc:
                self._count("io")
                raise PinPadNotResponding(f"{self.name}: the pad went away ({exc.strerror or exc})") from None
            self._buf += chunk
            while self._buf:
                if self._buf[0] == NAK:
                    self._buf = self._buf[1:]
                    self.counters.naks_received += 1
                    if resends >= self.retries:
                        raise PinPadFrameError(f"{self.name}: the pad kept refusing the frame (NAK)")
                    resends += 1
                    self.counters.resends += 1
                    self._send(self._last)
                    continue
                if self._buf[0] != STX:
                    self._buf = self._buf[1:]  # noise between frames
                    continue
                if len(self._buf) < 3:
                    break
                n = int.from_bytes(self._buf[1:3], "big")
                if not 2 <= n <= 512:
                    self._buf = self._buf[1:]
                    continue
                if len(self._buf) < n + 5:
                    break
                raw, self._buf = self._buf[:n + 5], self._buf[n + 5:]
                if raw[-2] != ETX or lrc(raw[1:-1]) != raw[-1]:
                    self._count("frame")
                    continue  # a damaged answer: the pad repeats nothing, the deadline decides
                self.counters.frames_received += 1
                cmd, status, payload = raw[3], raw[4], raw[5:-2]
                if cmd in expect:
                    return cmd, status, payload
        return None


def open_pin_pad(port: str, *, command_timeout: float = 2.0) -> PinPad:
    """A :class:`PinPad` on serial ``port`` (9600 8N1), or :class:`PinPadNotResponding` naming the port."""
    import serial

    try:
        line = serial.Serial(port, 9600, timeout=0.05)
    except (OSError, serial.SerialException) as exc:
        raise PinPadNotResponding(f"cannot open the PIN pad on {port}: {exc}",
                                  hint=f"check pinpad.port ({port}) and that the pad is plugged in") from None
    return PinPad(line, name=port, command_timeout=command_timeout)
