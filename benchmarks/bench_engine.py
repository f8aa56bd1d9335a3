"""Engine + journal throughput with full durability (WAL, synchronous=FULL).

    .venv/bin/python benchmarks/bench_engine.py                # 10k and 1M sales
    .venv/bin/python benchmarks/bench_engine.py --large 100000 # scaled down (CI)

Prints, for a small and a large replay of synthetic sales through TransactionEngine + Journal:
events/s (state transitions journaled per second), sales/s, commits per sale and the per-event cost
ratio large/small (target <= 1.3); then the cost of one journal commit (a state transition: history row +
transaction update) against a bare single-row SQLite insert with the same durability (target <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from posguard.clock import VirtualClock  # noqa: E402
from posguard.engine.card import CardData  # noqa: E402
from posguard.engine.engine import EnginePolicies, TerminalConfig, TransactionEngine  # noqa: E402
from posguard.engine.journal import Journal  # noqa: E402
from posguard.iso8583.message import Message  # noqa: E402

TERMINAL = TerminalConfig("TERM0001", "MERCHANT0000001", token_key=b"k" * 32, data_key=b"d" * 32)


class InstantHost:
    """Approves everything at once; echoes the fields a validator checks."""

    def __init__(self) -> None:
        self.n = 0

    def exchange(self, request: Message, *, timeout: float) -> Message:
        self.n += 1
        f = request.fields()
        resp = Message(request.response_mti, {k: f[k] for k in ("3", "4", "11", "41", "42") if k in f},
                       dialect=request.dialect)
        resp["39"] = "00"
        resp["37"] = f"{self.n:012d}"
        resp["38"] = f"{self.n % 1_000_000:06d}"
        return resp


def _cards(n: int, seed: int = 7) -> list[CardData]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        pan = "476173" + "".join(rnd.choice("0123456789") for _ in range(10))
        out.append(CardData.from_pan(pan, TERMINAL.token_key, expiry="2812", entry_mode="chip",
                                     cvm_results=bytes.fromhex("420300")))
    return out


def replay(n: int, workdir: Path, *, progress: bool = False) -> dict[str, float]:
    clock = VirtualClock(start=1_700_000_000.0)
    journal = Journal(workdir / f"bench-{n}.db", clock=clock)
    engine = TransactionEngine(journal, InstantHost(), "iso87ascii", TERMINAL, clock,
                               policies=EnginePolicies())
    commits = 0

    def count(point: str) -> None:
        nonlocal commits
        if point.startswith("journal.after_commit"):
            commits += 1

    engine.kill_points = count
    cards = _cards(512)
    rnd = random.Random(11)
    tenth = max(1, n // 10)
    t0 = time.perf_counter()
    window_start = t0
    first_window = last_window = 0.0
    for i in range(n):
        engine.sale(cards[i % len(cards)], rnd.randint(100, 99_999), order_ref=f"O{i}")
        clock.advance(1.3)
        if progress and i and i % 100_000 == 0:
            print(f"  .. {i} sales, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if (i + 1) % tenth == 0:  # per-sale cost of the first and last tenth
            now = time.perf_counter()
            last_window = (now - window_start) / tenth
            first_window = first_window or last_window
            window_start = now
    elapsed = time.perf_counter() - t0
    events = journal.query("SELECT COUNT(*) FROM state_history")[0][0]
    per_sale_events = events / n
    assert journal.integrity_check() == ["ok"]
    journal.close()
    return {"sales": n, "events": events, "seconds": elapsed, "events_per_s": events / elapsed,
            "sales_per_s": n / elapsed, "us_per_event": elapsed / events * 1e6, "commits_per_sale": commits / n,
            "first_tenth_us": first_window / per_sale_events * 1e6, "last_tenth_us": last_window / per_sale_events * 1e6}


def commit_cost(workdir: Path, n: int = 2000, rounds: int = 7) -> tuple[float, float]:
    """Median over interleaved rounds (fsync latency drifts; interleaving keeps the comparison fair)."""
    con = sqlite3.connect(workdir / "bare.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, entity_id TEXT, event TEXT, state TEXT, at REAL)")
    clock = VirtualClock()
    journal = Journal(workdir / "journal-commit.db", clock=clock)
    engine = TransactionEngine(journal, InstantHost(), "iso87ascii", TERMINAL, clock)
    txn = journal.get_txn(engine.sale(_cards(1)[0], 100).txn_id)
    per_round = max(1, n // rounds)
    bare_t, ours_t = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(per_round):
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t(entity_id, event, state, at) VALUES (?, ?, ?, ?)", (f"T-{i}", "send", "sent", i))
            con.execute("COMMIT")
        bare_t.append((time.perf_counter() - t0) / per_round)
        t0 = time.perf_counter()
        for _ in range(per_round):  # one state transition per commit, as the engine writes it
            with journal.atomic("bench"):
                journal.record_transition("txn", txn.id, txn.kind, "approved", "bench", "approved")
                journal.update_txn(txn.id, state="approved")
        ours_t.append((time.perf_counter() - t0) / per_round)
    con.close()
    journal.close()
    return sorted(bare_t)[rounds // 2], sorted(ours_t)[rounds // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=1_000_000, help="scale down for CI, e.g. 100000")
    ap.add_argument("--dir", default=None, help="where to put the journals (default: a temp dir on /tmp)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        print(f"posguard engine benchmark  (WAL, synchronous=FULL, fs of {work})  pid {os.getpid()}")
        results = []
        for n in (args.small, args.large):
            r = replay(n, work, progress=n >= 200_000)
            results.append(r)
            print(f"  {n:>9,} sales: {r['events']:>9,} events in {r['seconds']:8.1f} s = {r['events_per_s']:8,.0f} "
                  f"events/s, {r['sales_per_s']:7,.0f} sales/s, {r['us_per_event']:6.1f} us/event, "
                  f"{r['commits_per_sale']:.1f} commits/sale (first tenth {r['first_tenth_us']:.1f} us/event, "
                  f"last tenth {r['last_tenth_us']:.1f})")
        ratio = results[1]["us_per_event"] / results[0]["us_per_event"]
        print(f"  per-event cost large/small: {ratio:.2f}  (target <= 1.3) {'OK' if ratio <= 1.3 else 'MISS'}")
        bare, ours = commit_cost(work)
        print(f"  commit: bare SQLite insert {bare * 1e6:.0f} us, journal state-transition commit {ours * 1e6:.0f} us, "
              f"ratio {ours / bare:.2f}  (target <= 1.5) {'OK' if ours / bare <= 1.5 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
