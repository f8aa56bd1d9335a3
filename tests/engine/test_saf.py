"""Store-and-forward: armed before sending, sent before anything else, repeated with backoff until done."""

import sqlite3

import pytest

from posguard.engine.engine import EnginePolicies
from posguard.engine.errors import SettlementBlocked, TransactionsBlocked
from posguard.engine.saf import SafPolicy
from tests.engine.conftest import card


def test_reversal_is_durable_before_the_request_leaves(make_engine, host, journal_path):
    seen = []

    def look_from_another_process(request):
        con = sqlite3.connect(journal_path)  # a separate connection sees only committed data
        seen.append((request.mti, con.execute("SELECT kind, state, mti FROM saf_queue").fetchall(),
                     con.execute("SELECT state FROM transactions").fetchall()))
        con.close()

    host.on_exchange = look_from_another_process
    engine = make_engine()
    engine.sale(card(), 10_00)
    assert seen == [("0200", [("reversal", "armed", "0400")], [("sent",)])]
    assert engine.journal.saf_items()[0].state == "disarmed"


def test_timeout_reverses_at_once_and_the_sale_stands_reversed(engine, host):
    host.then("lost_response")
    result = engine.sale(card(), 25_00)
    assert result.state == "reversed" and not result.approved
    assert [w.mti for w in host.wire] == ["0200", "0400"]
    assert host.charges_standing() == []
    assert engine.journal.incidents("outcome_unknown")


def test_cup_reversal_keeps_the_stan_and_gives_a_reason_iso_uses_field_90(make_engine, host):
    cup = make_engine("cup")
    host.then("lost_response")
    sale = cup.sale(card(), 1_00)
    reversal = cup.journal.messages(sale.txn_id)[-2]  # out 0400, then in 0410
    assert reversal["mti"] == "0400" and reversal["stan"] == sale.stan
    assert '"39": "98"' in reversal["masked"] and '"35"' not in reversal["masked"]


def test_repeats_go_as_0401_with_exponential_backoff_until_acknowledged(make_engine, host, clock):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(max_attempts=None, backoff_initial=1.0)))
    host.then("lost_response", "lost_request", "lost_request", "reject:96", "ok")
    result = engine.sale(card(), 40_00)
    assert result.state == "reversal_pending"
    assert engine.flush(wait=True) == []
    assert [w.mti for w in host.wire] == ["0200", "0400", "0401", "0401", "0401"]
    assert clock.slept == [1.0, 2.0, 4.0]  # backoff after attempts 1, 2, 3 (the 30 s timeouts are not sleeps)
    assert engine.journal.get_txn(result.txn_id).state == "reversed"


@pytest.mark.parametrize("rc", ["00", "12", "25"])
def test_reversal_answers_that_count_as_done(engine, host, rc):
    host.then("lost_response", f"reject:{rc}")
    result = engine.sale(card(), 3_00)
    assert result.state == "reversed"


def test_pending_reversal_blocks_new_sales_with_an_operator_message(engine, host, clock):
    host.then("lost_response", "lost_request")
    first = engine.sale(card(), 9_99)
    assert first.state == "reversal_pending"
    with pytest.raises(TransactionsBlocked) as blocked:
        engine.sale(card(), 9_99)
    text = str(blocked.value)
    assert "still unacknowledged" in text and first.txn_id in text and "next try in" in text
    assert [w.mti for w in host.wire] == ["0200", "0400"]  # backoff not elapsed: nothing more was sent
    clock.advance(1.0)
    second = engine.sale(card(), 9_99)  # the 0401 goes first, then the sale
    assert second.approved
    assert [w.mti for w in host.wire] == ["0200", "0400", "0401", "0200"]


def test_blocking_is_a_policy(make_engine, host):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(block_new_transactions=False)))
    host.then("lost_response", "lost_request")
    engine.sale(card(), 1_00)
    assert engine.sale(card(), 2_00).approved


def test_settlement_waits_for_the_queue(engine, host, clock):
    engine.sale(card(), 5_00)
    host.then("lost_response", "lost_request")
    engine.sale(card(), 6_00)
    with pytest.raises(SettlementBlocked):
        engine.settle()
    clock.advance(2)
    settled = engine.settle()
    assert settled.balanced and [w.mti for w in host.wire][-2:] == ["0401", "0500"]


def test_reversals_go_in_queue_order(make_engine, host, clock):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(block_new_transactions=False)),)
    host.then("lost_response", "lost_request")  # sale A, reversal A lost
    a = engine.sale(card(), 1_00)
    host.then("lost_response", "lost_request", "lost_request")  # reversal A again (1st in queue), sale B ...
    b = engine.sale(card(), 2_00)
    clock.advance(60)
    engine.flush(wait=True)
    reversal_stans = [w.stan for w in host.wire if w.mti in ("0400", "0401")]
    rev_a = [m["stan"] for m in engine.journal.messages(a.txn_id) if m["mti"].startswith("040")]
    rev_b = [m["stan"] for m in engine.journal.messages(b.txn_id) if m["mti"].startswith("040")]
    first_b = reversal_stans.index(rev_b[0])
    assert all(s == rev_a[0] for s in reversal_stans[:first_b])  # A finished before B's first try
    assert engine.journal.get_txn(a.txn_id).state == engine.journal.get_txn(b.txn_id).state == "reversed"


def test_after_max_attempts_the_reversal_expires_with_an_incident(make_engine, host):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(max_attempts=3)))
    host.then("lost_response", "lost_request", "lost_request", "lost_request")
    result = engine.sale(card(), 70_00)
    assert engine.flush(wait=True) == []
    txn = engine.journal.get_txn(result.txn_id)
    assert txn.state == "reversal_failed"
    incident = engine.journal.incidents("reversal_expired")[0]
    assert incident["severity"] == "critical" and "call the acquirer" in incident["message"]
    assert engine.sale(card(), 1_00).approved  # expired items no longer block


def test_expiry_by_age(make_engine, host, clock):
    engine = make_engine(policies=EnginePolicies(saf=SafPolicy(max_attempts=None, expiry=3600)))
    host.then("lost_response", *["lost_request"] * 50)
    engine.sale(card(), 1_00)
    clock.advance(3600)
    engine.flush()
    assert engine.journal.saf_items(["expired"])


def test_cup_refund_is_an_advice_repeated_as_0221(make_engine, host):
    engine = make_engine("cup")
    sale = engine.sale(card(), 100_00)
    host.then("lost_response", "lost_request", "ok")
    refund = engine.refund(sale.txn_id, 30_00)
    assert refund.state == "timed_out"
    engine.flush(wait=True)
    assert [w.mti for w in host.wire] == ["0200", "0220", "0221", "0221"]
    assert engine.journal.get_txn(refund.txn_id).state == "approved"
    assert engine.journal.get_txn(sale.txn_id).state == "refunded_partial"
    assert engine.journal.get_txn(sale.txn_id).refunded_minor == 30_00


def test_link_down_before_sending_disarms_the_reversal(engine, host):
    host.then("down")
    result = engine.sale(card(), 1_00)
    assert result.state == "not_sent" and "nothing was charged" in result.operator_message
    assert [i.state for i in engine.journal.saf_items()] == ["disarmed"]
    assert engine.sale(card(), 1_00).approved
