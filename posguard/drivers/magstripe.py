"""ISO 7813 magnetic stripe: parse tracks 1 and 2 from a serial swipe reader.

The reader sends ``STX [%T1?[L]] [;T2?[L]] [CR] ETX [BCC]``: the card LRC after each end sentinel is
optional (many readers drop it), BCC is the XOR of every byte after STX up to and including ETX. Every
check failure raises a :class:`~posguard.drivers.errors.SwipeError` whose hint is "swipe again"; no error,
repr or str ever shows the PAN or track data in clear.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from posguard.card import CardData, scheme_of
from posguard.drivers.errors import (
    InvalidCardNumber,
    PartialSwipe,
    ReaderUnplugged,
    SwipeChecksumError,
    SwipeError,
)
from posguard.sensitive import Pan, TrackData, luhn_ok, mask_track1, mask_track2

__all__ = ["SwipeData", "parse_swipe", "parse_frame", "track_lrc", "MagstripeReader", "swiped_card", "STX", "ETX"]

STX = 0x02
ETX = 0x03
TRACK1_MAX = 79
TRACK2_MAX = 40
TRACK3_MAX = 107  # ISO 4909: 107 characters including the sentinels
#: With ``bcc=None`` (auto), how long to wait after ETX for a BCC byte before deciding there is none.
BCC_GRACE_S = 0.05


def track_lrc(track: str, *, track_no: int) -> str:
    """The ISO 7811 LRC character of ``track`` (start sentinel .. end sentinel inclusive).

    Track 1 characters are 6-bit (ASCII - 0x20), track 2 characters 4-bit (ASCII - 0x30).
    """
    base, mask = (0x20, 0x3F) if track_no == 1 else (0x30, 0x0F)
    x = 0
    for ch in track:
        x ^= (ord(ch) - base) & mask
    return chr(x + base)


@dataclass(frozen=True, repr=False)
class SwipeData:
    """A good swipe. Holds the clear track data privately; every printable form is masked."""

    pan: Pan
    expiry: str  # YYMM
    service_code: str
    name: str = ""
    _track1: str | None = field(default=None, compare=False)
    _track2: str | None = field(default=None, compare=False)
    _track3: str | None = field(default=None, compare=False)

    @property
    def has_track3(self) -> bool:
        return self._track3 is not None

    def track2(self) -> TrackData:
        """Track 2 as a self-masking value (field 35)."""
        return TrackData(self.track2_data(), track_no=2)

    def track3(self) -> TrackData | None:
        """Track 3 as a self-masking value (field 36), when the reader read it."""
        return TrackData(self._track3, track_no=3) if self._track3 is not None else None

    @property
    def has_track1(self) -> bool:
        return self._track1 is not None

    @property
    def has_track2(self) -> bool:
        return self._track2 is not None

    @property
    def chip_card(self) -> bool:
        """Service code 2xx/6xx: the card has a chip, so a swipe is only allowed as fallback."""
        return self.service_code[:1] in ("2", "6")

    def track2_data(self) -> str:
        """Clear track 2 between the sentinels (``PAN=YYMMSSS...``), for building field 35 only."""
        if self._track2 is None:
            raise SwipeError("track 2 was not read", hint="swipe again so track 2 is read")
        return self._track2

    def track1_data(self) -> str:
        """Clear track 1 between the sentinels (``B PAN^NAME^...``), for building field 45 only."""
        if self._track1 is None:
            raise SwipeError("track 1 was not read", hint="swipe again so track 1 is read")
        return self._track1

    def masked(self) -> dict[str, Any]:
        return {
            "pan": self.pan.masked,
            "expiry": self.expiry,
            "service_code": self.service_code,
            "name": _mask_name(self.name),
            "track1": mask_track1(self._track1) if self._track1 else None,
            "track2": mask_track2(self._track2) if self._track2 else None,
        }

    def __repr__(self) -> str:
        m = self.masked()
        return (f"SwipeData(pan={m['pan']!r}, expiry={self.expiry!r}, service_code={self.service_code!r}, "
                f"name={m['name']!r}, track1={'yes' if self._track1 else 'no'}, "
                f"track2={'yes' if self._track2 else 'no'})")

    __str__ = __repr__


def _mask_name(name: str) -> str:
    return name[:1] + "*" * max(0, len(name) - 1) if name else ""


def _check_pan(pan: str, where: str) -> Pan:
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise InvalidCardNumber(f"{where}: card number has {len(pan)} characters, expected 12-19 digits")
    if not luhn_ok(pan):
        raise InvalidCardNumber(f"{where}: card number fails the Luhn check")
    return Pan(pan)


def _check_expiry_service(rest: str, where: str) -> tuple[str, str]:
    if len(rest) < 7 or not rest[:7].isdigit():
        raise PartialSwipe(f"{where}: expiry and service code missing or not digits")
    expiry, service = rest[:4], rest[4:7]
    if not 1 <= int(expiry[2:]) <= 12:
        raise SwipeError(f"{where}: expiry month {expiry[2:]} is not 01-12")
    return expiry, service


def _split_track(raw: str, start: str, track_no: int, *, offset: int) -> tuple[str, int]:
    """(body between sentinels, chars consumed); checks the optional LRC after the end sentinel."""
    end = raw.find("?", 1)
    where = f"track {track_no} at offset {offset}"
    if end < 0:
        raise PartialSwipe(f"{where}: end sentinel '?' missing (swipe cut short)")
    body = raw[1:end]
    if body[:1] == "E" and len(body) <= 1:
        raise PartialSwipe(f"{where}: reader reported the track unreadable")
    limit = {1: TRACK1_MAX, 2: TRACK2_MAX}.get(track_no, TRACK3_MAX)
    if end + 1 > limit:
        raise SwipeError(f"{where}: {end + 1} characters, longer than the ISO 7813 maximum {limit}")
    consumed = end + 1
    if consumed < len(raw) and raw[consumed] not in "%;\r\n":
        expected = track_lrc(raw[: end + 1], track_no=track_no)
        if raw[consumed] != expected:
            raise SwipeChecksumError(f"{where}: track LRC does not match (misread)")
        consumed += 1
    return body, consumed


def parse_swipe(text: str) -> SwipeData:
    """Parse the tracks of one swipe (``%...?`` and/or ``;...?``, optional LRCs, CR/LF ignored)."""
    track1: str | None = None
    track2: str | None = None
    track3: str | None = None
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in "\r\n ":
            pos += 1
        elif ch == "%" and track1 is None:
            track1, used = _split_track(text[pos:], "%", 1, offset=pos)
            pos += used
        elif ch == ";" and track2 is None:
            track2, used = _split_track(text[pos:], ";", 2, offset=pos)
            pos += used
        elif ch == ";" and track3 is None:  # ISO 4909 track 3 has the same start sentinel, after track 2
            track3, used = _split_track(text[pos:], ";", 3, offset=pos)
            pos += used
        else:
            raise PartialSwipe(f"unexpected character at offset {pos} (expected a start sentinel % or ;)")
    if track1 is None and track2 is None:
        raise PartialSwipe("no track data in the swipe")
    pan: Pan | None = None
    expiry = service = name = ""
    if track2 is not None:
        pan_s, sep, rest = track2.partition("=")
        if not sep:
            raise PartialSwipe("track 2: field separator '=' missing")
        pan = _check_pan(pan_s, "track 2")
        expiry, service = _check_expiry_service(rest, "track 2")
    if track1 is not None:
        if track1[:1] != "B":
            raise SwipeError("track 1: format code is not B (not a payment card)")
        parts = track1[1:].split("^")
        if len(parts) < 3:
            raise PartialSwipe("track 1: field separators '^' missing")
        pan1 = _check_pan(parts[0].replace(" ", ""), "track 1")
        name = parts[1].strip()
        exp1, svc1 = _check_expiry_service(parts[2], "track 1")
        if pan is None:
            pan, expiry, service = pan1, exp1, svc1
        elif pan1 != pan or exp1 != expiry or svc1 != service:
            raise SwipeError("track 1 and track 2 disagree (card number, expiry or service code)")
    assert pan is not None
    if track3 is not None:
        _check_track3(track3, pan)
    return SwipeData(pan=pan, expiry=expiry, service_code=service, name=name, _track1=track1, _track2=track2,
                     _track3=track3)


def _check_track3(track3: str, pan: Pan) -> None:
    """ISO 4909 track 3: format code (2 digits), PAN, ``=``, then the rest; digits and separators only."""
    if not all(c.isdigit() or c == "=" for c in track3):
        raise SwipeError("track 3: characters other than digits and '=' (misread)")
    head = track3.partition("=")[0]
    if head[2:] != pan.reveal():
        raise SwipeError("track 3 and track 2 disagree (card number)")


def parse_frame(frame: bytes, *, bcc: bool | None = None) -> SwipeData:
    """Parse one reader frame ``STX data ETX [BCC]``.

    ``bcc``: True requires the BCC byte, False forbids it, None accepts both.
    """
    if not frame or frame[0] != STX:
        raise PartialSwipe("frame does not start with STX")
    etx = frame.find(bytes((ETX,)), 1)
    if etx < 0:
        raise PartialSwipe(f"frame of {len(frame)} bytes has no ETX (swipe data cut off)")
    tail = frame[etx + 1:]
    if bcc is True and not tail:
        raise PartialSwipe("BCC byte missing after ETX")
    if tail:
        if bcc is False or len(tail) != 1:
            raise SwipeError(f"{len(tail)} unexpected bytes after ETX at offset {etx + 1}")
        expected = 0
        for b in frame[1: etx + 1]:
            expected ^= b
        if tail[0] != expected:
            raise SwipeChecksumError(f"frame BCC 0x{tail[0]:02X} does not match 0x{expected:02X}")
    try:
        text = frame[1:etx].decode("ascii")
    except UnicodeDecodeError:
        raise SwipeError("swipe data has non-ASCII bytes (line noise or wrong baud rate)") from None
    return parse_swipe(text)


class MagstripeReader:
    """A serial swipe reader. ``read_swipe`` returns one validated :class:`SwipeData`.

    ``bcc``: whether the reader appends a BCC byte after ETX (None: accept both). ``inter_byte_timeout``:
    once STX arrived, a gap this long means the swipe was cut off (PartialSwipe).
    """

    def __init__(self, port: str | Any, *, bcc: bool | None = None, baudrate: int = 9600,
                 inter_byte_timeout: float = 0.3) -> None:
        if isinstance(port, str):
            import serial

            try:
                self.port: Any = serial.Serial(port, baudrate=baudrate, timeout=0.05)
            except (serial.SerialException, OSError) as e:
                raise ReaderUnplugged(f"cannot open swipe reader on {port}: {e.__class__.__name__}",
                                      reader=port) from None
            self.name = port
        else:
            self.port = port
            self.name = "magstripe"
        self.bcc = bcc
        self.inter_byte_timeout = inter_byte_timeout

    def _read(self) -> bytes:
        try:
            data: bytes = self.port.read(self.port.in_waiting or 1)
            return data
        except Exception as e:
            raise ReaderUnplugged(f"swipe reader read failed: {e.__class__.__name__}", reader=self.name) from None

    def read_swipe(self, timeout: float) -> SwipeData:
        """Wait up to ``timeout`` s for a swipe. Raises SwipeError subclasses, or TimeoutError if none."""
        deadline = time.monotonic() + timeout
        buf = bytearray()
        last = 0.0
        while True:
            now = time.monotonic()
            if buf and now - last > self.inter_byte_timeout:
                raise PartialSwipe(f"swipe stopped after {len(buf)} bytes without ETX")
            if not buf and now > deadline:
                raise TimeoutError(f"no swipe within {timeout:g} s")
            chunk = self._read()
            if not chunk:
                continue
            last = time.monotonic()
            if not buf:
                start = chunk.find(bytes((STX,)))
                if start < 0:
                    continue  # noise before a swipe
                chunk = chunk[start:]
            buf += chunk
            etx = buf.find(bytes((ETX,)), 1)
            if etx < 0:
                continue
            if self.bcc is not False and len(buf) == etx + 1:
                # the BCC byte may still be on its way
                self._wait_more(buf, self.inter_byte_timeout if self.bcc else BCC_GRACE_S)
            return parse_frame(bytes(buf[: etx + 2]), bcc=self.bcc)

    def _wait_more(self, buf: bytearray, wait: float) -> bool:
        until = time.monotonic() + wait
        while time.monotonic() < until:
            chunk = self._read()
            if chunk:
                buf += chunk
                return True
        return False

    def close(self) -> None:
        try:
            self.port.close()
        except Exception:
            pass


def swiped_card(data: SwipeData, token_key: bytes, *, fallback: bool = False) -> CardData:
    """The engine's card for a good swipe: entry mode ``swipe``, or ``fallback`` when the card-entry policy
    (:mod:`posguard.card_entry`) allowed a chip card's stripe after a failed chip read; a signature is due
    (there is no 9F34). Track 2 (and track 3 when read) ride along as self-masking values for fields 35/36.

    A chip card (service code 2xx/6xx) without ``fallback`` is refused with
    :class:`~posguard.card_entry.InsertChipCard`: it must be read by its chip.
    """
    from posguard.card_entry import InsertChipCard

    if data.chip_card and not fallback:
        raise InsertChipCard(data.service_code)
    track2 = data.track2()  # field 35 is what the acquirer authorises a swipe on: no track 2, swipe again
    return CardData.from_pan(data.pan, token_key, expiry=data.expiry, cvm_required=True,
                             entry_mode="fallback" if fallback and data.chip_card else "swipe", scheme=scheme_of(data.pan.reveal()),
                             track2=track2, track3=data.track3())
