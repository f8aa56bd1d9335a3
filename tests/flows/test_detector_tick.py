"""The service's idle tick runs the time-driven detectors on the engine's clock, each incident raised once."""

from __future__ import annotations

from pathlib import Path

from posguard.incidents import load_incidents
from posguard.service.till import Till
from tests.engine.conftest import card
from tests.flows.conftest import desk_for


def test_signature_deadline_goes_to_its_flow_once(tmp_path: Path) -> None:
    with desk_for("cup", tmp_path) as desk:
        till = Till(desk.engine, dialect="cup")
        till.add_card("c1", card(signature=True))
        sale = till.do("sale", card="c1", amount=20_00)
        assert sale is not None and desk.journal.get_txn(sale.txn_id).state == "signature_pending"
        assert till.tick() == []  # not due yet
        desk.clock.advance(desk.engine.policies.signature_deadline + 1)
        (line,) = till.tick()
        assert "INCIDENT unsigned [signature_deadline]" in line and sale.txn_id in line
        assert desk.journal.get_txn(sale.txn_id).state == "unsigned"
        assert till.tick() == [] and [i.kind for i in load_incidents(desk.journal)] == ["unsigned"]


def test_a_reversal_pending_too_long_and_a_batch_left_open_are_raised_once(tmp_path: Path) -> None:
    with desk_for("iso87ascii", tmp_path) as desk:
        desk.sim.add_fault("no_response", mti="0200")
        desk.sim.add_fault("no_response", mti="0400", times=0)
        till = Till(desk.engine, dialect="iso87ascii")
        till.add_card("c1", card())
        sale = till.do("sale", card="c1", amount=30_00)
        assert sale is not None and desk.journal.get_txn(sale.txn_id).state == "reversal_pending"
        assert till.tick() == []  # queued, but not for long
        desk.clock.advance(till.pending_reversal_age + 1)
        (line,) = till.tick()
        assert line.startswith(f"INCIDENT reversal_or_advice_pending {sale.txn_id}")
        assert till.tick() == []
        desk.clock.advance(27 * 3600)
        said = till.tick()
        assert [s.split()[1] for s in said] == ["batch_not_closed"]
        # a restarted service reads the journal: nothing is raised twice
        again = Till(desk.engine, dialect="iso87ascii")
        assert again.tick() == []
        kinds = sorted(i.kind for i in load_incidents(desk.journal))
        assert kinds.count("reversal_or_advice_pending") == 1 and kinds.count("batch_not_closed") == 1
