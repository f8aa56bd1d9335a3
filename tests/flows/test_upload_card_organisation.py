"""Issue 13: approvals that reach the host only in the detail upload carry the card organisation (CUP field 63) and
the currency (49), so the acquirer books them on the right side of the CUP domestic/foreign split, its report can be
read, and the two-way comparison finds nothing where both sides agree (pos-flows.md §B fields 48 and 63)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.host.report import to_csv
from posguard.engine.acquirer_report import load_report
from posguard.engine.journal import TxnRecord
from posguard.engine.settlement import card_organisation, card_side
from posguard.incidents import get_incident, load_incidents
from tests.engine.conftest import UNIONPAY_PAN, VISA_PAN, card
from tests.flows.conftest import TID, Desk
from tests.flows.test_unsettled_report import new_till


def _forget(desk: Desk, amount: int) -> None:
    """The acquirer's books lack the approval of ``amount`` (lost after its answer was sent)."""
    with desk.sim.ledger._lock:
        desk.sim.ledger.entries[:] = [e for e in desk.sim.ledger.entries if e.amount != amount]


def test_a_detail_only_approval_is_booked_foreign_and_the_report_agrees(desk: Desk, tmp_path: Path) -> None:
    till = new_till(desk, tmp_path)
    visa = till.do("sale", card="visa", amount=20_00)
    till.do("sale", card="up1", amount=10_00)
    _forget(desk, 20_00)
    start = len(till.sent)
    till.do("settle")
    [detail] = [m for m in till.sent[start:] if m.mti == "0320" and m.get("37") == visa.rrn]
    assert detail["49"] == "156"
    if desk.dialect == "cup":
        assert str(detail["63"]).strip() == "VIS"  # the card organisation, as the 0210 answered it
    [booked] = [e for e in desk.ledger(kind="sale") if e.amount == 20_00]
    assert (booked.note, booked.card_org, booked.side, booked.currency) == (
        "booked from batch upload", "VIS", "foreign", "156")
    report = tmp_path / "acquirer.csv"
    report.write_text(to_csv(desk.sim.ledger, desk.dialect, TID))
    rows = load_report(report).rows  # a detail-only booking is a readable row (its currency was missing)
    assert [(r.amount_minor, r.card_org, r.side) for r in rows if r.kind == "sale"] == [
        (10_00, "CUP", "domestic"), (20_00, "VIS", "foreign")]
    [inc] = till.do("reconcile", report=str(report))
    record = get_incident(desk.journal, inc.incident_id or 0)
    assert (record.status, record.outcome) == ("closed", "reconciled")
    [contact] = [s for s in record.steps if str(s["name"]).startswith("acquirer_contact:")]
    assert "acquirer booked (foreign): 1 sale(s) CNY 20.00" in contact["detail"]
    assert "acquirer booked (domestic): 1 sale(s) CNY 10.00" in contact["detail"]
    assert [i.kind for i in load_incidents(desk.journal)].count("unsettled") == 1


@pytest.mark.parametrize(("scheme", "pan", "org", "side"), [
    ("unionpay", "622848*********0018", "CUP", "domestic"), ("visa", "476173******0127", "VIS", "foreign"),
    ("mastercard", "541333******0442", "MCC", "foreign"), (None, "356999******0001", "JCB", "foreign"),
    (None, "371449*****8431", "AMX", "foreign"), (None, None, "CUP", "domestic"),
])
def test_the_card_organisation_follows_the_scheme_then_the_pan(scheme: str | None, pan: str | None, org: str,
                                                                side: str) -> None:
    txn = TxnRecord.__new__(TxnRecord)
    object.__setattr__(txn, "scheme", scheme)
    object.__setattr__(txn, "pan_masked", pan)
    assert (card_organisation(txn), card_side(txn)) == (org, side)


def test_the_sales_own_card_is_sent_back(desk: Desk) -> None:
    """Both dialect families: the detail names the card organisation only where the dialect has the field (CUP)."""
    desk.engine.sale(card(UNIONPAY_PAN, scheme="unionpay"), 10_00)
    desk.engine.sale(card(VISA_PAN), 5_00)
    _forget(desk, 5_00)
    result = desk.engine.settle()
    assert not result.balanced and len(result.host_lacked) == 1
    assert [e.card_org for e in desk.ledger(kind="sale")] == ["CUP", "VIS"]
