"""The GemPC Twin's serial link: CCID messages over the line, with recovery and counters.

The frame layout (``03 06 <CCID message> LRC``, NAK ``03 15 16``, card notifications ``50 02`` / ``50 03``)
is :mod:`posguard.drivers.twin.frames`. Line: 115200 8N2.

:class:`FrameParser` is the pure incremental decoder of the line and resynchronises after garbage;
:class:`TwinLink` adds NAK/retransmission, timeouts and :class:`TwinCounters`. The CCID slot behind the
common :class:`~posguard.drivers.reader.Reader` interface is :class:`posguard.drivers.twin.reader.TwinReader`.

On a plain pyserial POSIX port, :meth:`TwinLink.exchange` first tries a fast path: one ``os.write`` of the
frame, then ``select`` + ``os.read`` on the port's fd until [our echo] + one clean final answer are in;
anything else (garbage, NAK, notification, bad LRC, time extension, pause, error) is handed to the parser
and the general path carries on from the same state, so recovery and counters do not change.

:attr:`TwinLink.on_frame` (None by default) observes the raw CCID frames on both paths: ``("out", frame)`` for
every command frame written (retransmissions included) and ``("in", frame)`` for every well-formed answer frame
read (time extensions and late answers to earlier commands included). The reader's echoes of our own frames,
NAKs, card notifications and garbage are not frames and are not reported. With no observer the only cost is
one ``is None`` test per frame.
"""

from __future__ import annotations

import enum
import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from posguard.drivers.errors import ReaderTimeout, ReaderUnplugged
from posguard.drivers.twin.frames import (
    ACK,
    CARD_ABSENT,
    CARD_PRESENT,
    CCID_HEADER,
    MAX_PAYLOAD,
    NAK,
    NAK_BYTE,
    NOTIFY,
    SYNC,
    encode_frame,
    lrc,
)

__all__ = [
    "FrameParser",
    "FrameKind",
    "ParsedItem",
    "TwinCounters",
    "TwinLink",
    "SerialPort",
    "open_serial",
]

#: Serial read timeout: how often a blocked read comes back to check its deadline.
READ_SLICE_S = 0.02
#: A frame whose bytes stop arriving for this long is broken (a byte was lost): 300 bytes take 26 ms.
INTER_BYTE_S = 0.06


class FrameKind(enum.Enum):
    FRAME = "frame"  # a CCID message with a good LRC
    NAK = "nak"  # the reader asks us to resend
    CARD = "card"  # card movement notification
    BAD_LRC = "bad_lrc"  # a complete frame whose LRC is wrong


@dataclass(frozen=True, slots=True)
class ParsedItem:
    kind: FrameKind
    ccid: bytes = b""
    card_present: bool = False


@dataclass(slots=True)
class TwinCounters:
    """Link statistics for diagnostics. Only ever grow while the link is open."""

    frames_sent: int = 0
    frames_received: int = 0
    retransmissions: int = 0
    lrc_errors: int = 0
    broken_frames: int = 0  # frames cut short or mangled beyond recognition (line went quiet mid-frame)
    resyncs: int = 0
    garbage_bytes: int = 0
    naks_sent: int = 0
    naks_received: int = 0
    timeouts: int = 0
    echoes: int = 0
    card_events: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


class FrameParser:
    """Incremental decoder of the Twin line protocol with resynchronisation.

    Bytes that cannot start a frame, NAK or notification are dropped; each run of dropped bytes counts as
    one resync in ``counters``. A frame whose length field exceeds :data:`MAX_PAYLOAD` is treated as garbage.
    """

    def __init__(self, counters: TwinCounters | None = None) -> None:
        self.counters = counters if counters is not None else TwinCounters()
        self._buf = bytearray()
        self._dropping = False

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (after a timeout): the next bytes start a new search for a sync."""
        if self._buf:
            self.counters.resyncs += 1
            self.counters.garbage_bytes += len(self._buf)
        self._buf.clear()
        self._dropping = False

    def _drop(self) -> None:
        del self._buf[0]
        self.counters.garbage_bytes += 1
        if not self._dropping:
            self.counters.resyncs += 1
            self._dropping = True

    def feed(self, data: bytes) -> list[ParsedItem]:
        buf = self._buf
        buf += data
        out: list[ParsedItem] = []
        while buf:
            b0 = buf[0]
            if b0 == SYNC:
                if len(buf) < 2:
                    break
                b1 = buf[1]
                if b1 == NAK_BYTE:
                    if len(buf) < 3:
                        break
                    if buf[2] != NAK[2]:
                        self._drop()
                        continue
                    del buf[:3]
                    out.append(ParsedItem(FrameKind.NAK))
                elif b1 == ACK:
                    if len(buf) < 2 + CCID_HEADER:
                        break
                    length = int.from_bytes(buf[3:7], "little")
                    if length > MAX_PAYLOAD:
                        self._drop()
                        continue
                    total = 2 + CCID_HEADER + length + 1
                    if len(buf) < total:
                        break
                    frame = bytes(buf[:total])
                    del buf[:total]
                    if lrc(frame[:-1]) != frame[-1]:
                        self.counters.lrc_errors += 1
                        out.append(ParsedItem(FrameKind.BAD_LRC))
                    else:
                        out.append(ParsedItem(FrameKind.FRAME, ccid=frame[2:-1]))
                else:
                    self._drop()
                    continue
            elif b0 == NOTIFY:
                if len(buf) < 2:
                    break
                if buf[1] not in (CARD_ABSENT, CARD_PRESENT) or (len(buf) > 2 and buf[1:3] == b"\x03\x06"):
                    # "50 03 06": a stray 50 before a frame's "03 06", not a notification
                    self._drop()
                    continue
                out.append(ParsedItem(FrameKind.CARD, card_present=buf[1] == CARD_PRESENT))
                del buf[:2]
            else:
                self._drop()
                continue
            self._dropping = False
        return out


class SerialPort(Protocol):
    """What TwinLink needs from a pyserial ``Serial`` (a fake implements the same for unit tests)."""

    def write(self, data: bytes, /) -> int | None: ...
    def read(self, size: int = 1, /) -> bytes: ...
    @property
    def in_waiting(self) -> int: ...
    def close(self) -> None: ...


_PLAIN_POSIX: dict[type, bool] = {}  # port class -> is an unmodified serial.serialposix.Serial


def _posix_fd(port: object) -> int | None:
    """The file descriptor of a plain pyserial POSIX port (select/os.read fast path), else None.

    Only an unmodified ``serial.serialposix.Serial`` qualifies: it keeps no read buffer of its own, so
    reading its fd directly sees exactly the bytes ``port.read`` would. Subclasses that change reading or
    writing (``PosixPollSerial``, ``VTIMESerial``, ...), other platforms and fakes use ``port.read``/``write``.
    """
    cls = type(port)
    plain = _PLAIN_POSIX.get(cls)
    if plain is None:
        mod = sys.modules.get("serial.serialposix")  # imported by whoever made a pyserial port
        base = getattr(mod, "Serial", None)
        plain = (base is not None and issubclass(cls, base) and getattr(cls, "read", None) is base.read
                 and getattr(cls, "write", None) is base.write)
        _PLAIN_POSIX[cls] = plain
    if not plain:
        return None
    fd = getattr(port, "fd", None)
    if not isinstance(fd, int) or not getattr(port, "is_open", False):
        return None
    return fd


def open_serial(path: str) -> Any:
    """Open ``path`` with the Twin's line settings (115200 8N2)."""
    import serial

    try:
        return serial.Serial(path, baudrate=115200, bytesize=8, parity="N", stopbits=2, timeout=READ_SLICE_S,
                             exclusive=True)
    except (serial.SerialException, OSError) as e:
        raise ReaderUnplugged(f"cannot open serial port {path}: {e.__class__.__name__}", reader=path,
                              hint="is the reader connected to this port and the path right? "
                                   "is another program (pcscd with libccidtwin) using it?") from None


class TwinLink:
    """Request/response over the Twin line with NAK handling, retransmission, timeouts and counters."""

    def __init__(self, port: SerialPort, *, name: str = "GemPC Twin", timeout: float = 2.0,
                 retries: int = 2) -> None:
        self.port = port
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.counters = TwinCounters()
        self.parser = FrameParser(self.counters)
        self.card_events: list[bool] = []  # notifications seen (True = present), oldest first
        self._queue: list[ParsedItem] = []
        self.echo = False  # the reader echoes our frames (learned from the first echo seen)
        self._acked = False  # the current command's echo was seen
        self._last_rx = 0.0  # when the last byte arrived
        self._garbage_mark = 0  # garbage_bytes when the line was last known in sync
        self._nak_echoes = 0
        self.fast = True  # allow the direct fd fast path (tests turn it off to compare)
        self.fast_hits = 0  # exchanges completed by the fast path (diagnostics, tests)
        #: observer of raw frames: called with "out"/"in" and the whole frame (03 06 ... LRC); see the module doc
        self.on_frame: Callable[[str, bytes], None] | None = None

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except Exception as e:  # serial.SerialException / OSError when the line goes away
            raise ReaderUnplugged(f"serial write failed: {e.__class__.__name__}", reader=self.name) from None

    def _read_items(self, until: float) -> list[ParsedItem]:
        """Items available before ``until`` (monotonic); [] on timeout."""
        if self._queue:
            items, self._queue = self._queue, []
            return items
        while True:
            now = time.monotonic()
            if ((self.parser.pending or self.counters.garbage_bytes != self._garbage_mark)
                    and now - self._last_rx > INTER_BYTE_S):
                # bytes arrived but no frame completed, and the line went quiet: a frame was mangled
                self.parser.reset()
                self._garbage_mark = self.counters.garbage_bytes
                self.counters.broken_frames += 1
                return [ParsedItem(FrameKind.BAD_LRC)]
            if until - now <= 0:
                return []
            try:
                data = self.port.read(self.port.in_waiting or 1)
            except Exception as e:
                raise ReaderUnplugged(f"serial read failed: {e.__class__.__name__}", reader=self.name) from None
            if not data:
                continue
            self._last_rx = time.monotonic()
            items = self.parser.feed(data)
            if items:
                return items

    def _note_card(self, item: ParsedItem) -> None:
        self.counters.card_events += 1
        self.card_events.append(item.card_present)

    def poll_events(self, timeout: float) -> None:
        """Read the line for up to ``timeout`` s, collecting card notifications only."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            items = self._read_items(until)
            for item in items:
                if item.kind is FrameKind.CARD:
                    self._note_card(item)
            if self.card_events:
                return

    def exchange(self, ccid: bytes, timeout: float | None = None) -> bytes:
        """Send one CCID command; return the reader's CCID answer with the same sequence number.

        Recovery, bounded by ``retries``: a NAK from the reader resends our frame; a frame with a bad LRC
        gets our NAK (the reader resends its answer); silence first gets a NAK (the answer may have been
        lost: asking again never executes the command twice), then a retransmission of the command.
        """
        frame = encode_frame(ccid)
        seq = ccid[6]
        wait = self.timeout if timeout is None else timeout
        fd = _posix_fd(self.port) if self.fast else None
        if (fd is not None and not self._queue and not self.parser.pending
                and self.counters.garbage_bytes == self._garbage_mark):
            until = time.monotonic() + wait
            answer = self._fast_exchange(fd, frame, seq, until)
            if answer is not None:
                return answer
            # anything unusual: the frame is sent, the bytes read so far are in the parser/queue and the
            # general path goes on from there, within the same first deadline
        else:
            self._send_frame(frame)
            self._acked = False
            until = time.monotonic() + wait
        nak_first = True
        rounds = 2 * (self.retries + 1)
        for round_no in range(1, rounds + 1):
            if round_no > 1:
                until = time.monotonic() + wait
            outcome = self._await(seq, until)
            if isinstance(outcome, bytes):
                return outcome
            if round_no == rounds:
                break
            wait = self.timeout  # only the first wait covers the card's processing time
            if outcome == "nak":
                self.counters.retransmissions += 1
                self._send_frame(frame)
            elif nak_first or self._acked:
                # the reader echoed the command, so it has it: ask for the answer, never execute twice
                self._send_nak()
                nak_first = False
            else:
                self.counters.retransmissions += 1
                self._send_frame(frame)
                nak_first = True
        raise ReaderTimeout(f"no valid answer to CCID command {ccid[0]:02X} after {self.retries} retries",
                            reader=self.name)

    def _fast_exchange(self, fd: int, frame: bytes, seq: int, until: float) -> bytes | None:
        """Write ``frame`` and read [echo] + answer straight from ``fd``: the common, clean case.

        Returns the answer when the line carried exactly our echo (optional) and one well-formed final
        answer to ``seq``, with a good LRC and nothing else. Otherwise (garbage, NAK, notification, bad
        LRC, time extension, another sequence number, trailing bytes, a pause, a read error) returns None
        after handing every byte read to the parser (items queued for :meth:`_await`), so the general
        path continues exactly where it would have been: the frame is never written twice here.
        """
        # write: one os.write; a short write or an error goes to pyserial for the rest (same errors)
        try:
            n = os.write(fd, frame)
        except OSError:
            n = 0
        if n != len(frame):
            self._write(frame[n:])
        self.counters.frames_sent += 1
        self._acked = False
        observer = self.on_frame
        if observer is not None:
            observer("out", frame)
        flen = len(frame)
        buf = b""
        pos = 0
        timeout = until - time.monotonic()
        while True:
            try:
                ready = select.select((fd,), (), (), timeout if timeout > 0 else 0)[0]
                data = os.read(fd, 4096) if ready else b""
            except OSError:  # the general path reads through pyserial and reports it its way
                data = b""
            if not data:
                break
            self._last_rx = time.monotonic()
            buf += data
            # what the buffer holds: [our echo] then [answer frame]
            pos = 0
            if buf[:flen] == frame:
                pos = flen
            elif len(buf) < flen and frame.startswith(buf):
                timeout = min(until - self._last_rx, INTER_BYTE_S)  # echo (or an answer's "03 06") arriving
                continue
            rest = len(buf) - pos
            if rest < 2 + CCID_HEADER:
                if buf[pos:pos + 2] != b"\x03\x06"[:rest]:
                    break
                timeout = until - self._last_rx if rest == 0 else min(until - self._last_rx, INTER_BYTE_S)
                continue
            if buf[pos] != SYNC or buf[pos + 1] != ACK:
                break
            length = int.from_bytes(buf[pos + 3:pos + 7], "little")
            if length > MAX_PAYLOAD:
                break
            end = pos + 2 + CCID_HEADER + length + 1
            if len(buf) < end:
                timeout = min(until - self._last_rx, INTER_BYTE_S)
                continue
            if len(buf) > end:
                break
            msg = buf[pos + 2:end - 1]
            if msg[0] < 0x80 or msg[6] != seq or msg[7] >> 6 == 2 or lrc(buf[pos:end - 1]) != buf[end - 1]:
                break
            if pos:
                self._take_echo()
            self.counters.frames_received += 1
            self.fast_hits += 1
            if observer is not None:
                observer("in", buf[pos:end])
            return msg
        if pos:
            # our echo came first and whole: take it as _await would have (so garbage behind it still
            # counts as unsynchronised), and leave the rest to the parser
            self._take_echo()
            buf = buf[flen:]
        if buf:
            self._queue = self.parser.feed(buf)
        return None

    def _take_echo(self) -> None:
        """Our current command came back as the reader's echo (the clean-line part of :meth:`_await`)."""
        self.counters.echoes += 1
        self.echo = True
        self._acked = True
        self._garbage_mark = self.counters.garbage_bytes

    def _send_frame(self, frame: bytes) -> None:
        self._write(frame)
        self.counters.frames_sent += 1
        if self.on_frame is not None:
            self.on_frame("out", frame)

    def _send_nak(self) -> None:
        self._write(NAK)
        self.counters.naks_sent += 1
        if self.echo:
            self._nak_echoes += 1

    def _await(self, seq: int, until: float) -> bytes | str:
        """The answer to ``seq``, or "nak" (reader wants our frame again) or "timeout"."""
        while True:
            items = self._read_items(until)
            if not items:
                self.counters.timeouts += 1
                self.parser.reset()
                return "timeout"
            for i, item in enumerate(items):
                kind = item.kind
                if kind is FrameKind.CARD:
                    self._note_card(item)
                elif kind is FrameKind.NAK:
                    if self._nak_echoes:  # our own NAK echoed back
                        self._nak_echoes -= 1
                        continue
                    self.counters.naks_received += 1
                    self._queue = items[i + 1:]
                    return "nak"
                elif kind is FrameKind.BAD_LRC:
                    self._garbage_mark = self.counters.garbage_bytes
                    self._send_nak()
                else:
                    self._garbage_mark = self.counters.garbage_bytes
                    msg = item.ccid
                    if msg[0] < 0x80:  # our own command echoed back by the reader
                        self.counters.echoes += 1
                        self.echo = True
                        if msg[6] == seq:
                            self._acked = True
                        continue
                    self.counters.frames_received += 1
                    if self.on_frame is not None:
                        self.on_frame("in", encode_frame(msg))  # a good LRC: the very bytes on the line
                    if msg[6] != seq:
                        continue  # a repeated answer to an earlier command
                    if msg[7] >> 6 == 2:  # time extension: the card needs more time
                        until = time.monotonic() + self.timeout
                        continue
                    self._queue = items[i + 1:]
                    return msg
