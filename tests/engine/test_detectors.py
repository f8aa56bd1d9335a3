"""Each detector, fed by realistic till events on a virtual clock."""

import json

from posguard.engine.detectors import DuplicateChargeDetector, LedgerEntry
from posguard.engine.engine import EnginePolicies
from posguard.engine.saf import SafPolicy
from tests.engine.conftest import OTHER_PAN, UNIONPAY_PAN, card


def _rules(engine, kind):
    return [(d["rule"], json.loads(d["txn_ids"]), json.loads(d["evidence"])) for d in engine.journal.detections(kind)]


# -- duplicate charge -----------------------------------------------------------------------------------
def test_same_card_and_amount_minutes_apart_is_a_possible_second_purchase(engine, clock):
    first = engine.sale(card(), 18_00)
    clock.advance(240)
    second = engine.sale(card(), 18_00)
    [(rule, ids, ev)] = _rules(engine, "duplicate_charge")
    assert rule == "same_card_amount_terminal" and ids == [first.txn_id, second.txn_id]
    assert ev["classification"] == "possible_second_purchase" and ev["seconds_apart"] == 240
    assert second.detections and second.detections[0].rule == rule


def test_outside_the_window_or_another_card_or_amount_is_not_a_duplicate(engine, clock):
    engine.sale(card(), 18_00)
    engine.sale(card(OTHER_PAN), 18_00)
    engine.sale(card(), 18_01)
    clock.advance(601)
    engine.sale(card(), 18_00)
    assert engine.journal.detections("duplicate_charge") == []


def test_resend_after_a_timeout_is_a_retransmission_duplicate(make_engine, host, clock):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(block_new_transactions=False)))
    host.then("lost_response", "lost_request")  # charged, answer lost, reversal lost too
    lost = engine.sale(card(), 56_00)
    clock.advance(1)
    host.then("lost_request")  # the 0401 before the resend is lost too
    engine.sale(card(), 56_00)  # the cashier tries again
    [(rule, ids, ev)] = _rules(engine, "duplicate_charge")
    assert rule == "resend_after_timeout" and ids[0] == lost.txn_id and ev["classification"] == "retransmission"
    assert "reversal" in ev["action"]


def test_a_reversed_timeout_leg_is_not_reported(engine, host, clock):
    host.then("lost_response")  # reversal goes through at once
    engine.sale(card(), 56_00)
    engine.sale(card(), 56_00)
    assert engine.journal.detections("duplicate_charge") == []


def test_same_order_reference_paid_twice(engine, clock):
    engine.sale(card(), 30_00, order_ref="TABLE-12")
    clock.advance(900)  # outside the card window, but the same order
    engine.sale(card(OTHER_PAN), 30_00, order_ref="TABLE-12")
    [(rule, _ids, ev)] = _rules(engine, "duplicate_charge")
    assert rule == "same_order_reference" and ev["classification"] == "duplicate_order"


def test_the_same_order_on_the_same_card_is_reported_as_the_proven_duplicate_it_is(engine, clock):
    """Both rules hold (the same card and amount within the window, and the same order): one finding for the pair,
    the stronger evidence's (a duplicate order, voided without asking), not "possibly a second purchase"."""
    engine.sale(card(), 30_00, order_ref="TABLE-12")
    clock.advance(60)
    engine.sale(card(), 30_00, order_ref="TABLE-12")
    [(rule, _ids, ev)] = _rules(engine, "duplicate_charge")
    assert rule == "same_order_reference" and ev["classification"] == "duplicate_order"


def test_a_voided_first_leg_is_no_longer_a_duplicate(engine):
    first = engine.sale(card(), 9_00)
    engine.void(first.txn_id)
    engine.sale(card(), 9_00)
    assert engine.journal.detections("duplicate_charge") == []


def test_same_stan_is_a_retransmission(clock):
    from posguard.engine.journal import TxnRecord

    det = DuplicateChargeDetector(clock)
    base = dict(kind="sale", state="approved", amount_minor=500, currency="CNY", terminal_id="T1", created_at=0,
                updated_at=0, pan_token="tok", stan=42)
    assert det.observe(TxnRecord(id="a", **base)) == []
    [d] = det.observe(TxnRecord(id="b", **base))
    assert d.rule == "same_stan" and d.evidence["classification"] == "retransmission"


def test_duplicate_memory_is_bounded_by_the_window(clock):
    from posguard.engine.journal import TxnRecord

    det = DuplicateChargeDetector(clock, window=600, order_window=1200)
    for i in range(5000):
        det.observe(TxnRecord(id=f"t{i}", kind="sale", state="approved", amount_minor=i, currency="CNY",
                              terminal_id="T1", created_at=0, updated_at=0, pan_token=f"tok{i}", stan=i,
                              order_ref=f"o{i}"))
        clock.advance(1)
    assert len(det._timeline) <= 601 and len(det._charges) <= 601
    assert len(det._order_timeline) <= 1201 and len(det._orders) <= 1201


# -- unsigned -------------------------------------------------------------------------------------------
def test_signature_not_captured_by_the_deadline(engine, clock):
    sale = engine.sale(card(signature=True), 300_00)
    clock.advance(299)
    assert engine.check_signatures() == ()
    clock.advance(1)
    [d] = engine.check_signatures()
    assert d.rule == "signature_deadline" and d.txn_ids == (sale.txn_id,)
    assert engine.journal.get_txn(sale.txn_id).state == "unsigned"
    engine.sign(sale.txn_id)  # the customer came back
    assert engine.journal.get_txn(sale.txn_id).signature == "captured"


def test_signed_in_time_is_not_reported(engine, clock):
    sale = engine.sale(card(signature=True), 300_00)
    engine.sign(sale.txn_id)
    clock.advance(3600)
    assert engine.check_signatures() == ()
    assert engine.settle().detections == ()


def test_batch_closed_without_signature(engine):
    sale = engine.sale(card(signature=True), 300_00)
    result = engine.settle()
    assert [(d.rule, d.txn_ids) for d in result.detections] == [("batch_closed_without_signature", (sale.txn_id,))]
    txn = engine.journal.get_txn(sale.txn_id)
    assert txn.state == "settled" and txn.signature == "missing"


def test_unionpay_contactless_up_to_cny_1000_is_exempt(engine):
    small = engine.sale(card(UNIONPAY_PAN, signature=True, entry_mode="contactless", scheme="unionpay"), 1000_00)
    big = engine.sale(card(UNIONPAY_PAN, signature=True, entry_mode="contactless", scheme="unionpay"), 1000_01)
    chip = engine.sale(card(UNIONPAY_PAN, signature=True, entry_mode="chip", scheme="unionpay"), 10_00)
    assert engine.journal.get_txn(small.txn_id).signature == "exempt" and small.state == "approved"
    assert big.state == "signature_pending" and chip.state == "signature_pending"


def test_pin_verified_sale_needs_no_signature(engine):
    assert engine.sale(card(signature=False), 500_00).state == "approved"


# -- void mismatch -----------------------------------------------------------------------------------------
def test_void_undone_by_a_reversal_of_the_void(engine, host):
    sale = engine.sale(card(), 80_00)
    void = engine.void(sale.txn_id)
    engine.reverse(void.txn_id)  # e.g. the void's slip failed and the terminal reversed it
    [d] = engine.detectors.void_mismatch.check_chain(sale.txn_id, engine.journal)
    assert d.rule == "void_undone_by_reversal" and "void again" in d.evidence["action"]
    assert engine.journal.get_txn(sale.txn_id).state == "approved" and len(host.charges_standing()) == 1
    verdict = engine.detectors.void_mismatch.customer_claim(sale.txn_id, engine.journal)
    assert not verdict.refunded and "void_undone_by_reversal" in verdict.explanation


def test_void_whose_response_was_lost(engine, host):
    sale = engine.sale(card(), 80_00)
    host.then("lost_response")
    void = engine.void(sale.txn_id)
    assert void.state == "reversed"
    [d] = engine.detectors.void_mismatch.check_chain(sale.txn_id, engine.journal)
    assert d.rule == "void_response_lost" and d.evidence["original_state"] == "approved"
    assert engine.void(sale.txn_id).approved  # voiding again works once the reversal is done
    assert engine.detectors.void_mismatch.customer_claim(sale.txn_id, engine.journal).refunded


def test_voiding_again_after_a_lost_void_is_no_incident(engine, host):
    """Finding "a second void raised a void_mismatch": after a void whose answer was lost (reversed, or a kill -9
    and the start-up recovery), the operator voids again and the host approves. The approval's chain check named
    the first, reversed void as ``void_response_lost``, and the till ran the void-mismatch flow: an incident and
    a customer notice "you asked whether a cancelled payment was returned" nobody had asked for."""
    sale = engine.sale(card(), 80_00)
    host.then("lost_response")
    assert engine.void(sale.txn_id).state == "reversed"
    again = engine.void(sale.txn_id)
    assert again.approved and again.detections == ()
    assert engine.detectors.void_mismatch.check_chain(sale.txn_id, engine.journal) == []
    assert engine.journal.get_txn(sale.txn_id).state == "voided" and host.charges_standing() == []


def test_void_the_host_ledger_does_not_show(engine, host):
    sale = engine.sale(card(), 80_00)
    void = engine.void(sale.txn_id)
    ledger = [LedgerEntry(e["rrn"], e["kind"], e["amount"]) for e in host.ledger.values() if e["kind"] == "sale"]
    [d] = engine.detectors.void_mismatch.reconcile(engine.journal, ledger)
    assert d.rule == "void_missing_from_host_ledger" and d.txn_ids == (sale.txn_id, void.txn_id)
    full = [LedgerEntry(e["rrn"], e["kind"], e["amount"]) for e in host.ledger.values()]
    assert engine.detectors.void_mismatch.reconcile(engine.journal, full) == []


def test_void_with_a_wrong_amount_or_reference_in_the_journal(engine):
    sale = engine.sale(card(), 80_00)
    void = engine.void(sale.txn_id)
    with engine.journal.atomic("tamper"):  # as an old terminal version could have written it
        engine.journal.update_txn(void.txn_id, amount_minor=70_00)
        engine.journal._write("UPDATE messages SET masked = replace(masked, ?, '999999999999') WHERE txn_id = ?",
                              (sale.rrn, void.txn_id))
    rules = {d.rule for d in engine.detectors.void_mismatch.check_chain(sale.txn_id, engine.journal)}
    assert rules == {"void_amount_differs", "void_reference_differs"}


def test_customer_not_refunded_claim(engine):
    sale = engine.sale(card(), 50_00)
    engine.refund(sale.txn_id, 20_00)
    verdict = engine.detectors.void_mismatch.customer_claim(sale.txn_id, engine.journal)
    assert not verdict.refunded and "refunded 2000 of 5000" in verdict.explanation
    engine.refund(sale.txn_id, 30_00)
    assert engine.detectors.void_mismatch.customer_claim(sale.txn_id, engine.journal).refunded


# -- unsettled / not arrived ----------------------------------------------------------------------------------
def test_unbalanced_settlement_uploads_details_and_is_reported(engine, host):
    a = engine.sale(card(), 10_00)
    b = engine.sale(card(OTHER_PAN), 20_00)
    host.settlement_rc = "95"
    result = engine.settle()
    assert not result.balanced and result.uploaded == 2
    [d] = [d for d in result.detections if d.rule == "totals_unbalanced"]
    # the detection names the batch, not every sale in it: who is concerned is known from the acquirer's report
    assert d.txn_ids == () and d.evidence["batch_no"] == 1 and d.evidence["host_rc"] == "95"
    assert {a.txn_id, b.txn_id} == {u["txn_id"] for u in engine.journal.uploads(1, "detail")}
    assert [(w.mti, w.proc) for w in host.wire][-4:] == [("0500", "920000"), ("0320", "000000"), ("0320", "000000"),
                                                         ("0500", "960000")]  # RC 95: upload, then close


def test_pending_reversal_missing_ledger_entry_and_open_batch(make_engine, host, clock):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(block_new_transactions=False)))
    ok = engine.sale(card(), 10_00)
    host.then("lost_response", "lost_request")
    engine.sale(card(), 20_00)
    clock.advance(27 * 3600)
    ledger = [LedgerEntry("000000000777", "sale", 10_00)]  # the acquirer's report lacks our RRN
    rules = {d.rule: d for d in engine.detectors.reconciliation.check(engine.journal, ledger)}
    assert set(rules) == {"reversal_or_advice_pending", "batch_not_closed", "missing_from_host_ledger"}
    assert rules["missing_from_host_ledger"].txn_ids == (ok.txn_id,)


def test_duplicate_window_survives_a_restart(make_engine, clock):
    first_run = make_engine()
    first = first_run.sale(card(), 18_00)
    first_run.journal.close()
    clock.advance(120)
    restarted = make_engine()
    restarted.recover()
    second = restarted.sale(card(), 18_00)
    assert [d.txn_ids for d in second.detections] == [(first.txn_id, second.txn_id)]
