"""One scenario per flow per dialect family against the real host simulator: the wire, the journal, the host's
ledger, the incident and the notice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from posguard.flows import FlowPolicies, FlowRequest
from posguard.flows.base import FlowCrash
from posguard.incidents import get_incident
from tests.engine.conftest import OTHER_PAN, VISA_PAN, card
from tests.flows.conftest import Desk


def mtis(desk: Desk, out: object) -> list[tuple[str, str]]:
    from posguard.flows import FlowOutcome

    assert isinstance(out, FlowOutcome)
    return [(m.mti, str(m["3"])) for m in desk.wire(out)]


# -- wrong amount -----------------------------------------------------------------------------------------
def test_overcharge_before_settlement_is_voided_and_resold(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 120_00)
    out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=100_00, right_card=card()))
    assert out.outcome == "corrected", out.reason
    void_proc = "200000" if desk.dialect == "cup" else "020000"
    assert mtis(desk, out) == [("0200", void_proc), ("0200", "000000")]
    assert [m["4"] for m in desk.wire(out)] == ["000000012000", "000000010000"]
    assert sorted((e.kind, e.amount, e.status) for e in desk.ledger()) == [
        ("sale", 100_00, "approved"), ("sale", 120_00, "voided"), ("void", 120_00, "approved")]
    assert desk.sim.ledger.totals(desk.engine.terminal.terminal_id).sale_amount == 100_00


def test_overcharge_after_settlement_is_partly_refunded(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 120_00)
    desk.settle()
    out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=100_00))
    assert out.outcome == "refunded", out.reason
    [refund] = desk.wire(out)
    assert refund["3"] == "200000" and refund["4"] == "000000002000" and refund["37"] == sale.rrn
    assert [(e.amount, e.status) for e in desk.ledger(kind="refund")] == [(20_00, "approved")]
    original = desk.journal.get_txn(sale.txn_id)
    assert original.state == "refunded_partial" and original.refunded_minor == 20_00


def test_refunds_never_exceed_the_original(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 50_00)
    desk.settle()
    first = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=30_00))
    second = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=10_00))
    assert (first.outcome, second.outcome) == ("refunded", "refunded")
    assert [e.amount for e in desk.ledger(kind="refund", status="approved")] == [20_00, 20_00]
    assert desk.journal.get_txn(sale.txn_id).refunded_minor == 40_00
    if desk.dialect == "cup":  # a CUP refund (0220) whose answer was lost is still in flight: it counts
        desk.sim.add_fault("no_response", mti="0220", times=0)
        desk.sim.add_fault("no_response", mti="0221", times=0)
        desk.engine.refund(sale.txn_id, 5_00)
        desk.sim.clear_faults()
        before = len(desk.ledger())
        out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=1_00))
        assert out.outcome == "refused" and "left to refund" in out.reason
        assert [m.mti for m in desk.wire(out)] in ([], ["0220"], ["0221"])  # only the queued advice may go
        assert len([e for e in desk.ledger()[before:] if e.kind == "refund" and e.amount == 9_00]) == 0


def test_undercharge_takes_a_sale_for_the_difference(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 90_00)
    out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=100_00, right_card=card()))
    assert out.outcome == "corrected" and mtis(desk, out) == [("0200", "000000")]
    assert sorted(e.amount for e in desk.ledger(kind="sale", status="approved")) == [10_00, 90_00]


# -- duplicate charge --------------------------------------------------------------------------------------
def test_same_order_paid_twice_is_voided_automatically(desk: Desk) -> None:
    first = desk.engine.sale(card(), 42_00, order_ref="ORDER-7")
    extra = desk.engine.sale(card(), 42_00, order_ref="ORDER-7")
    assert any(d.kind == "duplicate_charge" for d in extra.detections)
    out = desk.run(FlowRequest("duplicate_charge", (extra.txn_id,)))
    assert out.outcome == "voided", out.reason
    [void] = desk.wire(out)
    assert void["37"] == extra.rrn and void["4"] == "000000004200"
    states = {e.rrn: e.status for e in desk.ledger(kind="sale")}
    assert states == {first.rrn: "approved", extra.rrn: "voided"}
    assert desk.journal.get_txn(first.txn_id).state == "approved"
    assert out.notice is not None and "重复扣款" in out.notice.texts["zh"]


def test_possible_second_purchase_waits_for_the_operator(desk: Desk) -> None:
    first = desk.engine.sale(card(), 42_00)
    desk.clock.advance(60)
    extra = desk.engine.sale(card(), 42_00)
    out = desk.run(FlowRequest("duplicate_charge", (first.txn_id, extra.txn_id)))
    assert out.outcome == "awaiting_confirmation" and out.messages == [] and out.notice is None
    assert get_incident(desk.journal, out.incident_id or 0).status == "open"
    confirmed = desk.resume(out.incident_id or 0, FlowRequest("duplicate_charge", operator_confirmed=True))
    assert confirmed.outcome == "voided" and confirmed.incident_id == out.incident_id
    assert {e.rrn: e.status for e in desk.ledger(kind="sale")} == {first.rrn: "approved", extra.rrn: "voided"}
    assert get_incident(desk.journal, out.incident_id or 0).status == "closed"


def test_duplicate_after_settlement_is_refunded(desk: Desk) -> None:
    desk.engine.sale(card(), 42_00, order_ref="ORDER-8")
    extra = desk.engine.sale(card(), 42_00, order_ref="ORDER-8")
    desk.settle()
    out = desk.run(FlowRequest("duplicate_charge", (extra.txn_id,)))
    assert out.outcome == "refunded", out.reason
    [refund] = desk.wire(out)
    assert refund["3"] == "200000" and refund["37"] == extra.rrn
    assert [(e.amount, e.status) for e in desk.ledger(kind="refund")] == [(42_00, "approved")]


# -- void disputed -----------------------------------------------------------------------------------------
def test_void_that_stands_sends_nothing_and_gives_proof(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 60_00)
    void = desk.engine.void(sale.txn_id)
    before = len(desk.ledger())
    out = desk.run(FlowRequest("void_mismatch", (sale.txn_id,), claim="money did not come back"))
    assert out.outcome == "void_stands" and out.messages == [] and len(desk.ledger()) == before
    assert out.notice is not None
    en = out.notice.texts["en"]
    assert void.rrn is not None and void.rrn in en and (void.auth_code or "") in en and "476173******0119" in en
    assert "same or the next clearing day" in en and VISA_PAN not in en


def test_void_undone_by_its_reversal_is_voided_again(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 60_00)
    void = desk.engine.void(sale.txn_id)
    desk.engine.reverse(void.txn_id)  # the void's reversal was accepted: the charge stands again
    assert [e.status for e in desk.ledger(kind="sale")] == ["approved"]
    out = desk.run(FlowRequest("void_mismatch", (sale.txn_id,), claim="money did not come back"))
    assert out.outcome == "voided", out.reason
    assert "the void was undone" in out.steps[0].detail
    [again] = desk.wire(out)
    assert again["37"] == sale.rrn
    assert [e.status for e in desk.ledger(kind="sale")] == ["voided"]
    assert sorted(e.status for e in desk.ledger(kind="void")) == ["approved", "reversed"]


def test_void_undone_after_settlement_is_refunded(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 60_00)
    void = desk.engine.void(sale.txn_id)
    desk.engine.reverse(void.txn_id)
    desk.settle()
    out = desk.run(FlowRequest("void_mismatch", (sale.txn_id,)))
    assert out.outcome == "refunded", out.reason
    assert [(e.amount, e.status) for e in desk.ledger(kind="refund")] == [(60_00, "approved")]


# -- not settled ---------------------------------------------------------------------------------------------
def test_unsettled_flushes_the_queue_then_settles(desk: Desk) -> None:
    desk.sim.add_fault("no_response", mti="0200")
    desk.sim.add_fault("no_response", mti="0400", times=0)
    lost = desk.engine.sale(card(), 10_00)
    assert lost.state == "reversal_pending"
    kept = desk.engine.sale  # nothing else can be sold while the reversal is pending
    desk.sim.clear_faults()
    desk.clock.advance(3600)
    out = desk.run(FlowRequest("unsettled"))
    assert out.outcome in ("settled", "settled_after_upload"), out.reason
    sent = [m.mti for m in desk.wire(out)]
    assert sent[0] in ("0400", "0401") and "0500" in sent and sent.index("0500") > 0
    assert desk.journal.get_txn(lost.txn_id).state == "reversed"
    assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]
    batch = desk.journal.batch(1)
    assert batch is not None and batch["state"] == "closed"
    assert kept is not None


def test_unsettled_names_exactly_what_the_host_report_lacks(desk: Desk) -> None:
    from posguard.engine.detectors import LedgerEntry

    a = desk.engine.sale(card(), 10_00)
    b = desk.engine.sale(card(OTHER_PAN), 20_00)
    report = (LedgerEntry(a.rrn or "", "sale", 10_00),)  # the acquirer's report shows only the first
    out = desk.run(FlowRequest("unsettled", host_ledger=report))
    assert out.outcome == "acquirer_contact_needed", out.reason
    [compared] = [s for s in out.steps if s.name.startswith("compare:")]
    assert compared.detail.splitlines()[1].startswith(f"  approval_missing_at_host: {b.txn_id} sale")
    assert f"{a.txn_id} " not in compared.detail


def test_unsettled_names_what_the_host_lacked_from_its_answers_to_the_uploads(desk: Desk) -> None:
    """No acquirer report at hand: the host's answer to each uploaded detail says which it lacked."""
    kept = desk.engine.sale(card(), 40_00)
    desk.sim.add_fault("wrong_rc", rc="00")  # the host declines and books it declined; the terminal hears 00
    lost = desk.engine.sale(card("4000000000000002"), 25_00)
    assert lost.approved
    out = desk.run(FlowRequest("unsettled"))
    assert out.outcome == "acquirer_contact_needed", out.reason  # no report yet: the incident waits for one
    contact = out.steps[-1]
    assert contact.name == "acquirer_contact"
    assert f"the host held 1 transaction(s) only from their detail upload: {lost.txn_id}\n" in contact.detail
    assert kept.txn_id not in contact.detail


def test_unsettled_is_refused_while_the_host_is_down(desk: Desk) -> None:
    desk.sim.add_fault("no_response", mti="0200")
    desk.sim.add_fault("no_response", mti="0400", times=0)
    desk.engine.sale(card(), 10_00)
    out = desk.run(FlowRequest("unsettled"))
    assert out.outcome == "pending" and "unacknowledged" in out.reason
    assert desk.journal.batch(1)["state"] == "open"  # type: ignore[index]
    assert get_incident(desk.journal, out.incident_id or 0).status == "open"


# -- unsigned ------------------------------------------------------------------------------------------------
def test_e_signature_from_the_pad_is_stored_with_the_sale(desk: Desk, tmp_path: Path) -> None:
    desk.policies = FlowPolicies(signature_dir=str(tmp_path / "sig"))
    sale = desk.engine.sale(card(signature=True), 20_00)
    assert sale.state == "signature_pending"
    image = b"\x89PNG fake signature strokes"
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=True, signature=image))
    assert out.outcome == "signed" and out.messages == []
    assert desk.journal.get_txn(sale.txn_id).state == "signed"
    digest = hashlib.sha256(image).hexdigest()
    assert (tmp_path / "sig" / f"{sale.txn_id}-{digest[:12]}.sig").read_bytes() == image
    inc = get_incident(desk.journal, out.incident_id or 0)
    assert inc.evidence["e_signature_sha256"] == digest and digest in json.dumps(inc.to_dict())


def test_paper_resign_is_recorded(desk: Desk) -> None:
    sale = desk.engine.sale(card(signature=True), 20_00)
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=True, signature_source="paper",
                               operator="op7"))
    assert out.outcome == "signed" and "op7" in out.steps[1].detail


def test_customer_gone_opens_a_follow_up_then_kept_at_merchant_risk(desk: Desk) -> None:
    sale = desk.engine.sale(card(signature=True), 20_00)
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=False))
    assert out.outcome == "follow_up" and out.messages == [] and out.notice is not None
    kept = desk.run(FlowRequest("unsigned", (sale.txn_id,), follow_up="kept_at_risk", operator="op7"))
    assert kept.outcome == "kept_at_merchant_risk" and kept.incident_id == out.incident_id
    assert kept.notice is None and [e.status for e in desk.ledger(kind="sale")] == ["approved"]


def test_customer_gone_voided_with_consent(desk: Desk) -> None:
    sale = desk.engine.sale(card(signature=True), 20_00)
    desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=False))
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), follow_up="voided_with_consent", operator="supervisor S01"))
    assert out.outcome == "voided" and [m.mti for m in desk.wire(out)] == ["0200"]
    assert [e.status for e in desk.ledger(kind="sale")] == ["voided"]


def test_consent_after_settlement_is_a_refund_and_needs_a_supervisor(desk: Desk) -> None:
    sale = desk.engine.sale(card(signature=True), 20_00)
    desk.settle()
    before = len(desk.ledger())
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=False, follow_up="voided_with_consent"))
    assert out.outcome == "refused" and "supervisor" in out.reason and out.messages == []
    assert len(desk.ledger()) == before
    out = desk.run(FlowRequest("unsigned", (sale.txn_id,), follow_up="voided_with_consent", operator="supervisor S01"))
    assert out.outcome == "refunded" and [(e.amount, e.status) for e in desk.ledger(kind="refund")] == [
        (20_00, "approved")]


# -- reversal ------------------------------------------------------------------------------------------------
def test_reversal_after_timeout_is_sent_until_acknowledged(desk: Desk) -> None:
    desk.sim.add_fault("no_response", mti="0200")
    desk.sim.add_fault("no_response", mti="0400", times=0)
    sale = desk.engine.sale(card(), 10_00)
    assert sale.state == "reversal_pending"
    desk.sim.clear_faults()
    desk.clock.advance(3600)
    out = desk.run(FlowRequest("reversal", (sale.txn_id,), reason="timeout"))
    assert out.outcome == "reversed", out.reason
    [rev] = desk.wire(out)
    assert rev.mti in ("0400", "0401") and rev["4"] == "000000001000"
    if desk.dialect == "cup":
        assert rev["11"] == f"{sale.stan:06d}" and rev["39"] == "98"
    else:
        assert str(rev["90"]).startswith(f"0200{sale.stan:06d}")
    assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]
    assert out.notice is not None and "reversed" in out.notice.texts["en"]


def test_card_decline_at_second_generate_ac_is_reversed(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 10_00)
    out = desk.run(FlowRequest("reversal", (sale.txn_id,), reason="card_decline"))
    assert out.outcome == "reversed", out.reason
    assert [m.mti for m in desk.wire(out)] == ["0400"]
    assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]
    if desk.dialect == "cup":
        assert desk.wire(out)[0]["39"] == "06"


def test_invalid_response_is_reversed_with_reason_96(desk: Desk) -> None:
    desk.sim.add_fault("wrong_amount", mti="0200")  # field 4 not echoed: invalid
    desk.sim.add_fault("no_response", mti="0400", times=0)
    sale = desk.engine.sale(card(), 10_00)
    assert sale.state == "reversal_pending"
    desk.sim.clear_faults()
    desk.clock.advance(3600)
    out = desk.run(FlowRequest("reversal", (sale.txn_id,), reason="invalid_response"))
    assert out.outcome == "reversed" and len(out.messages) == 1
    assert [i.reason for i in desk.journal.saf_items(txn_id=sale.txn_id)] == ["96"]
    assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]
    assert get_incident(desk.journal, out.incident_id or 0).cause == "network"


def test_cup_reversal_of_an_invalid_response_carries_reason_96_on_the_wire(tmp_path: Path) -> None:
    from tests.flows.conftest import desk_for

    with desk_for("cup", tmp_path) as desk:
        desk.sim.add_fault("wrong_amount", mti="0200")
        desk.sim.add_fault("no_response", mti="0400", times=0)
        sale = desk.engine.sale(card(), 10_00)
        desk.sim.clear_faults()
        desk.clock.advance(3600)
        out = desk.run(FlowRequest("reversal", (sale.txn_id,), reason="invalid_response"))
        assert desk.wire(out)[0]["39"] == "96"


def test_power_loss_mid_sale_is_recovered_and_reversed(desk: Desk) -> None:
    desk.crash_at = "host.after_send:0200"  # the host charged the card; the terminal lost power
    with pytest.raises(FlowCrash):
        desk.engine.sale(card(), 33_00)
    desk.restart(recover=False)
    [txn] = desk.journal.find_txns("kind = 'sale'")
    assert txn.state == "sent" and [e.status for e in desk.ledger(kind="sale")] == ["approved"]
    out = desk.run(FlowRequest("reversal", (txn.id,), reason="power_loss", cause="device_fault"))
    assert out.outcome == "reversed", out.reason
    assert [s.name for s in out.steps] == ["check_transaction", "recover_in_flight", "send_reversal"]
    assert [m.mti for m in desk.wire(out)][-1] in ("0400", "0401")
    assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]


def test_approved_sale_is_not_reversed_for_a_timeout(desk: Desk) -> None:
    sale = desk.engine.sale(card(), 10_00)
    out = desk.run(FlowRequest("reversal", (sale.txn_id,), reason="timeout"))
    assert out.outcome == "refused" and "void it" in out.reason and out.messages == []


def test_unknown_transaction_is_refused(desk: Desk) -> None:
    out = desk.run(FlowRequest("wrong_card", ("TERM0001-99999999",), right_card=card(OTHER_PAN)))
    assert out.outcome == "refused" and "original not found" in out.reason
