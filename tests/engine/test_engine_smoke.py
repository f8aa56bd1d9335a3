from tests.engine.conftest import card


def test_a_sale_is_approved_and_journaled(engine, host):
    result = engine.sale(card(), 12_34, order_ref="ORD-1")
    assert result.approved, result
    txn = engine.journal.get_txn(result.txn_id)
    assert txn.state == "approved" and txn.rrn and txn.stan == 1
    assert [h["event"] for h in engine.journal.history(txn.id)] == [
        "create", "read_card", "journal_request", "send", "approve"]
    assert [w.mti for w in host.wire] == ["0200"]
