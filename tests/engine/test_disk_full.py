"""Issue 10, "disk full after the request was sent": the journal cannot record the host's answer. The answer
is not acted on, the reversal is owed (kept in memory, written as soon as space returns), nothing new goes out
and settlement refuses meanwhile; when space returns the reversal is journaled, sent and an incident says why.

The failure is SQLite's own: ``PRAGMA query_only`` on the engine's connection makes every write fail with
``sqlite3.OperationalError`` (as SQLITE_FULL or SQLITE_IOERR do) until it is lifted ("space returns"). A cap
with ``max_page_count`` was tried first: SQLite still fits small rows into the free space of existing pages, so
the failure point was not deterministic.
"""

from __future__ import annotations

from typing import Any

import pytest

from posguard.engine.errors import JournalUnavailable, SettlementBlocked, TransactionsBlocked
from tests.engine.conftest import card
from tests.engine.fakehost import FakeHost


def _fill_disk(journal: Any) -> None:
    """From now on SQLite refuses every write on the engine's connection, as on a full disk."""
    journal._conn.execute("PRAGMA query_only = ON")


def _space_returns(journal: Any) -> None:
    journal._conn.execute("PRAGMA query_only = OFF")


@pytest.mark.parametrize("answer", ["ok", "lost_response"], ids=["approved", "timeout"])
def test_answer_not_journaled_is_reversed_when_space_returns(make_engine: Any, host: FakeHost, answer: str) -> None:
    engine = make_engine("cup")
    host.then(answer)
    host.on_exchange = lambda request: _fill_disk(engine.journal) if request.mti == "0200" else None
    with pytest.raises(JournalUnavailable) as err:
        engine.sale(card(), 1250)
    (txn_id,) = err.value.txn_ids
    assert "reversed as soon as the journal can be written" in str(err.value)
    assert engine.journal.get_txn(txn_id).state == "sent"  # what the journal holds: the outcome is unknown
    assert engine.owed_reversals and engine.write_failure and "readonly" in engine.write_failure

    host.on_exchange = None
    with pytest.raises(TransactionsBlocked, match="journal still cannot be written"):
        engine.sale(card(), 300)
    with pytest.raises(SettlementBlocked, match="journal still cannot be written"):
        engine.settle()
    assert [w.mti for w in host.wire] == ["0200"]  # nothing else went out

    _space_returns(engine.journal)
    # the next operation writes what was owed first, sends the reversal, then goes on
    result = engine.sale(card(), 300)
    assert result.approved
    assert engine.journal.get_txn(txn_id).state == "reversed"
    assert [w.mti for w in host.wire] == ["0200", "0400", "0200"]
    (incident,) = engine.journal.incidents("journal_write_failed")
    assert incident["txn_id"] == txn_id and "readonly" in incident["message"]
    assert engine.write_failure is None and not engine.owed_reversals
