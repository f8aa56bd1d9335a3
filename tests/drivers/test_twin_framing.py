"""GemPC Twin line protocol: frame encoding, LRC, parser resynchronisation (pure), and TwinLink recovery
(NAK, retransmission, timeouts, counters) against a scripted serial port."""

from __future__ import annotations

import pytest

from posguard.drivers.errors import ReaderTimeout
from posguard.drivers.twin.frames import NAK, encode_frame, lrc
from posguard.drivers.twin.link import FrameKind, FrameParser, TwinLink

SLOT_STATUS_CMD = bytes.fromhex("65000000000005000000")  # GetSlotStatus, seq 5


def answer(seq: int, data: bytes = b"", msg_type: int = 0x81, status: int = 0) -> bytes:
    return bytes((msg_type,)) + len(data).to_bytes(4, "little") + bytes((0, seq, status, 0, 0)) + data


def test_known_frame_from_libccidtwin() -> None:
    # pcscd's first frame: Escape "get firmware"
    assert encode_frame(bytes.fromhex("6B01000000000000000002")).hex().upper() == "03066B0100000000000000" "00026D"


def test_nak_has_valid_lrc() -> None:
    assert NAK == bytes((0x03, 0x15, lrc(b"\x03\x15")))


def test_parser_handles_split_and_multiple_frames() -> None:
    p = FrameParser()
    stream = encode_frame(answer(1)) + encode_frame(answer(2, b"\x3b\x00"))
    items = p.feed(stream[:7]) + p.feed(stream[7:20]) + p.feed(stream[20:])
    assert [i.kind for i in items] == [FrameKind.FRAME, FrameKind.FRAME]
    assert items[1].ccid[10:] == b"\x3b\x00"
    assert p.counters.resyncs == 0 and p.pending == 0


def test_parser_resyncs_after_garbage_and_counts_runs() -> None:
    p = FrameParser()
    items = p.feed(b"\xff\x00\x42" + encode_frame(answer(1)) + b"\x99" + NAK + b"\x50\x03")
    assert [i.kind for i in items] == [FrameKind.FRAME, FrameKind.NAK, FrameKind.CARD]
    assert items[2].card_present is True
    assert p.counters.resyncs == 2 and p.counters.garbage_bytes == 4


def test_parser_reports_bad_lrc() -> None:
    frame = bytearray(encode_frame(answer(1)))
    frame[-1] ^= 0x01
    items = FrameParser().feed(bytes(frame))
    assert [i.kind for i in items] == [FrameKind.BAD_LRC]


def test_oversized_length_is_garbage_not_a_wait() -> None:
    p = FrameParser()
    bogus = b"\x03\x06\x80\xff\xff\x00\x00" + bytes(5)
    items = p.feed(bogus + encode_frame(answer(3)))
    assert [i.kind for i in items] == [FrameKind.FRAME]
    assert p.counters.resyncs >= 1


def test_stray_50_before_frame_is_not_a_card_event() -> None:
    items = FrameParser().feed(b"\x50" + encode_frame(answer(1)))
    assert [i.kind for i in items] == [FrameKind.FRAME]


def test_card_absent_notification() -> None:
    items = FrameParser().feed(b"\x50\x02")
    assert items[0].kind is FrameKind.CARD and items[0].card_present is False


class ScriptedPort:
    """Serial port double: each write pops the next scripted reply (bytes to deliver)."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.written: list[bytes] = []
        self.buf = b""

    def write(self, data: bytes, /) -> int:
        self.written.append(bytes(data))
        if self.replies:
            self.buf += self.replies.pop(0)
        return len(data)

    def read(self, size: int = 1, /) -> bytes:
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self.buf)

    def close(self) -> None:
        pass


def test_link_skips_echo_and_returns_answer() -> None:
    cmd = encode_frame(SLOT_STATUS_CMD)
    port = ScriptedPort([cmd + encode_frame(answer(5))])
    link = TwinLink(port, timeout=0.2)
    assert link.exchange(SLOT_STATUS_CMD)[0] == 0x81
    assert link.counters.echoes == 1 and link.echo
    assert link.counters.frames_sent == 1 and link.counters.frames_received == 1


def test_link_naks_bad_lrc_and_takes_the_repeat() -> None:
    bad = bytearray(encode_frame(answer(5)))
    bad[-2] ^= 0x10
    port = ScriptedPort([bytes(bad), encode_frame(answer(5))])
    link = TwinLink(port, timeout=0.2)
    assert link.exchange(SLOT_STATUS_CMD)[6] == 5
    assert port.written[1] == NAK
    assert link.counters.lrc_errors == 1 and link.counters.naks_sent == 1
    assert link.counters.retransmissions == 0


def test_link_retransmits_on_reader_nak() -> None:
    port = ScriptedPort([NAK, encode_frame(answer(5))])
    link = TwinLink(port, timeout=0.2)
    link.exchange(SLOT_STATUS_CMD)
    assert port.written == [encode_frame(SLOT_STATUS_CMD)] * 2
    assert link.counters.naks_received == 1 and link.counters.retransmissions == 1


def test_link_ignores_answer_with_old_sequence() -> None:
    port = ScriptedPort([encode_frame(answer(4)) + encode_frame(answer(5, b"\x01"))])
    assert TwinLink(port, timeout=0.2).exchange(SLOT_STATUS_CMD)[10:] == b"\x01"


def test_link_silence_asks_with_nak_then_retransmits_then_times_out() -> None:
    port = ScriptedPort([])
    link = TwinLink(port, timeout=0.05, retries=1)
    with pytest.raises(ReaderTimeout):
        link.exchange(SLOT_STATUS_CMD)
    frame = encode_frame(SLOT_STATUS_CMD)
    assert port.written == [frame, NAK, frame, NAK]
    assert link.counters.timeouts == 4 and link.counters.retransmissions == 1


def test_link_never_retransmits_a_command_the_reader_echoed() -> None:
    frame = encode_frame(SLOT_STATUS_CMD)
    port = ScriptedPort([frame])  # echo only, then silence
    link = TwinLink(port, timeout=0.05, retries=1)
    with pytest.raises(ReaderTimeout):
        link.exchange(SLOT_STATUS_CMD)
    assert port.written == [frame, NAK, NAK, NAK]
    assert link.counters.retransmissions == 0


def test_link_mangled_frame_then_quiet_line_is_naked_quickly() -> None:
    cut = encode_frame(answer(5, b"\x00" * 20))[:-6]  # a byte run that stops mid-frame
    port = ScriptedPort([cut, encode_frame(answer(5))])
    link = TwinLink(port, timeout=2.0)
    link.exchange(SLOT_STATUS_CMD)
    assert port.written[1] == NAK
    assert link.counters.broken_frames == 1 and link.counters.timeouts == 0
