"""Issue 10, "no poison pill": recovery and the queue never crash on one bad row. A row they cannot act on
is quarantined as an incident (evidence kept, operator told, once) and the terminal starts and trades."""

from __future__ import annotations

from typing import Any

from posguard.engine.journal import TxnRecord
from posguard.engine.sealing import Sealer
from tests.engine.conftest import MONDAY_0900, VISA_PAN, card
from tests.engine.fakehost import FakeHost


def _stuck_sale(engine: Any, host: FakeHost) -> str:
    """A sale whose answer was lost: it ends reversal_pending with its 0400 queued."""
    host.then("lost_response", "down", "down", "down", "down", "down", "down")
    result = engine.sale(card(), 1000)
    assert result.state in ("reversal_pending", "timed_out")
    return str(result.txn_id)


def _bad_row(engine: Any, kind: str, state: str, txn_id: str) -> None:
    with engine.journal.atomic("test"):
        engine.journal.insert_txn(TxnRecord(id=txn_id, kind=kind, state=state, amount_minor=1, currency="156",
                                            terminal_id="TERM0001", created_at=MONDAY_0900, updated_at=MONDAY_0900))


def test_each_kind_of_bad_row_is_quarantined_and_the_terminal_starts(make_engine: Any, host: FakeHost) -> None:
    engine = make_engine("cup")
    stuck = _stuck_sale(engine, host)
    (item,) = engine.saf.pending()
    fields = engine.saf.fields_of(item)
    with engine.journal.atomic("test"):
        # a queued reversal whose sealed copy no longer opens (data key changed, row altered)
        engine.journal.saf_update(item.id, sealed=Sealer(b"K" * 32).seal({"x": 1}, "other"))
        # a queued reversal the dialect cannot encode (a card number keyed as the amount, before the fix)
        bad = dict(fields, **{"4": VISA_PAN})
        unencodable = engine.saf.enqueue("reversal", stuck, "0400", bad)
    _bad_row(engine, "bogus_kind", "sent", "TERM0001-99999998")  # a kind this version does not know
    _bad_row(engine, "sale", "no_such_state", "TERM0001-99999999")  # a state the chart does not know
    _bad_row(engine, "bogus_kind", "created", "TERM0001-99999997")

    host.script.clear()
    restarted = make_engine("cup")
    report = restarted.recover()  # must not raise
    assert restarted.flush(wait=True) == []  # the queue is sent (on the virtual clock): the bad copies leave it

    assert sorted(report.quarantined) == ["TERM0001-99999997", "TERM0001-99999998"]
    quarantined = restarted.journal.incidents("quarantined")
    saf_ids = sorted(r["detail"] for r in quarantined)
    assert len(quarantined) == 4, [r["message"] for r in quarantined]
    assert any(str(item.id) in d for d in saf_ids) and any(str(unencodable) in d for d in saf_ids)
    assert all("acquirer" in r["message"] for r in quarantined)
    assert all(VISA_PAN not in r["message"] + r["detail"] for r in quarantined)
    assert restarted.saf.pending() == []
    assert restarted.journal.get_txn(stuck).state == "reversal_failed"  # manual follow-up, as for an expiry

    # the terminal trades, and a second start raises no second incident for the same rows
    assert restarted.sale(card(), 500).approved
    again = make_engine("cup").recover()
    assert sorted(again.quarantined) == ["TERM0001-99999997", "TERM0001-99999998"]
    assert len(restarted.journal.incidents("quarantined")) == 4
