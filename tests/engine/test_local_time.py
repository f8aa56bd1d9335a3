"""Issue 12 §4: the terminal's local time (terminal.timezone) in fields 12/13 and tags 9A/9F21, field 7 in GMT,
a refund's field 61 date from the host's answer; the host refusing a local date more than a day off. All on a
virtual clock around midnight: 16:30 UTC on 1 May 2026 is 00:30 on 2 May in Shanghai."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.emv.terminal import EmvTerminal, Transaction, terminal_data
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from posguard.engine.localtime import host_date_of, local_fields
from posguard.engine.profiles import get_profile
from tests.engine.conftest import TERMINAL, card
from tests.host_sim.harness import linked

UTC_1630 = datetime(2026, 5, 1, 16, 30, 0, tzinfo=UTC).timestamp()  # 2 May 00:30 in Shanghai
SHANGHAI = "Asia/Shanghai"
DAY = 86_400.0


def _fields(dialect: str, now: float, zone: str | None, **kw: Any) -> dict[str, Any]:
    return get_profile(dialect).request_fields(
        "sale", card=card(), amount_minor=100, currency="CNY", stan=1, batch_no=1, terminal_id="T",
        merchant_id="M", now=now, timezone=zone, **kw)


@pytest.mark.parametrize("dialect", ["cup", "iso87"])
def test_fields_12_13_are_local_and_field_7_stays_gmt(dialect: str) -> None:
    f = _fields(dialect, UTC_1630, SHANGHAI)
    assert (f["12"], f["13"]) == ("003000", "0502")
    if dialect == "iso87":
        assert f["7"] == "0501163000"  # GMT
    utc = _fields(dialect, UTC_1630, "UTC")
    assert (utc["12"], utc["13"]) == ("163000", "0501")


def test_tags_9a_9f21_are_local() -> None:
    when = datetime.fromtimestamp(UTC_1630, UTC)
    tags = terminal_data(EmvTerminal(pan_token_key=b"k" * 32, timezone=SHANGHAI), Transaction(100, when=when))
    assert (tags["9A"].hex(), tags["9F21"].hex()) == ("260502", "003000")
    tags = terminal_data(EmvTerminal(pan_token_key=b"k" * 32, timezone="America/New_York"),
                         Transaction(100, when=when))
    assert (tags["9A"].hex(), tags["9F21"].hex()) == ("260501", "123000")  # EDT, UTC-4


@contextmanager
def till(dialect: str, tmp_path: Path, *, terminal_clock_offset: float = 0.0, **sim: Any
         ) -> Iterator[tuple[TransactionEngine, HostSimulator, VirtualClock]]:
    """Engine + real TCP host; the host's clock is the harness clock set to 16:30 UTC, the terminal's may be
    ``terminal_clock_offset`` seconds off it."""
    with linked(dialect=dialect, sim_config=sim, start=UTC_1630) as (host, link, clock, _events):
        terminal_clock = clock if not terminal_clock_offset else VirtualClock(start=UTC_1630 + terminal_clock_offset)
        journal = Journal(tmp_path / f"journal-{dialect}.db", clock=terminal_clock)
        try:
            engine = TransactionEngine(journal, link, dialect, replace(TERMINAL, timezone=SHANGHAI),
                                       terminal_clock, Detectors.default(terminal_clock))
            yield engine, host, clock
        finally:
            journal.close()


def test_refund_61_carries_the_hosts_date_not_the_terminals(tmp_path: Path) -> None:
    """The host keeps UTC books (its date is 1 May); the terminal in Shanghai is already on 2 May."""
    with till("cup", tmp_path, terminal_timezone="UTC", date_window=DAY) as (engine, host, clock):
        sale = engine.sale(card(), 50_00)
        assert sale.approved
        [answer] = [m for m in engine.journal.messages(sale.txn_id) if m["direction"] == "in"]
        assert json.loads(answer["masked"])["15"] == "0501"  # the host's settlement date
        assert host_date_of(engine.journal, sale.txn_id) == "0501"
        [request] = [m for m in host.received if m["t"] == "0200"]
        assert (request["12"], request["13"]) == ("003000", "0502")  # the terminal's own local time
        clock.advance(3600)
        refund = engine.refund(sale.txn_id, 20_00)
        assert refund.approved, refund.operator_message
        [refund_request] = [m for m in host.received if m["t"] == "0220"]
        assert refund_request["61"].endswith("0501")  # original date = the host's, not 0502
        assert engine.journal.get_txn(sale.txn_id).created_at == UTC_1630  # the journal stays UTC


def test_field_61_falls_back_to_the_local_date_without_an_answer_date() -> None:
    from posguard.engine.journal import TxnRecord

    original = TxnRecord(id="S1", kind="sale", state="approved", amount_minor=1, currency="CNY", terminal_id="T",
                         created_at=UTC_1630, updated_at=UTC_1630, stan=7, batch_no=1, rrn="R1")
    f = get_profile("cup").request_fields(
        "refund", card=None, amount_minor=1, currency="CNY", stan=8, batch_no=1, terminal_id="T", merchant_id="M",
        now=UTC_1630 + 60, original=original, timezone=SHANGHAI)
    assert f["61"] == "000001000007" + "0502"
    f = get_profile("cup").request_fields(
        "refund", card=None, amount_minor=1, currency="CNY", stan=8, batch_no=1, terminal_id="T", merchant_id="M",
        now=UTC_1630 + 60, original=original, timezone=SHANGHAI, original_host_date="0430")
    assert f["61"].endswith("0430")


@pytest.mark.parametrize(("dialect", "rc"), [("cup", "05"), ("iso87", "12")])
@pytest.mark.parametrize(("offset", "accepted"), [(23 * 3600.0, True), (-23 * 3600.0, True),
                                                  (25 * 3600.0, False), (-2 * DAY, False)])
def test_the_host_refuses_a_local_date_more_than_a_day_off(tmp_path: Path, dialect: str, rc: str, offset: float,
                                                           accepted: bool) -> None:
    with till(dialect, tmp_path, terminal_clock_offset=offset, terminal_timezone=SHANGHAI,
              date_window=DAY) as (engine, host, _clock):
        sale = engine.sale(card(), 10_00)
        assert sale.approved is accepted
        [booked] = host.ledger.find(kind="sale")
        if not accepted:
            assert sale.response_code == rc
            assert "more than a day from the host's" in (booked.note or "")


@pytest.mark.parametrize("dialect", ["cup", "iso87"])
def test_the_date_check_is_on_by_default(tmp_path: Path, dialect: str) -> None:
    """Issue 12 §5: a fault-free default — no ``date_window`` in the configuration, still refused."""
    with till(dialect, tmp_path, terminal_clock_offset=-30 * DAY) as (engine, host, _clock):
        sale = engine.sale(card(), 10_00)
        assert not sale.approved and sale.response_code == {"cup": "05", "iso87": "12"}[dialect]
        assert any("more than a day" in reason for *_, reason in host.refusals) or \
            "more than a day" in (host.ledger.find(kind="sale")[0].note or "")


def test_the_date_check_can_be_switched_off(tmp_path: Path) -> None:
    with till("cup", tmp_path, terminal_clock_offset=-30 * DAY, date_window=None) as (engine, _host, _clock):
        assert engine.sale(card(), 10_00).approved


def test_local_fields_follow_the_zone_across_midnight() -> None:
    assert local_fields(UTC_1630 - 1, SHANGHAI) == ("002959", "0502")
    assert local_fields(UTC_1630 - 30 * 60 - 1, SHANGHAI) == ("235959", "0501")


def test_the_report_counts_incidents_on_the_terminals_local_days(tmp_path: Path) -> None:
    from posguard.report import build_report

    journal = Journal(tmp_path / "report.db", clock=VirtualClock(start=UTC_1630))
    try:
        with journal.atomic("incident"):
            journal.record_incident("outcome_unknown", "sale T-1: no answer; reversal queued", severity="warning")
        assert [t["day"] for t in build_report(journal, timezone=SHANGHAI)["trend"]] == ["2026-05-02"]
        assert [t["day"] for t in build_report(journal)["trend"]] == ["2026-05-01"]  # no zone: UTC days
    finally:
        journal.close()
