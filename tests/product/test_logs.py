"""Logs on stdlib logging: JSON lines with named events and fields, levels that filter, journald priorities
under systemd, and card numbers masked while RRNs stay readable."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from posguard.logs import event, is_journal, setup_logging

PAN = "4761739001010119"  # Luhn-valid test PAN
RRN = "318220000001"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = setup_logging("info", stream, journald=False)
    yield stream
    logging.getLogger("posguard").removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_sale_event_carries_its_fields_and_masks_only_the_card(out: io.StringIO) -> None:
    event(logging.getLogger("posguard.till"), "sale.approved", f"sale on {PAN} rrn {RRN}", txn="T-1", stan=7,
          rc="00", rrn=RRN, note=f"card {PAN}")
    [rec] = _lines(out)
    assert rec["event"] == "sale.approved" and rec["level"] == "info" and rec["logger"] == "posguard.till"
    assert rec["txn"] == "T-1" and rec["stan"] == 7 and rec["rc"] == "00" and rec["rrn"] == RRN
    assert PAN not in out.getvalue() and "476173******0119" in str(rec["msg"]) and RRN in str(rec["msg"])
    assert rec["note"] == "card 476173******0119"


def test_library_loggers_are_json_and_the_level_filters(out: io.StringIO) -> None:
    logging.getLogger("posguard.emv").debug("SELECT: SW 9000")  # below info: dropped
    logging.getLogger("posguard.emv").warning("card %s answered 6A82", PAN)
    [rec] = _lines(out)
    assert rec["event"] == "emv" and rec["level"] == "warning" and PAN not in out.getvalue()
    assert {"ts", "level", "event", "msg"} <= set(rec)


def test_journald_prefixes_follow_the_level() -> None:
    stream = io.StringIO()
    handler = setup_logging("debug", stream, journald=True)
    try:
        log = logging.getLogger("posguard.service")
        event(log, "a.debug", level=logging.DEBUG)
        event(log, "link.timeout", level=logging.WARNING)
        event(log, "journal.quarantined", level=logging.ERROR)
    finally:
        logging.getLogger("posguard").removeHandler(handler)
    prefixes = [line[:3] for line in stream.getvalue().splitlines()]
    assert prefixes == ["<7>", "<4>", "<3>"]
    assert json.loads(stream.getvalue().splitlines()[1][3:])["event"] == "link.timeout"


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="log level 'loud' unknown: choose debug, info, warning, error"):
        setup_logging("loud")


def test_journald_is_detected_from_journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        st = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert is_journal(journal) and not is_journal(other) and not is_journal(io.StringIO())
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not is_journal(journal)
