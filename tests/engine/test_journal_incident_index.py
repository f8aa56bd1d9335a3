"""A long-running box's journal grows for years: the idle tick (every few seconds) and the incident views find a
flow incident's events by index, and the unsigned follow-up tick reads only the follow-ups still open."""

from __future__ import annotations

from pathlib import Path

from posguard.clock import VirtualClock
from posguard.engine.journal import Journal
from posguard.flows.unsigned_follow_up import OPEN_FOLLOW_UP, overdue


def _follow_up(journal: Journal, txn: str, deadline: float, *outcomes: str) -> int:
    with journal.atomic("follow_up"):
        iid = journal.record_incident("flow:unsigned", "unsigned", txn_id=txn)
        journal.record_event("flow_step", txn_id=txn, detail={"incident": iid, "step": "follow_up_opened",
                                                              "status": "done", "deadline": deadline})
        for outcome in outcomes:
            journal.record_event("flow_outcome", txn_id=txn, detail={"incident": iid, "outcome": outcome})
    return iid


def _plan(journal: Journal, sql: str, params: tuple[object, ...]) -> str:
    return " / ".join(str(r["detail"]) for r in journal.query("EXPLAIN QUERY PLAN " + sql, params))


def test_open_follow_ups_only_and_by_index(tmp_path: Path) -> None:
    clock = VirtualClock(1_000.0)
    with Journal(tmp_path / "j.db", clock=clock) as journal:
        fresh = _follow_up(journal, "T-1", 2_000.0)  # opened, no outcome yet
        waiting = _follow_up(journal, "T-2", 2_000.0, "follow_up")
        _follow_up(journal, "T-3", 2_000.0, "follow_up", "signed_later")  # closed after being open
        _follow_up(journal, "T-4", 2_000.0, "kept_at_merchant_risk")
        reopened = _follow_up(journal, "T-5", 9_000.0, "kept_at_merchant_risk", "follow_up")  # last word counts
        with journal.atomic("day"):
            for n in range(200):  # the rest of the day's events, which the lookups must not scan
                journal.record_event("state", txn_id=f"X-{n}", detail={"n": n})
        rows = journal.flow_incidents_open("flow:unsigned", OPEN_FOLLOW_UP)
        assert [int(r["id"]) for r in rows] == [fresh, waiting, reopened]
        assert [f.txn_id for f in overdue(journal, 2_500.0)] == ["T-1", "T-2"]
        assert [f.txn_id for f in overdue(journal, 1_500.0)] == []
        plan = _plan(journal, "SELECT kind FROM events WHERE kind IN ('flow_step', 'flow_outcome') AND "
                     "json_extract(detail, '$.incident') = ? ORDER BY id", (fresh,))
        assert "USING INDEX ev_incident (<expr>=?)" in plan, plan  # flow_events' lookup is an index seek


def test_a_journal_of_the_previous_schema_gets_the_indexes(tmp_path: Path) -> None:
    clock = VirtualClock(1_000.0)
    path = tmp_path / "old.db"
    Journal(path, clock=clock, migrate_to=4).close()
    with Journal(path, clock=clock) as journal:
        names = {r["name"] for r in journal.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"ev_incident", "inc_kind"} <= names and journal.schema_version() == 5
