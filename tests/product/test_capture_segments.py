"""Issue 10, "the capture is truncated at every start": a service's capture is appended to, one segment per
start; a replay restarts (recovers) where the live terminal did. And no cardholder name reaches a capture."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from posguard.capture.format import CaptureError, CaptureWriter, read_capture
from posguard.capture.replay import replay
from posguard.capture.sanitize import blank_names
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from posguard.service.till import Till
from tests.engine.conftest import MONDAY_0900, TERMINAL, card
from tests.engine.fakehost import FakeHost


class Crash(BaseException):
    pass


def _start(journal_path: Path, capture: Path, clock: VirtualClock, host: FakeHost) -> tuple[Any, Any, Any]:
    journal = Journal(journal_path, clock=clock)
    engine = TransactionEngine(journal, host, "iso87ascii", TERMINAL, clock, Detectors.default(clock))
    writer = CaptureWriter(capture, dialect="iso87ascii", tid=TERMINAL.terminal_id, mid=TERMINAL.merchant_id,
                           clock=clock, append=True)
    till = Till(engine, dialect="iso87ascii", writer=writer)
    return journal, engine, till


def test_a_restart_appends_a_segment_and_replay_recovers_there(tmp_path: Path) -> None:
    clock, host = VirtualClock(start=MONDAY_0900), FakeHost(VirtualClock(start=MONDAY_0900))
    capture, db = tmp_path / "day.jsonl", tmp_path / "journal.db"

    journal, engine, till = _start(db, capture, clock, host)
    till.add_card("c1", card())
    host.then("lost_response")

    def crash(point: str) -> None:
        if point == "host.after_send:0200":
            raise Crash(point)

    engine.kill_points = crash
    with pytest.raises(Crash):  # the power goes after the sale went out and before its outcome was journaled
        till.do("sale", card="c1", amount=1250)
    till.writer.close()
    journal.close()

    clock.advance(60)
    journal, engine, till = _start(db, capture, clock, host)  # the service starts again on the same files
    report = engine.recover()
    assert report.reversals_released and engine.journal.find_txns()[0].state == "reversed"
    till.writer.close()
    journal.close()

    lines = capture.read_text().splitlines()
    assert sum('"posguard_capture"' in line for line in lines) == 2  # nothing before the crash was lost
    read = read_capture(capture)
    kinds = [r["k"] for r in read.records]
    assert kinds.count("start") == 1 and kinds.index("start") > kinds.index("op")
    times = [r["t"] for r in read.records]
    assert times == sorted(times)
    start = kinds.index("start")
    assert lines[read.lines[start] - 1].startswith('{"posguard_capture"')

    replayed = replay(capture, desk=Till.for_replay, journal_path=tmp_path / "replay.db")
    assert [t.state for t in replayed.journal.find_txns()] == ["reversed"]
    assert [m.mti for m in replayed.sent][0] == "0200" and replayed.sent[-1].mti in ("0400", "0401")
    assert any(line.startswith("restart: recovery") and "1 queued message(s) acknowledged" in line
               for line in replayed.log), replayed.log
    replayed.journal.close()


def test_a_later_segment_of_another_terminal_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    for tid in ("TERM0001", "TERM0002"):
        with CaptureWriter(path, dialect="cup", tid=tid, mid="M", clock=VirtualClock(), append=True) as w:
            w.record("link", event="flow")
    with pytest.raises(CaptureError) as err:
        read_capture(path)
    assert err.value.line == 3 and "TERM0001" in str(err.value)


def test_without_append_a_capture_is_written_anew(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    for _ in range(2):
        with CaptureWriter(path, dialect="cup", tid="T", mid="M", clock=VirtualClock()) as w:
            w.record("link", event="flow")
    assert len(path.read_text().splitlines()) == 2


def test_the_cardholder_name_never_reaches_a_capture(tmp_path: Path) -> None:
    name = b"LEE/WEI MS"
    record = bytes.fromhex("70") + bytes([5 + len(name)]) + bytes.fromhex("5F20") + bytes([len(name)]) + name \
        + bytes.fromhex("9F0802") + b"\x00\x02" + b"\x90\x00"
    path = tmp_path / "names.jsonl"
    with CaptureWriter(path, dialect="cup", tid="T", mid="M", clock=VirtualClock()) as w:
        w.apdu(bytes.fromhex("00B2010C00"), record)
        frame_payload = bytes.fromhex("80") + len(record).to_bytes(4, "little") + bytes(5) + record
        from posguard.capture.format import sanitise_frame  # noqa: PLC0415 - the frame path too
        raw = b"\x03\x06" + frame_payload
        lrc = 0
        for b in raw:
            lrc ^= b
        w.frame("in", raw + bytes([lrc]))
        assert sanitise_frame(raw + bytes([lrc]), w.sanitiser)[2:-1].find(name) < 0
    text = path.read_text()
    assert name.hex().upper() not in text.upper() and "LEE/WEI" not in text
    assert blank_names(record) == record.replace(name, b" " * len(name))
    json.loads(io.StringIO(text).readlines()[1])  # still a valid record


def test_a_card_number_keyed_as_a_number_never_reaches_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "op.jsonl"
    with CaptureWriter(path, dialect="cup", tid="T", mid="M", clock=VirtualClock()) as w:
        w.record("op", op="sale", card="c1", amount=4761739001010119)
        w.record("op", op="sale", card="c1", amount=1250)
    text = path.read_text()
    assert "4761739001010119" not in text and '"amount":1250' in text
    assert '"amount":476173' in text  # the same BIN, a test PAN: the capture still shows what was keyed
