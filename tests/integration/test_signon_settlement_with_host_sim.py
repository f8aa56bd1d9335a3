"""Sign-on (at start, RC 77, CUP header) and settlement (CUP 0500/0320 202|207, ISO 920000/95/960000) of the
real engine over the real TcpHostLink against the acquirer simulator, on a virtual clock.

Every settlement scenario compares the simulator's ledger with the journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import EnginePolicies, TransactionEngine
from posguard.engine.errors import SettlementBlocked, SignOnFailed
from posguard.engine.hostlink import TcpHostLink
from posguard.engine.journal import Journal
from tests.engine.conftest import TERMINAL, card
from tests.host_sim.harness import linked
from tests.integration.simproc import books_disagree

DIALECTS = ["iso87ascii", "cup"]
DECLINED_PAN = "4000000000000002"  # the simulator's rules decline it (RC 05)
TID = TERMINAL.terminal_id


@dataclass
class Desk:
    dialect: str
    sim: HostSimulator
    link: TcpHostLink
    clock: VirtualClock
    path: Path
    engine: TransactionEngine

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    def restart(self, policies: EnginePolicies | None = None) -> None:
        self.engine.journal.close()
        journal = Journal(self.path, clock=self.clock)
        self.engine = TransactionEngine(journal, self.link, self.dialect, TERMINAL, self.clock,
                                        Detectors.default(self.clock), policies)

    def wire(self) -> list[tuple[str, str]]:
        """(MTI, code) of every request the host received: code = 60.3 (CUP) or 70 / 3 (ISO)."""
        out = []
        for r in self.sim.received:
            code = r.get("60", "")[8:11] if self.dialect == "cup" else r.get("70") or r.get("3", "")
            out.append((r["t"], code))
        return out

    def batch_state(self, batch_no: int) -> str:
        row = self.journal.batch(batch_no)
        assert row is not None, f"no batch {batch_no}"
        return str(row["state"])

    def disagreements(self) -> list[str]:
        return books_disagree(self.journal, self.sim.ledger.to_list(), TID)


@contextmanager
def desk(dialect: str, tmp_path: Path, policies: EnginePolicies | None = None) -> Iterator[Desk]:
    with linked(dialect=dialect) as (sim, link, clock, _events):
        d = Desk(dialect, sim, link, clock, tmp_path / "journal.db",
                 TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, dialect, TERMINAL, clock,
                                   Detectors.default(clock), policies))
        try:
            yield d
        finally:
            d.engine.journal.close()


@pytest.fixture(params=DIALECTS)
def d(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    with desk(request.param, tmp_path) as x:
        yield x


def events(journal: Journal, kind: str) -> list[Any]:
    return journal.query("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,))


SIGN_ON = {"cup": ("0800", "003"), "iso87ascii": ("0800", "001")}
SALE = {"cup": ("0200", "000"), "iso87ascii": ("0200", "000000")}


# -- sign-on -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", DIALECTS)
def test_signs_on_once_at_start_when_the_policy_says_so(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path, EnginePolicies(sign_on_at_start=True)) as x:
        assert x.engine.sale(card(), 10_00).approved
        assert x.engine.sale(card(), 11_00).approved
        assert [m for m, _ in x.wire()] == ["0800", "0200", "0200"]
        assert x.wire()[0] == SIGN_ON[dialect]
        assert [e.kind for e in x.sim.ledger.find(tid=TID)][:1] == ["signon"]
        assert len(events(x.journal, "signed_on")) == 1
        x.restart(EnginePolicies(sign_on_at_start=True))  # a new start signs on again
        assert x.engine.sale(card(), 12_00).approved
        assert [m for m, _ in x.wire()][-2:] == ["0800", "0200"]


def test_rc_77_signs_on_again_at_once_and_the_card_is_presented_again(d: Desk) -> None:
    """The 77'd sale is not re-sent (its cryptogram is single use; the host booked nothing): the terminal signs on
    at once and the operator is told to present the card again; the sale stays declined with RC 77."""
    d.sim.demand_sign_on("rc")
    refused = d.engine.sale(card(), 10_00)
    assert refused.state == "declined" and refused.response_code == "77"
    assert "signed on again" in refused.operator_message and "present the card again" in refused.operator_message
    assert d.sim.ledger.find(kind="sale") == []  # the host did not process it
    assert d.wire() == [SALE[d.dialect], SIGN_ON[d.dialect]]  # signed on again; the sale not re-sent
    assert not d.journal.sign_on_required()
    [demand] = events(d.journal, "sign_on_demanded")
    assert '"rc": "77"' in demand["detail"]
    [signed] = events(d.journal, "signed_on")
    assert '"reason": "demanded by the host"' in signed["detail"]
    assert d.journal.get_txn(refused.txn_id).state == "declined"
    sale = d.engine.sale(card(), 10_00)  # the card presented again: a new sale, no second sign-on
    assert sale.approved and sale.txn_id != refused.txn_id
    assert d.wire() == [SALE[d.dialect], SIGN_ON[d.dialect], SALE[d.dialect]]
    assert len(events(d.journal, "signed_on")) == 1
    assert d.disagreements() == []


def test_cup_header_processing_requirement_3_signs_on_before_the_next(tmp_path: Path) -> None:
    with desk("cup", tmp_path) as x:
        x.sim.demand_sign_on("header")
        first = x.engine.sale(card(), 10_00)
        assert first.approved  # processed; the header only says "sign on again"
        assert x.journal.sign_on_required()
        assert "header processing requirement 3" in events(x.journal, "sign_on_demanded")[0]["detail"]
        assert x.engine.sale(card(), 11_00).approved
        assert x.wire() == [("0200", "000"), ("0800", "003"), ("0200", "000")]
        assert x.disagreements() == []


def test_the_demand_survives_a_restart(d: Desk) -> None:
    d.sim.demand_sign_on("rc")
    d.sim.add_fault("wrong_rc", mti="0800", rc="91")  # the sign-on right after the 77 is refused
    refused = d.engine.sale(card(), 10_00)
    assert refused.response_code == "77" and "which failed" in refused.operator_message
    d.restart()  # e.g. the till was switched off
    assert d.engine.sign_on_due == "demanded by the host"
    assert d.engine.sale(card(), 10_00).approved
    assert [m for m, _ in d.wire()] == ["0200", "0800", "0800", "0200"]


def test_a_refused_sign_on_blocks_the_sale_and_sends_nothing_else(d: Desk) -> None:
    d.sim.demand_sign_on("rc")
    d.sim.add_fault("wrong_rc", mti="0800", rc="91", times=2)  # at once after the 77, and before the next sale
    refused = d.engine.sale(card(), 10_00)
    assert refused.state == "declined" and "RC 91" in refused.operator_message
    assert "present the card again" in refused.operator_message
    with pytest.raises(SignOnFailed, match="RC 91"):
        d.engine.sale(card(), 10_00)
    assert [m for m, _ in d.wire()] == ["0200", "0800", "0800"]
    assert d.journal.sign_on_required() and d.journal.incidents("sign_on_failed")
    assert d.engine.sale(card(), 10_00).approved  # the next attempt signs on and goes through


# -- settlement ------------------------------------------------------------------------------------------
def test_balanced_settlement(d: Desk) -> None:
    a = d.engine.sale(card(), 100_00)
    d.engine.sale(card(entry_mode="swipe"), 20_00)
    d.engine.refund(a.txn_id, 30_00)
    result = d.engine.settle()
    assert result.balanced and result.next_batch == 2 and d.journal.current_batch() == 2
    assert result.totals == {"debit_count": 2, "debit_minor": 120_00, "credit_count": 1, "credit_minor": 30_00}
    tail = d.wire()[3:]
    if d.dialect == "cup":  # 0500 (201), TC upload of the one chip sale (203), batch end (207)
        assert result.flag == "1" and result.tc_uploaded == 1
        assert tail == [("0500", "201"), ("0320", "203"), ("0320", "207")]
    else:
        assert tail == [("0500", "920000")]
    assert all(e.batch_closed for e in d.sim.ledger.find(tid=TID) if e.kind in ("sale", "refund"))
    assert d.batch_state(1) == "closed" and d.disagreements() == []


def test_unbalanced_settlement_uploads_every_detail_and_names_what_the_host_lacked(d: Desk) -> None:
    kept = d.engine.sale(card(), 40_00)
    d.sim.add_fault("wrong_rc", rc="00")  # the host declines (RC 05) and books it declined; the terminal hears 00
    lost = d.engine.sale(card(DECLINED_PAN), 25_00)
    assert lost.approved
    assert d.sim.ledger.find(kind="sale", stan=f"{lost.stan:06d}")[0].status == "declined"
    lacked_before = {e.rrn for e in d.sim.ledger.find(tid=TID, kind="sale") if e.status != "approved"}
    result = d.engine.settle()
    assert not result.balanced and result.uploaded == 2
    assert result.host_lacked == (lost.txn_id,)
    assert {d.journal.get_txn(t).rrn for t in result.host_lacked} == lacked_before  # exactly what the host lacked
    tail = d.wire()[2:]
    if d.dialect == "cup":  # Visa cards: the foreign side of field 48 disagrees, the domestic side is empty
        assert result.flags == {"domestic": "1", "foreign": "2"}
        assert tail == [("0500", "201"), ("0320", "205"), ("0320", "205"), ("0320", "202")]
    else:
        assert result.response_code == "95"
        assert tail == [("0500", "920000"), ("0320", "000000"), ("0320", "000000"), ("0500", "960000")]
    assert d.journal.incidents("host_lacked_transactions")
    assert d.journal.current_batch() == 2 and d.disagreements() == []  # the books agree again
    assert {d.journal.get_txn(kept.txn_id).state, d.journal.get_txn(lost.txn_id).state} == {"settled"}


def test_a_failed_upload_is_retried(d: Desk) -> None:
    d.engine.sale(card(), 40_00)
    d.sim.add_fault("wrong_rc", rc="00")
    d.engine.sale(card(DECLINED_PAN), 25_00)
    d.sim.add_fault("drop", mti="0320")  # the first detail never reaches the host's books
    result = d.engine.settle()
    assert not result.balanced and result.uploaded == 2 and len(result.host_lacked) == 1
    attempts = sorted(r["attempts"] for r in d.journal.uploads(1, "detail"))
    assert attempts == [1, 2]
    assert d.disagreements() == [] and d.journal.current_batch() == 2


def test_uploads_that_keep_failing_leave_the_batch_open_and_resume(d: Desk) -> None:
    d.engine.sale(card(), 40_00)
    d.sim.add_fault("wrong_rc", rc="00")
    lost = d.engine.sale(card(DECLINED_PAN), 25_00)
    d.sim.add_fault("wrong_rc", mti="0320", rc="96", times=0)
    with pytest.raises(SettlementBlocked, match="upload"):
        d.engine.settle()
    assert d.journal.current_batch() == 1 and d.batch_state(1) == "open"
    assert d.sim.ledger.find(kind="sale", stan=f"{lost.stan:06d}")[0].batch_closed is False
    d.sim.clear_faults()
    result = d.engine.settle()
    assert result.next_batch == 2 and d.journal.current_batch() == 2
    assert d.disagreements() == []


def test_cup_batch_number_advances_only_when_the_batch_end_is_acknowledged(tmp_path: Path) -> None:
    with desk("cup", tmp_path) as x:
        x.engine.sale(card(entry_mode="swipe"), 40_00)  # no TC to upload: the only 0320 is the batch end
        x.sim.add_fault("wrong_rc", mti="0320", rc="96")
        with pytest.raises(SettlementBlocked, match="batch end"):
            x.engine.settle()
        assert x.journal.current_batch() == 1 and x.batch_state(1) == "open"
        x.restart()  # durable: a restart still has batch 1 open
        assert x.journal.current_batch() == 1
        result = x.engine.settle()  # the host closed its side at the balanced 0500: now unbalanced, details go
        assert result.batch_no == 1 and result.next_batch == 2 and result.host_lacked == ()
        assert [c for m, c in x.wire()][-2:] == ["205", "202"] or [c for m, c in x.wire()][-2:] == ["201", "202"]
        assert x.journal.current_batch() == 2 and x.disagreements() == []


def test_a_reversal_answered_77_is_repeated_after_the_sign_on(tmp_path: Path) -> None:
    with desk("iso87ascii", tmp_path, EnginePolicies(send_reversal_immediately=False)) as x:
        x.sim.add_fault("no_response", mti="0200")
        lost = x.engine.sale(card(), 10_00)
        assert lost.state == "reversal_pending"
        x.sim.demand_sign_on("rc")
        assert x.engine.flush()  # the 0400 is answered 77: still pending, sign-on demanded
        assert x.journal.sign_on_required()
        x.clock.advance(5)
        assert x.engine.sale(card(), 11_00).approved
        assert [m for m, _ in x.wire()] == ["0200", "0400", "0800", "0401", "0200"]
        assert x.journal.get_txn(lost.txn_id).state == "reversed"
        assert x.disagreements() == []
