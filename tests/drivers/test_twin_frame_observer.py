"""``TwinLink.on_frame``: the raw frames of an exchange, reported the same on the fast and the general path
(command frames out, retransmissions included; answer frames in; echoes, NAKs and notifications not)."""

from __future__ import annotations

import pytest

pytest.importorskip("serial")

from posguard.drivers.twin.frames import NAK, encode_frame  # noqa: E402
from posguard.drivers.twin.link import TwinLink  # noqa: E402
from tests.drivers.test_twin_fastpath import (  # noqa: E402
    ANSWER,
    ANSWER_FRAME,
    CMD,
    FRAME,
    PtyLine,
    answer,
    make_link,
)


def observed(link: TwinLink) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []
    link.on_frame = lambda direction, frame: seen.append((direction, bytes(frame)))
    return seen


def test_no_observer_by_default(line: PtyLine) -> None:
    link = make_link(line, True)
    assert link.on_frame is None
    line.play(("rx", len(FRAME)), ("tx", FRAME), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert link.fast_hits == 1


def test_clean_exchange_reports_both_frames(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    seen = observed(link)
    line.play(("rx", len(FRAME)), ("tx", FRAME), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert link.fast_hits == (1 if fast else 0)  # the fast path still serves it with an observer
    assert seen == [("out", FRAME), ("in", ANSWER_FRAME)]  # the echo is not a frame of its own


def test_fast_path_fallback_still_reports_the_answer(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    seen = observed(link)
    line.play(("rx", len(FRAME)), ("tx", FRAME + b"\x50\x02"), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert link.fast_hits == 0
    assert seen == [("out", FRAME), ("in", ANSWER_FRAME)]


def test_reader_nak_reports_the_retransmission(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    seen = observed(link)
    line.play(("rx", len(FRAME)), ("tx", NAK), ("rx", len(FRAME)), ("tx", FRAME + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert seen == [("out", FRAME), ("out", FRAME), ("in", ANSWER_FRAME)]


def test_bad_lrc_answer_reports_only_the_good_repeat(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    seen = observed(link)
    bad = ANSWER_FRAME[:-1] + bytes((ANSWER_FRAME[-1] ^ 0xFF,))
    line.play(("rx", len(FRAME)), ("tx", FRAME + bad), ("rx", len(NAK)), ("tx", NAK + ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert seen == [("out", FRAME), ("in", ANSWER_FRAME)]  # our NAK is not a frame


def test_time_extension_is_an_answer_frame_too(line: PtyLine, fast: bool) -> None:
    link = make_link(line, fast)
    seen = observed(link)
    wait = encode_frame(answer(status=0x80, data=b""))
    line.play(("rx", len(FRAME)), ("tx", FRAME + wait), ("tx", ANSWER_FRAME))
    assert link.exchange(CMD) == ANSWER
    line.join()
    assert seen == [("out", FRAME), ("in", wait), ("in", ANSWER_FRAME)]
