"""A day at a till, replayed on a virtual clock; assertions on the journal, the wire and the host's books."""

import pytest

from posguard.engine.chart import IllegalTransition
from posguard.engine.errors import CorrectionRefused, RefundExceedsOriginal, WrongCard
from tests.engine.conftest import OTHER_PAN, UNIONPAY_PAN, card


def test_a_day_of_sales_corrections_and_settlement(engine, host, clock):
    coffee = engine.sale(card(), 32_00, order_ref="T1-0001")
    clock.advance(300)
    dinner = engine.sale(card(OTHER_PAN, signature=True), 268_00, order_ref="T1-0002")
    assert dinner.state == "signature_pending"
    engine.sign(dinner.txn_id)
    clock.advance(600)
    wrong = engine.sale(card(UNIONPAY_PAN, scheme="unionpay"), 45_00, order_ref="T1-0003")
    voided = engine.void(wrong.txn_id)  # cashier charged the wrong order: void before settlement
    assert voided.approved
    clock.advance(3600)
    refund = engine.refund(dinner.txn_id, 68_00)  # one dish returned
    assert refund.approved
    clock.advance(8 * 3600)
    settlement = engine.settle()

    assert settlement.balanced and settlement.batch_no == 1 and settlement.next_batch == 2
    assert settlement.totals == {"debit_count": 2, "debit_minor": 300_00, "credit_count": 1, "credit_minor": 68_00}
    states = {t.id: t.state for t in engine.journal.find_txns()}
    assert states[coffee.txn_id] == "settled" and states[wrong.txn_id] == "voided"
    assert states[dinner.txn_id] == "refunded_partial" and states[refund.txn_id] == "settled"
    assert [w.mti for w in host.wire] == ["0200", "0200", "0200", "0200", "0200", "0500"]
    assert host.net_charged() == 32_00 + 200_00
    assert engine.journal.integrity_check() == ["ok"]


def test_void_after_settlement_is_refused_refund_is_the_way(engine):
    sale = engine.sale(card(), 10_00)
    engine.settle()
    with pytest.raises(Exception, match="void"):
        engine.void(sale.txn_id)
    assert engine.refund(sale.txn_id, 10_00).approved
    assert engine.journal.get_txn(sale.txn_id).state == "refunded"


def test_refunds_may_repeat_but_never_exceed_the_original(engine, host):
    sale = engine.sale(card(), 100_00)
    engine.refund(sale.txn_id, 40_00)
    engine.refund(sale.txn_id, 50_00)
    with pytest.raises(RefundExceedsOriginal, match="1000 of 10000 is left"):
        engine.refund(sale.txn_id, 10_01)
    engine.refund(sale.txn_id, 10_00)
    assert engine.journal.get_txn(sale.txn_id).state == "refunded"
    assert host.net_charged() == 0


def test_void_on_a_different_card_is_refused_before_sending(engine, host):
    sale = engine.sale(card(), 10_00)
    with pytest.raises(WrongCard, match="present the original card"):
        engine.void(sale.txn_id, card=card(OTHER_PAN))
    assert len(host.wire) == 1


def test_void_must_be_for_the_full_amount(engine):
    sale = engine.sale(card(), 10_00)
    with pytest.raises(CorrectionRefused, match="full 1000"):
        engine.void(sale.txn_id, amount_minor=5_00)


def test_a_sale_or_refund_of_zero_is_refused_before_anything_is_journaled_or_sent(engine, host):
    sale = engine.sale(card(), 10_00)
    journaled = len(engine.journal.find_txns())
    with pytest.raises(CorrectionRefused, match="a sale of 0 moves no money"):
        engine.sale(card(), 0)
    with pytest.raises(CorrectionRefused, match="a refund of 0 moves no money"):
        engine.refund(sale.txn_id, 0)
    assert len(engine.journal.find_txns()) == journaled and len(host.wire) == 1


def test_declined_sale_needs_no_correction(engine, host):
    host.then("decline:51")
    result = engine.sale(card(), 999_00)
    assert result.state == "declined" and result.response_code == "51" and "51" in result.operator_message
    assert engine.journal.saf_items()[0].state == "disarmed"


def test_rc_94_is_journaled_and_the_next_sale_gets_a_new_stan(engine, host):
    host.then("rc:94")
    first = engine.sale(card(), 5_00)
    second = engine.sale(card(), 5_00)
    assert first.state == "declined" and second.approved and second.stan > first.stan
    assert engine.journal.query("SELECT kind FROM events WHERE kind = 'duplicate_transmission'")


def test_card_declines_at_second_generate_ac_so_the_approval_is_reversed(engine, host):
    sale = engine.sale(card(), 15_00)
    result = engine.reverse(sale.txn_id)
    assert result.state == "reversed" and host.charges_standing() == []


def test_preauth_then_completion(engine, host):
    hold = engine.preauth(card(), 500_00)
    done = engine.complete(hold.txn_id, 420_00)
    assert done.approved and engine.journal.get_txn(hold.txn_id).state == "completed"
    with pytest.raises(IllegalTransition):
        engine.complete(hold.txn_id, 10_00)  # a completion closes the hold
    other = engine.preauth(card(), 500_00)
    with pytest.raises(CorrectionRefused, match="take a new sale for the difference"):
        engine.complete(other.txn_id, 600_00)


def test_recover_after_a_crash_in_flight_reverses_the_unknown_sale(make_engine, host):
    engine = make_engine()

    class Crash(BaseException):
        pass

    def crash_after_send(point):
        if point == "host.after_send:0200":
            raise Crash

    engine.kill_points = crash_after_send
    with pytest.raises(Crash):
        engine.sale(card(), 77_00)
    engine.journal.close()
    assert len(host.charges_standing()) == 1  # the host charged; the terminal never heard

    restarted = make_engine()
    report = restarted.recover()
    assert len(report.reversals_released) == 1 and report.acknowledged and not report.still_pending
    assert host.charges_standing() == []
    txn = restarted.journal.find_txns()[0]
    assert txn.state == "reversed" and restarted.journal.incidents("recovered_in_flight")
