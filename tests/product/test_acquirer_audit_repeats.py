"""acq-audit, with the real engine and host simulator: what the recorded demo day cannot show.

An upload (0320) whose answer is lost is repeated as 0321 under the same STAN (``pos-flows.md`` (B):
last digit 1 = repeat; the profile's ``repeat_mti``), and the host answers the repeat from its books.

Found by the audit: the terminal re-sent the detail as a *new* 0320 with a new STAN. The host had booked the first
one (a sale it lacked: RC 25) and took the second for another upload of a transaction it now held, answering 00 —
so the terminal reported that the host had the sale all along (``host_lacked`` empty) while the host had learnt of
it only from the upload. The host now refuses a second 0320 of an acknowledged upload (RC 94, duplicate
transmission, naming the first STAN) and answers a 0321 with the first answer's code. Real engine, real TCP host
simulator, virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from tests.engine.conftest import TERMINAL, card
from tests.host_sim.harness import linked
from tests.product import acquirer_audit as audit

DECLINED_PAN = "4000000000000002"  # the simulator's rules decline it (RC 05)


@pytest.fixture(params=["cup", "iso87ascii"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[HostSimulator, TransactionEngine, VirtualClock]]:
    with linked(dialect=str(request.param)) as (sim, link, clock, _events):
        engine = TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, str(request.param), TERMINAL,
                                   clock, Detectors.default(clock))
        try:
            yield sim, engine, clock
        finally:
            engine.journal.close()


def test_an_upload_whose_answer_was_lost_is_repeated_as_0321_under_its_stan(
        desk: tuple[HostSimulator, TransactionEngine, VirtualClock]) -> None:
    sim, engine, _clock = desk
    sim.add_fault("wrong_rc", rc="00")  # the host declines (05) and books it declined; the terminal hears 00
    lost = engine.sale(card(DECLINED_PAN), 25_00)
    sim.add_fault("no_response", mti="0320")  # the detail is booked from, but its answer (25) never arrives
    result = engine.settle()
    uploads = [r for r in sim.received if r["t"] in ("0320", "0321") and r.get("37") == lost.rrn]
    assert [u["t"] for u in uploads] == ["0320", "0321"]
    assert uploads[0]["11"] == uploads[1]["11"]  # the repeat keeps the STAN the host booked the first under
    assert result.host_lacked == (lost.txn_id,)  # the host's first answer (25), from its books
    repeat = [e for e in sim.ledger.find(kind="batch_upload") if e.mti == "0321"]
    assert repeat == []  # answered from the books, not booked again
    assert [e.status for e in sim.ledger.find(kind="sale")] == ["approved"]  # booked once, from the detail


def test_a_second_0320_of_an_acknowledged_upload_is_refused_94(
        desk: tuple[HostSimulator, TransactionEngine, VirtualClock]) -> None:
    """The host side alone: the terminal's old retry (a new 0320, a new STAN) after a lost answer."""
    sim, engine, _clock = desk
    sim.add_fault("wrong_rc", rc="00")
    lost = engine.sale(card(DECLINED_PAN), 25_00)
    sim.add_fault("no_response", mti="0320")
    engine.settle()
    first = next(r for r in sim.received if r["t"] == "0320" and r.get("37") == lost.rrn)
    again = dict(first, **{"11": "000777"})  # what the terminal sent before acq-audit
    outcome = sim.processor.handle(again)
    assert outcome.response is not None and outcome.response["39"] == "94"
    assert outcome.entry is not None and f"uploaded under STAN {first['11']}" in outcome.entry.note


def test_a_balanced_day_with_a_refund_passes_the_audit(desk: tuple[HostSimulator, TransactionEngine, VirtualClock]
                                                       ) -> None:
    """What the demo day lacks: a refund (CUP 0220 / 60.1 = 25 with 61 = batch + trace + MMDD; international 0200 /
    20xxxx) in the totals' credits, and a balanced settlement (CUP: the chip sale's TC upload 203, then batch end
    207). Audited from what the host received and answered (its masked copies: no 55, so the TC's 55 is not
    checked here, but in test_acquirer_audit.py)."""
    sim, engine, _clock = desk
    a = engine.sale(card(), 100_00)
    engine.sale(card(entry_mode="swipe"), 20_00)
    engine.refund(a.txn_id, 30_00)
    assert engine.settle().balanced
    assert len(sim.received) == len(sim.sent)  # no fault: one answer per request, in order
    messages = []
    for i, (req, answer) in enumerate(zip(sim.received, sim.sent, strict=True)):
        messages.append(audit.Msg(2 * i + 1, "out", 0.0, {k: v for k, v in req.items() if k != "55"}))
        messages.append(audit.Msg(2 * i + 2, "in", 0.0, {k: v for k, v in answer.items() if k != "55"}))
    day = audit.Day(engine.profile.name, messages, [])
    assert [day.kind(m) for m in day.out()] == ["sale", "sale", "refund", "settlement"] + (
        ["upload", "batch_end"] if day.cup else [])
    assert len(audit.standing_refunds(day)) == 1
    checks = (audit.mandatory_problems, audit.stan_problems, audit.response_problems, audit.correction_problems,
              audit.upload_problems, audit.totals_problems, audit.settlement_action_problems)
    assert [p for check in checks for p in check(day)] == []
