"""Engine + journal throughput with full durability (WAL, synchronous=FULL), at 10k and at 1M sales.

    .venv/bin/python benchmarks/bench_engine.py                       # default: tmpfs, 1M built by bulk copy
    .venv/bin/python benchmarks/bench_engine.py --medium disk         # the journal on the project's disk
    .venv/bin/python benchmarks/bench_engine.py --full-replay         # all 1M sales through the engine (slow)
    .venv/bin/python benchmarks/bench_engine.py --large 100000        # scaled down

Medium: ``tmpfs`` (default, ``/dev/shm``) keeps the *same* pragmas (WAL, synchronous=FULL) but fsync costs
nothing, which isolates the engine's CPU and index costs that the 1.3x target is about; ``disk`` measures
real fsyncs (a full 1M replay takes about an hour there). The medium is printed on every line that depends
on it.

Large size: by default the journal is grown to ``large - window`` sales by copying engine-written rows
(same schema, indexes, row shapes and id/STAN/time progression, done in SQL in seconds), then the last
``window`` sales run through TransactionEngine + Journal and are timed: that is the per-event cost *at* 1M.
``--full-replay`` instead times every one of the 1M sales through the engine.

Prints events/s, sales/s, commits per sale, the per-event cost ratio large/small (target <= 1.3), then the
cost of one journal commit (a state transition: history row + transaction update) against a bare single-row
SQLite insert with the same pragmas on the same medium (target <= 1.5).
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

from posguard.card import CardData  # noqa: E402
from posguard.clock import VirtualClock  # noqa: E402
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


T0 = 1_700_000_000.0
STEP = 1.3  # virtual seconds between sales


def prefill(path: Path, target: int) -> float:
    """Grow an engine-written journal to ``target`` sales by copying its rows (ids, STANs, times shifted)."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    t0 = time.perf_counter()
    n = con.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
    per = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] // n
           for t in ("state_history", "messages", "saf_queue")}
    assert per == {"state_history": 8, "messages": 2, "saf_queue": 1}, per  # the row shape of one sale
    stans = con.execute("SELECT value FROM counters WHERE name = 'stan'").fetchone()[0] // n
    tx_cols = [r[1] for r in con.execute("PRAGMA table_info(transactions)")]
    while n < target:
        k = min(n, target - n)
        dt = n * STEP
        shift_id = f"'TERM0001-' || printf('%08d', CAST(substr({{c}}, 10) AS INTEGER) + {n})"
        shift_stan = f"((stan - 1 + {stans * n}) % 999999) + 1"
        over = {"id": shift_id.format(c="id"), "stan": shift_stan, "order_ref": f"'O' || (CAST(substr(order_ref, 2) AS INTEGER) + {n})"}
        for c in ("created_at", "updated_at", "sent_at", "responded_at", "approved_at"):
            over[c] = f"{c} + {dt}"
        sel = ", ".join(over.get(c, c) for c in tx_cols)
        con.execute("BEGIN IMMEDIATE")
        con.execute(f"INSERT INTO transactions({', '.join(tx_cols)}) SELECT {sel} FROM transactions WHERE rowid <= {k}")
        con.execute(f"INSERT INTO saf_queue(id, kind, txn_id, state, mti, reason, attempts, next_at, created_at, "
                    f"expires_at, last_rc, last_error, sealed) SELECT id + {n}, kind, {shift_id.format(c='txn_id')}, "
                    f"state, mti, reason, attempts, next_at + {dt}, created_at + {dt}, expires_at + {dt}, last_rc, "
                    f"last_error, sealed FROM saf_queue WHERE id <= {k}")
        con.execute(f"INSERT INTO state_history(entity, entity_id, kind, from_state, event, to_state, accepted, at, "
                    f"detail) SELECT entity, CASE entity WHEN 'txn' THEN {shift_id.format(c='entity_id')} ELSE "
                    f"CAST(CAST(entity_id AS INTEGER) + {n} AS TEXT) END, kind, from_state, event, to_state, "
                    f"accepted, at + {dt}, detail FROM state_history WHERE id <= {8 * k}")
        con.execute(f"INSERT INTO messages(txn_id, saf_id, direction, mti, stan, at, masked) SELECT "
                    f"{shift_id.format(c='txn_id')}, saf_id + {n}, direction, mti, {shift_stan}, at + {dt}, masked "
                    f"FROM messages WHERE id <= {2 * k}")
        n += k
        con.execute("UPDATE counters SET value = ? WHERE name = 'txn'", (n,))
        con.execute("UPDATE counters SET value = ? WHERE name = 'stan'", (((stans * n - 1) % 999_999) + 1,))
        con.execute("COMMIT")
    con.close()
    return time.perf_counter() - t0


def replay(n: int, workdir: Path, *, progress: bool = False, window: int | None = None) -> dict[str, float]:
    """Time ``n`` sales through the engine; with ``window``, build ``n - window`` by :func:`prefill` and time
    only the last ``window`` sales (the cost at size ``n``)."""
    path = workdir / f"bench-{n}.db"
    start_at, timed, built = T0, n, 0.0
    if window is not None and window < n:
        seed = min(window, n - window)
        _run(path, seed, T0)
        built = prefill(path, n - window)
        start_at, timed = T0 + (n - window) * STEP, window
    result = _run(path, timed, start_at, progress=progress)
    result["sales"] = n
    result["timed_sales"] = timed
    result["prefill_s"] = built
    return result


def _run(path: Path, n: int, start_at: float, *, progress: bool = False) -> dict[str, float]:
    clock = VirtualClock(start=start_at)
    journal = Journal(path, clock=clock)
    events_before = journal.query("SELECT COUNT(*) FROM state_history")[0][0]
    offset = journal.peek_counter("txn")  # order references continue after the sales already journaled
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
        engine.sale(cards[i % len(cards)], rnd.randint(100, 99_999), order_ref=f"O{offset + i}")
        clock.advance(STEP)
        if progress and i and i % 100_000 == 0:
            print(f"  .. {i} sales, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if (i + 1) % tenth == 0:  # per-sale cost of the first and last tenth
            now = time.perf_counter()
            last_window = (now - window_start) / tenth
            first_window = first_window or last_window
            window_start = now
    elapsed = time.perf_counter() - t0
    events = journal.query("SELECT COUNT(*) FROM state_history")[0][0] - events_before
    per_sale_events = events / n
    total = journal.query("SELECT COUNT(*) FROM transactions")[0][0]
    assert journal.query("PRAGMA quick_check")[0][0] == "ok"
    journal.close()
    return {"sales": n, "journal_sales": total, "events": events, "seconds": elapsed, "events_per_s": events / elapsed,
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
    ap.add_argument("--medium", choices=("tmpfs", "disk"), default="tmpfs",
                    help="tmpfs: /dev/shm, same pragmas, no fsync cost (default); disk: the temp dir's disk")
    ap.add_argument("--dir", default=None, help="where to put the journals (overrides --medium's directory)")
    ap.add_argument("--window", type=int, default=None,
                    help="sales timed at the large size (default: --small); the rest is built by bulk copy")
    ap.add_argument("--full-replay", action="store_true", help="time every large sale through the engine")
    ap.add_argument("--no-disk-commit", action="store_true",
                    help="with tmpfs, skip the commit comparison on disk (a few seconds of real fsyncs)")
    ap.add_argument("--disk-dir", default=str(Path(__file__).resolve().parent),
                    help="disk directory for that comparison (default: next to this script)")
    args = ap.parse_args()
    base = args.dir or ("/dev/shm" if args.medium == "tmpfs" else None)
    if base == "/dev/shm" and not Path(base).is_dir():
        ap.error("/dev/shm is not available here: use --medium disk or --dir")
    window = None if args.full_replay else (args.window or args.small)
    with tempfile.TemporaryDirectory(dir=base, prefix="posguard-bench-") as tmp:
        work = Path(tmp)
        fs = _filesystem(work)
        print(f"posguard engine benchmark  pid {os.getpid()}")
        print(f"  medium: {args.medium if args.dir is None else 'custom'} ({fs} at {work}); pragmas: WAL, "
              f"synchronous=FULL{' -- fsync is free here: engine CPU and index costs only' if fs == 'tmpfs' else ''}")
        results = []
        for n, w in ((args.small, None), (args.large, window)):
            r = replay(n, work, progress=n >= 200_000 and w is None, window=w)
            results.append(r)
            how = (f"last {int(r['timed_sales']):,} timed after bulk-building {n - int(r['timed_sales']):,} "
                   f"({r['prefill_s']:.0f} s)" if r["timed_sales"] < n else "all timed")
            print(f"  {n:>9,} sales [{how}]: {r['events']:>9,} events in {r['seconds']:7.1f} s = "
                  f"{r['events_per_s']:7,.0f} events/s, {r['sales_per_s']:6,.0f} sales/s, {r['us_per_event']:6.1f} "
                  f"us/event, {r['commits_per_sale']:.1f} commits/sale (first tenth {r['first_tenth_us']:.1f}, "
                  f"last tenth {r['last_tenth_us']:.1f} us/event); journal holds {int(r['journal_sales']):,} sales")
        ratio = results[1]["us_per_event"] / results[0]["us_per_event"]
        print(f"  per-event cost {args.large:,}/{args.small:,}: {ratio:.2f}  (target <= 1.3) "
              f"{'OK' if ratio <= 1.3 else 'MISS'}  [{fs}]")
        _print_commit(work, fs)
    if fs == "tmpfs" and not args.no_disk_commit:  # the same comparison where fsync is real
        with tempfile.TemporaryDirectory(dir=args.disk_dir, prefix="posguard-bench-") as tmp:
            _print_commit(Path(tmp), _filesystem(Path(tmp)))
    return 0


def _print_commit(work: Path, fs: str) -> None:
    bare, ours = commit_cost(work)
    verdict = "OK" if ours / bare <= 1.5 else "MISS"
    if fs == "tmpfs" and verdict == "MISS":  # said, not hidden: what the figure is on a medium without fsync
        verdict += (" on CPU alone (no fsync here: a history row and an indexed transaction update against one "
                    "insert into an unindexed table; the disk line is the durable comparison)")
    print(f"  commit [{fs} at {work.parent}]: bare SQLite insert {bare * 1e6:.0f} us, journal state-transition "
          f"commit {ours * 1e6:.0f} us, ratio {ours / bare:.2f}  (target <= 1.5) {verdict}")


def _filesystem(path: Path) -> str:
    """The filesystem type of ``path`` from /proc/mounts (longest matching mount point)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    raise SystemExit(main())
