"""Wrong card: void (before settlement) or refund (after) on the wrong card, then a sale on the right one."""

from __future__ import annotations

import json

from posguard.flows import FlowRequest
from posguard.incidents import get_incident
from tests.engine.conftest import OTHER_PAN, UNIONPAY_PAN, VISA_PAN, card
from tests.flows.conftest import Desk


def request(sale_id: str, **kw: object) -> FlowRequest:
    return FlowRequest("wrong_card", (sale_id,), right_card=card(OTHER_PAN), original_card=card(), **kw)  # type: ignore[arg-type]


def test_wrong_card_before_settlement_is_voided_and_recharged(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 100_00)
    out = desk.run(request(sale.txn_id))

    assert out.outcome == "corrected", out.reason
    assert [s.name for s in out.steps] == ["check_original", "void_wrong_card", "sale_right_card"]
    void_msg, sale_msg = desk.wire(out)
    assert void_msg.mti == "0200" and sale_msg.mti == "0200"
    assert void_msg["3"] == ("200000" if desk.dialect == "cup" else "020000")
    assert void_msg["37"] == sale.rrn and void_msg["38"] == sale.auth_code and void_msg["4"] == "000000010000"
    if desk.dialect == "cup":
        assert str(void_msg["60"]).startswith("23") and str(void_msg["61"]).startswith(f"000001{sale.stan:06d}")
    assert sale_msg["3"] == "000000" and "2" not in sale_msg  # card data never in the reported wire images
    # books: the wrong card is voided on both sides, the right card charged
    assert desk.journal.get_txn(sale.txn_id).state == "voided"
    host = {(e.kind, e.pan_masked): e.status for e in desk.ledger()}
    assert host == {("sale", "476173******0127"): "voided", ("void", "476173******0127"): "approved",
                    ("sale", "541333******0442"): "approved"}
    # one incident links both legs
    inc = get_incident(desk.journal, out.incident_id or 0)
    assert inc.kind == "wrong_card" and inc.status == "closed" and inc.cause == "operator_input"
    assert len(inc.txn_ids) == 3 and [s["rc"] for s in inc.steps if "rc" in s] == ["00", "00"]
    text = json.dumps(inc.to_dict(), ensure_ascii=False)
    assert VISA_PAN not in text and OTHER_PAN not in text and sale.rrn in text
    assert out.notice is not None and "刷错卡" in out.notice.texts["zh"] and sale.rrn in out.notice.texts["en"]
    assert "same or the next clearing day" in out.notice.texts["en"]


def test_wrong_card_after_settlement_is_refunded_and_recharged(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 80_00)
    desk.settle()
    out = desk.run(request(sale.txn_id))

    assert out.outcome == "corrected", out.reason
    refund_msg, sale_msg = desk.wire(out)
    assert refund_msg.mti == ("0220" if desk.dialect == "cup" else "0200") and refund_msg["3"] == "200000"
    assert refund_msg["37"] == sale.rrn and refund_msg["4"] == "000000008000"
    assert [e.status for e in desk.ledger(kind="refund")] == ["approved"]
    assert desk.journal.get_txn(sale.txn_id).state == "refunded"
    assert out.notice is not None and "1 to 10 clearing days" in out.notice.texts["en"]


def test_void_with_a_different_card_is_refused_before_anything_is_sent(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 30_00)
    before = len(desk.ledger())
    out = desk.run(FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN),
                               original_card=card(UNIONPAY_PAN, scheme="unionpay")))
    assert out.outcome == "refused" and "RC 14" in out.reason and out.messages == []
    assert len(desk.ledger()) == before and desk.journal.get_txn(sale.txn_id).state == "approved"
    assert get_incident(desk.journal, out.incident_id or 0).outcome == "refused"


def test_unionpay_void_needs_the_original_card(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 30_00)
    out = desk.run(FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN)))
    if desk.dialect == "cup":
        assert out.outcome == "refused" and "original card present" in out.reason and out.messages == []
    else:  # international voids use the card on file
        assert out.outcome == "corrected"


def test_dry_run_sends_and_writes_nothing(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 30_00)
    incidents = len(desk.journal.incidents())
    out = desk.run(request(sale.txn_id), dry_run=True)
    assert out.outcome == "would_correct" and out.incident_id is None
    assert [s.status for s in out.steps] == ["done", "would_send", "would_send"]
    assert [m.mti for m in desk.wire(out)] == ["0200", "0200"]
    assert len(desk.ledger()) == 1 and len(desk.journal.incidents()) == incidents
