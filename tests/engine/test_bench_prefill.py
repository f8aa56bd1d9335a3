"""The benchmark's bulk-built journal is one the engine continues on: same shape, unique ids, STANs in step."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "benchmarks" / "bench_engine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prefilled_journal_continues_like_an_engine_written_one(tmp_path: Path) -> None:
    bench = _bench()
    result = bench.replay(300, tmp_path, window=50)
    assert (result["journal_sales"], result["timed_sales"], result["events"]) == (300, 50, 400)
    con = sqlite3.connect(tmp_path / "bench-300.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = [con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("transactions", "state_history", "messages", "saf_queue")]
        assert counts == [300, 2400, 600, 300]
        assert con.execute("SELECT COUNT(DISTINCT stan), COUNT(DISTINCT order_ref) FROM transactions").fetchone() == (300, 300)
        assert con.execute("SELECT value FROM counters WHERE name = 'stan'").fetchone()[0] == 600
        times = [r[0] for r in con.execute("SELECT created_at FROM transactions ORDER BY rowid")]
        assert times == sorted(times) and len(set(times)) == 300
        orphans = con.execute("SELECT COUNT(*) FROM saf_queue s LEFT JOIN transactions t ON t.id = s.txn_id "
                              "WHERE t.id IS NULL").fetchone()[0]
        assert orphans == 0
    finally:
        con.close()
