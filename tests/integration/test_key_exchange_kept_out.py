"""The sign-on answer's working keys (CUP field 62; ISO field 48 by the key exchange our profile declares) are
encrypted under the TMK, yet they are key material: the journal keeps only their length and a capture leaves the
field out (issue 12 §1: "never in clear in a log, capture, repr or error" — and not under the TMK either, where a
capture or journal is copied off the box)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posguard.capture.format import CaptureWriter, read_capture
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from posguard.engine.profiles import get_profile
from tests.engine.conftest import TERMINAL
from tests.host_sim.harness import keyed, linked


@pytest.mark.parametrize("dialect", ["iso87ascii", "cup"])
def test_sign_on_keys_reach_neither_journal_nor_capture(dialect: str, tmp_path: Path) -> None:
    keys_field = get_profile(dialect).keys_field
    with linked(dialect=dialect, signed_on=False) as (sim, link, clock, _events):
        journal = Journal(tmp_path / "journal.db", clock=clock)
        engine = TransactionEngine(journal, link, dialect, keyed(TERMINAL), clock, Detectors.default(clock))
        writer = CaptureWriter(tmp_path / "cap.jsonl", dialect=dialect, tid=TERMINAL.terminal_id,
                               mid=TERMINAL.merchant_id, clock=clock)
        engine.add_exchange_listener(writer.on_exchange)
        try:
            assert engine.sign_on(reason="test").response_code == "00" and engine.working_keys is not None
        finally:
            writer.close()
            journal.close()
        [answer] = [m for m in sim.sent if m["t"] == "0810"]
        wire_keys = answer[keys_field]
        assert len(wire_keys) >= 16  # the host did send keys in this field
    with Journal(tmp_path / "journal.db", clock=clock) as journal:
        [row] = [r for r in journal.messages() if r["mti"] == "0810"]
    shown = json.loads(row["masked"])[keys_field]
    assert wire_keys not in shown and wire_keys[:16].lower() not in shown.lower()
    assert "not journaled" in shown or shown.startswith("<")
    [rec] = [r for r in read_capture(tmp_path / "cap.jsonl").records if r.get("mti") == "0810"]
    assert keys_field in rec["removed"]
    assert wire_keys[:16].lower() not in (tmp_path / "cap.jsonl").read_text().lower()
