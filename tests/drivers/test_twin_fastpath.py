"""TwinLink's direct-fd fast path (select + os.read on a plain pyserial POSIX port) and its fallbacks.

A real pty stands in for the serial line: pyserial opens the slave side, a scripted "reader" thread plays
the Twin on the master side. Every scenario runs with the fast path on and off and must end the same way
(answer, counters, bytes the host put on the line); only ``fast_hits`` differs.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

serial = pytest.importorskip("serial")

from posguard.drivers.errors import ReaderTimeout, ReaderUnplugged  # noqa: E402
from posguard.drivers.twin import link as twin_link  # noqa: E402
from posguard.drivers.twin.frames import NAK, encode_frame  # noqa: E402
from posguard.drivers.twin.link import (  # noqa: E402
    INTER_BYTE_S,
    READ_SLICE_S,
    FrameKind,
    ParsedItem,
    TwinLink,
    _posix_fd,
)

_os_write = os.write  # the scripted reader's own writes (tests patch os.write for the host side)

CMD = bytes.fromhex("6F05000000000700000000B2010C00")  # XfrBlock seq 7: READ RECORD
FRAME = encode_frame(CMD)


def answer(seq: int = 7, data: bytes = b"\x90\x00", status: int = 0, msg_type: int = 0x80) -> bytes:
    return bytes((msg_type,)) + len(data).to_bytes(4, "little") + bytes((0, seq, status, 0, 0)) + data


ANSWER = answer(data=b"\x70\x03\x5a\x01\x02\x90\x00")
ANSWER_FRAME = encode_frame(ANSWER)


class PtyLine:
    """pyserial on a pty slave; ``play`` runs a script as the reader on the master side."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.port = serial.Serial(os.ttyname(slave), baudrate=115200, bytesize=8, parity="N", stopbits=2,
                                  timeout=READ_SLICE_S)
        os.close(slave)
        self.received = bytearray()  # what the host wrote
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _rx(self, n: int) -> None:
        deadline = time.monotonic() + 5
        want = len(self.received) + n
        while len(self.received) < want and time.monotonic() < deadline:
            self.received += os.read(self.master, want - len(self.received))

    def _run(self, steps: list[tuple[str, Any]]) -> None:
        try:
            for op, arg in steps:
                if op == "rx":
                    self._rx(arg)
                elif op == "tx":
                    _os_write(self.master, arg)
                elif op == "sleep":
                    time.sleep(arg)
                elif op == "unplug":
                    master, self.master = self.master, -1
                    os.close(master)
        except BaseException as e:  # reported by join()
            self.error = e

    def play(self, *steps: tuple[str, Any]) -> None:
        self._thread = threading.Thread(target=self._run, args=(list(steps),), daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(5)
        if self.error is not None:
            raise self.error

    def drain(self, quiet: float = 0.05) -> bytes:
        """Whatever else the host wrote (after the script), waiting ``quiet`` s for it."""
        import select

        out = bytearray()
        while select.select([self.master], [], [], quiet)[0]:
            out += os.read(self.master, 4096)
        return bytes(out)

    def close(self) -> None:
        self.port.close()
        try:
            os.close(self.master)
        except OSError:
            pass



def make_link(line: PtyLine, fast: bool, **kw: Any) -> TwinLink:
    link = TwinLink(line.port, **({"timeout": 0.5} | kw))
    link.fast = fast
    return link


def counters(link: TwinLink, **expected: int) -> None:
    snap = link.counters.snapshot()
    assert {k: snap[k] for k in expected} == expected, snap


# -- the clean case: served by the fast path -----------------------------------------------------------
def test_clean_echo_and_answer(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert bytes(line.received) == FRAME and line.drain() == b""
    assert link.echo and link._acked
    counters(link, frames_sent=1, echoes=1, frames_received=1, naks_sent=0, retransmissions=0, resyncs=0)
    assert link.fast_hits == (1 if fast else 0)


def test_answer_trickling_in_pieces(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    whole = FRAME + ANSWER_FRAME
    cuts = [1, 5, len(FRAME), len(FRAME) + 2, len(FRAME) + 9, len(whole) - 1, len(whole)]
    steps: list[tuple[str, Any]] = [("rx", len(FRAME))]
    start = 0
    for cut in cuts:
        steps += [("tx", whole[start:cut]), ("sleep", 0.004)]
        start = cut
    line.play(*steps)
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert line.drain() == b""
    counters(link, frames_sent=1, echoes=1, frames_received=1, naks_sent=0, broken_frames=0)
    assert link.fast_hits == (1 if fast else 0)


def test_reader_without_echo(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert not link.echo
    counters(link, frames_sent=1, echoes=0, frames_received=1)
    assert link.fast_hits == (1 if fast else 0)


def test_slow_card_answer_waits_past_read_slices(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME), ("sleep", 0.15), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    counters(link, frames_sent=1, echoes=1, frames_received=1, naks_sent=0, timeouts=0)
    assert link.fast_hits == (1 if fast else 0)


# -- anything unusual: handed to the general path --------------------------------------------------------
def test_card_notification_between_echo_and_answer(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME + b"\x50\x02"), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert link.card_events == [False]
    counters(link, frames_sent=1, echoes=1, frames_received=1, card_events=1)
    assert link.fast_hits == 0


def test_notification_behind_the_answer_is_kept(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME + b"\x50\x03"))
    assert link.exchange(CMD) == ANSWER
    line.join()
    link.poll_events(0.2)
    assert link.card_events == [True]
    counters(link, frames_sent=1, frames_received=1, card_events=1)


def test_bad_lrc_answer_is_naked_and_repeat_taken(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    bad = ANSWER_FRAME[:-1] + bytes((ANSWER_FRAME[-1] ^ 0x01,))
    line.play(("rx", len(FRAME)), ("tx", FRAME + bad), ("rx", len(NAK)), ("tx", NAK + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert bytes(line.received) == FRAME + NAK and line.drain() == b""
    counters(link, frames_sent=1, lrc_errors=1, naks_sent=1, retransmissions=0, frames_received=1)
    assert link.fast_hits == 0


def test_garbage_before_echo_resyncs(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", b"\xff\x00" + FRAME + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    counters(link, resyncs=1, garbage_bytes=2, echoes=1, frames_received=1, naks_sent=0, broken_frames=0)
    assert link.fast_hits == 0


def test_garbage_after_echo_is_a_broken_frame(line: PtyLine, fast: bool) -> None:
    # the answer's length field mangled beyond MAX_PAYLOAD: all garbage, then quiet -> NAK -> repeat
    mangled = ANSWER_FRAME[:3] + b"\xff\xff" + ANSWER_FRAME[5:]
    line.play(("rx", len(FRAME)), ("tx", FRAME), ("sleep", 0.01), ("tx", mangled), ("rx", len(NAK)),
              ("tx", NAK + ANSWER_FRAME))
    link = make_link(line, fast)
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert bytes(line.received) == FRAME + NAK
    counters(link, broken_frames=1, naks_sent=1, retransmissions=0, frames_received=1)


def test_pause_mid_answer_is_a_broken_frame(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME[:8]), ("sleep", INTER_BYTE_S + 0.1),
              ("rx", len(NAK)), ("tx", NAK + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert bytes(line.received) == FRAME + NAK
    counters(link, broken_frames=1, naks_sent=1, retransmissions=0, frames_received=1)
    assert link.fast_hits == 0


def test_time_extension_then_answer(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast, timeout=0.3)
    ext = encode_frame(answer(data=b"", status=0x80))
    line.play(("rx", len(FRAME)), ("tx", FRAME + ext), ("sleep", 0.2), ("tx", ext), ("sleep", 0.2),
              ("tx", ANSWER_FRAME))
    assert link.exchange(CMD, timeout=0.3) == ANSWER  # 0.4 s in all: only the extensions make it fit
    line.join()
    counters(link, frames_sent=1, frames_received=3, timeouts=0, naks_sent=0)
    assert link.fast_hits == 0


def test_old_sequence_answer_is_skipped(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME + encode_frame(answer(seq=6))), ("sleep", 0.01),
              ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    counters(link, frames_received=2, naks_sent=0)
    assert link.fast_hits == 0


def test_reader_nak_gets_the_frame_again(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", NAK), ("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert bytes(line.received) == FRAME + FRAME
    counters(link, frames_sent=2, retransmissions=1, naks_received=1)


def test_echoed_command_is_never_sent_twice(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast, timeout=0.1, retries=1)
    line.play(("rx", len(FRAME)), ("tx", FRAME))  # echo, then the reader says nothing more
    t0 = time.monotonic()
    with pytest.raises(ReaderTimeout):
        link.exchange(CMD)
    line.join()
    assert time.monotonic() - t0 < 1.0
    sent = bytes(line.received) + line.drain()
    assert sent.count(FRAME) == 1 and sent == FRAME + NAK * 3
    counters(link, frames_sent=1, retransmissions=0, naks_sent=3, timeouts=4)


def test_silence_then_retransmission_keeps_first_deadline(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast, timeout=0.2, retries=0)
    line.play(("rx", len(FRAME)))
    t0 = time.monotonic()
    with pytest.raises(ReaderTimeout):
        link.exchange(CMD)
    line.join()
    assert time.monotonic() - t0 < 0.55  # two rounds of 0.2 s (+ read slices), not three
    assert bytes(line.received) + line.drain() == FRAME + NAK
    counters(link, frames_sent=1, naks_sent=1, timeouts=2)


def test_unplugged_mid_exchange(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    line.play(("rx", len(FRAME)), ("tx", FRAME[:4]), ("unplug", None))
    with pytest.raises(ReaderUnplugged):
        link.exchange(CMD)
    line.join()


# -- eligibility and the write fallbacks -----------------------------------------------------------------
class FakePort:
    fd = 3
    is_open = True

    def write(self, data: bytes, /) -> int:
        return len(data)

    def read(self, size: int = 1, /) -> bytes:
        return b""

    @property
    def in_waiting(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_only_plain_posix_serial_gets_the_fast_path(line: PtyLine) -> None:
    assert _posix_fd(line.port) == line.port.fd
    assert _posix_fd(FakePort()) is None

    class Buffered(serial.Serial):  # type: ignore[misc]
        def read(self, size: int = 1) -> bytes:
            return bytes(super().read(size))

    master, slave = os.openpty()
    try:
        sub = Buffered(os.ttyname(slave), timeout=READ_SLICE_S)
        try:
            assert _posix_fd(sub) is None
        finally:
            sub.close()
    finally:
        os.close(slave)
        os.close(master)
    line.port.close()
    assert _posix_fd(line.port) is None


def test_short_and_failed_os_write_finish_through_pyserial(line: PtyLine, monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd: int, data: bytes) -> int:
        if fd != line.port.fd:
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:5]))  # short write
        if calls["n"] == 3:
            raise BlockingIOError(11, "try again")
        return real_write(fd, data)

    link = make_link(line, True)
    line.play(("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME), ("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME))
    monkeypatch.setattr(twin_link.os, "write", flaky_write)
    assert link.exchange(CMD) == ANSWER  # 5 bytes by os.write, the rest by port.write
    assert link.exchange(CMD) == ANSWER  # os.write fails: port.write sends it all (once)
    monkeypatch.undo()
    line.join()
    assert bytes(line.received) == FRAME + FRAME
    counters(link, frames_sent=2, frames_received=2, retransmissions=0)
    assert link.fast_hits == 2


def test_write_error_is_unplugged(line: PtyLine, monkeypatch: pytest.MonkeyPatch) -> None:
    def dead_write(fd: int, data: bytes) -> int:
        raise OSError(5, "Input/output error")

    link = make_link(line, True)
    monkeypatch.setattr(twin_link.os, "write", dead_write)
    with pytest.raises(ReaderUnplugged):
        link.exchange(CMD)
    assert link.counters.frames_sent == 0


def test_pending_state_skips_the_fast_path(line: PtyLine) -> None:
    link = make_link(line, True)
    link._queue = [ParsedItem(FrameKind.CARD, card_present=True)]  # items read earlier, not yet handled
    line.play(("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert link.fast_hits == 0 and link.card_events == [True]
    counters(link, frames_sent=1, frames_received=1, naks_sent=0)

    link.parser.feed(b"\x03\x06\x80")  # a partial frame held back
    link._last_rx = time.monotonic()
    cmd8 = CMD[:6] + b"\x08" + CMD[7:]
    line.play(("rx", len(FRAME)), ("tx", encode_frame(answer(seq=8))[3:]))
    assert link.exchange(cmd8) == answer(seq=8)  # completes the held-back frame through the parser
    line.join()
    assert link.fast_hits == 0
    counters(link, frames_sent=2, frames_received=2, naks_sent=0)

    line.play(("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER  # back in sync: fast again
    line.join()
    assert link.fast_hits == 1
