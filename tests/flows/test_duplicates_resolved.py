"""Duplicates prevented and resolved: a paid order is refused before the wire unless the operator overrides;
an incident awaiting confirmation is confirmed or declined by the operator; an incident closes when the
operator corrects it by hand; the report counts open and closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from posguard.incidents import get_incident
from posguard.report import build_report, render_report
from posguard.service.commands import CommandError, parse
from posguard.service.till import Till
from tests.engine.conftest import FreshCards, card
from tests.flows.conftest import DIALECTS, Desk, desk_for


def till_for(desk: Desk) -> Till:
    till = Till(desk.engine, dialect=desk.dialect)
    till.presenter = FreshCards(c1=card)  # the card is presented (read anew) for each charge
    return till


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_paid_order_is_named_before_anything_is_sent(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = till_for(desk)
        assert till.paid_order("A-17") is None
        first = till.do("sale", card="c1", amount=25_00, order="A-17")
        assert first is not None and first.approved
        refusal = till.paid_order("A-17") or ""
        assert f"order A-17 is already paid by {first.txn_id} (25.00 on 476173******0127)" in refusal
        assert "override=yes" in refusal and till.paid_order("A-18") is None
        # the operator's override: a second, different charge on the same order (a delivery fee)
        again = till.do("sale", card="c1", amount=10_00, order="A-17", override=True)
        assert again is not None and again.approved and len(desk.ledger(kind="sale")) == 2
        till.supervisor = "S01"
        assert till.do("void", txn=first.txn_id) is not None
        assert till.paid_order("A-17") is not None  # the override's charge stands: still paid


def _awaiting(desk: Desk, till: Till) -> tuple[str, str, int]:
    a = till.do("sale", card="c1", amount=40_00)
    b = till.do("sale", card="c1", amount=40_00)
    assert a is not None and b is not None
    (report,) = till.incidents  # the duplicate detector saw the second charge and its flow asks the operator
    assert report.kind == "duplicate_charge" and report.outcome == "awaiting_confirmation", report
    assert report.incident_id is not None and report.messages == []
    return a.txn_id, b.txn_id, report.incident_id


@pytest.mark.parametrize("dialect", DIALECTS)
def test_confirm_runs_the_correction_and_closes_it(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = till_for(desk)
        first, extra, iid = _awaiting(desk, till)
        assert build_report(desk.journal)["open_closed"] == {"open": 1, "closed": 0, "recorded": 0}
        report = till.do("confirm", incident=iid)
        assert report is not None and report.outcome == "voided" and report.mtis == ["0200"]
        assert desk.journal.get_txn(extra).state == "voided" and desk.journal.get_txn(first).state == "approved"
        inc = get_incident(desk.journal, iid)
        assert inc.status == "closed" and inc.outcome == "voided"
        assert till.do("confirm", incident=iid) is None and "not awaiting confirmation" in (till.refusal or "")
        rep = build_report(desk.journal)
        assert rep["open_closed"] == {"open": 0, "closed": 1, "recorded": 0}
        assert "status: 0 open, 1 closed, 0 recorded by the engine" in render_report(rep)


def test_decline_closes_with_nothing_sent(tmp_path: Path) -> None:
    with desk_for("cup", tmp_path) as desk:
        till = till_for(desk)
        first, extra, iid = _awaiting(desk, till)
        frames = desk.sim.frames_handled
        till.do("decline", incident=iid)
        assert till.refusal is None and desk.sim.frames_handled == frames
        inc = get_incident(desk.journal, iid)
        assert inc.status == "closed" and inc.outcome == "declined_by_operator"
        assert desk.journal.get_txn(extra).state == "approved"
        assert till.do("decline", incident=999) is None and "no incident 999" in (till.refusal or "")


def test_an_incident_closes_when_the_operator_corrects_it_by_hand(tmp_path: Path) -> None:
    with desk_for("iso87ascii", tmp_path) as desk:
        till = till_for(desk)
        _first, extra, iid = _awaiting(desk, till)
        till.supervisor = "S01"
        void = till.do("void", txn=extra)
        assert void is not None and void.approved
        inc = get_incident(desk.journal, iid)
        assert inc.status == "closed" and inc.outcome == "resolved_by_operator" and extra in inc.reason


def test_confirm_and_decline_parse() -> None:
    assert parse("confirm 12 sup=x", max_amount=1).incident == 12
    assert parse("decline 3", max_amount=1).incident == 3
    assert parse("sale 100 order=A-1 override=yes", max_amount=1000).override
    with pytest.raises(CommandError, match="is not an incident number"):
        parse("confirm TXN-1", max_amount=1)
    with pytest.raises(CommandError, match="override=yes is the only way"):
        parse("sale 100 order=A-1 override=1", max_amount=1000)
