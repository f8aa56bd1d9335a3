"""The transaction journal: SQLite, write-ahead, durable before the engine acts.

* WAL mode with ``synchronous=FULL``: a committed change survives a power cut or ``kill -9``.
* The database file is created with mode 0600 (SQLite gives its ``-wal``/``-shm`` files the same mode).
* Schema versioned (``schema_version`` table) and migrated in order (:mod:`posguard.engine.schema`).
* Card data never enters in clear: PAN as keyed token + masked form, messages as masked text, and the
  few things that must be re-sent after a crash (a reversal's request copy) sealed with AES-GCM.

Every write goes through :meth:`Journal.atomic`, which calls ``kill_hook("journal.before_commit:<label>")``
and ``kill_hook("journal.after_commit:<label>")`` so tests can crash the process on either side of a commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from posguard.clock import Clock, SystemClock
from posguard.engine.instance_lock import file_identity
from posguard.engine.schema import LATEST_VERSION, MIGRATIONS, Migration

__all__ = [
    "Journal",
    "JournalError",
    "SchemaTooNew",
    "TxnRecord",
    "SafRecord",
    "STAN_MAX",
]

STAN_MAX = 999_999
KillHook = Callable[[str], None]


class JournalError(Exception):
    """The journal cannot be used as asked; the message says what to do."""


class SchemaTooNew(JournalError):
    """The database was written by a newer posguard; upgrade posguard rather than downgrade the file."""


@dataclass
class TxnRecord:
    """One row of ``transactions``. PAN only as ``pan_token`` + ``pan_masked``."""

    id: str
    kind: str
    state: str
    amount_minor: int
    currency: str
    terminal_id: str
    created_at: float
    updated_at: float
    pan_token: str | None = None
    pan_masked: str | None = None
    stan: int | None = None
    rrn: str | None = None
    auth_code: str | None = None
    response_code: str | None = None
    batch_no: int | None = None
    original_id: str | None = None
    order_ref: str | None = None
    merchant_id: str | None = None
    cvm_results: str | None = None
    signature: str = "not_required"
    entry_mode: str | None = None
    card_sealed: bytes | None = None
    refunded_minor: int = 0
    sent_at: float | None = None
    responded_at: float | None = None
    approved_at: float | None = None
    settled_at: float | None = None
    scheme: str | None = None

    def __repr__(self) -> str:  # card_sealed is ciphertext, but keep reprs short and obviously safe
        return (
            f"TxnRecord(id={self.id!r}, kind={self.kind!r}, state={self.state!r}, amount_minor={self.amount_minor}, "
            f"currency={self.currency!r}, pan={self.pan_masked!r}, stan={self.stan}, rrn={self.rrn!r}, "
            f"rc={self.response_code!r}, batch={self.batch_no}, original={self.original_id!r})"
        )


@dataclass
class SafRecord:
    """One row of ``saf_queue``: a reversal or advice waiting for the host's acknowledgement."""

    id: int
    kind: str
    txn_id: str | None
    state: str
    mti: str
    reason: str | None
    attempts: int
    next_at: float
    created_at: float
    expires_at: float | None
    last_rc: str | None
    last_error: str | None
    sealed: bytes

    def __repr__(self) -> str:
        return (
            f"SafRecord(id={self.id}, kind={self.kind!r}, txn={self.txn_id!r}, state={self.state!r}, "
            f"mti={self.mti!r}, attempts={self.attempts}, last_rc={self.last_rc!r})"
        )


_TXN_COLUMNS = tuple(f.name for f in fields(TxnRecord))
_SAF_COLUMNS = tuple(f.name for f in fields(SafRecord))


def _create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing; tighten it if it is readable by others."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)


def _open_problem(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (f"journal {path} is damaged ({text}): stop the service, keep the file as evidence, restore the "
                "last backup or move it aside; the acquirer's records hold what was approved")
    if "readonly" in text or "read-only" in text:
        return f"journal {path} is read-only ({text}): the service must be able to write it; check owner and mode"
    return f"journal {path} cannot be used: {text}"


class Journal:
    """The durable record of everything the engine does. See the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        migrate_to: int = LATEST_VERSION,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self.kill_hook: KillHook | None = None
        self._depth = 0
        self._labels: list[str] = []
        try:
            _create_private_file(self.path)
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"journal {self.path} cannot be opened: {getattr(exc, 'strerror', None) or exc}; "
                               "check the path and its permissions (posguard diagnose --check journal)") from None
        self._conn.row_factory = sqlite3.Row
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the journal on a "
                                   "local disk")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(migrations, migrate_to)
        except sqlite3.Error as exc:
            self._conn.close()
            raise JournalError(_open_problem(self.path, exc)) from None
        self._identity = file_identity(self.path)  # what displaced() compares the path with

    @classmethod
    def open_read_only(cls, path: str | os.PathLike[str], *, busy_timeout: float = 2.0) -> Journal:
        """The journal opened to look, not to touch (``posguard diagnose``): no file created, no mode tightened,
        no WAL switch, no migration and so no write lock waited for — a running service keeps writing. A lock
        held by a writer in rollback mode is waited for ``busy_timeout`` seconds at most (SQLite ``mode=ro``
        URI and ``PRAGMA query_only``). Raises :class:`JournalError` as the normal open does."""
        self = cls.__new__(cls)
        self.path, self.clock, self.kill_hook, self._depth, self._labels = Path(path), SystemClock(), None, 0, []
        self._identity = file_identity(self.path)
        try:
            self._conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                         timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path} cannot be opened: {exc}; check the path and its permissions"
                               ) from None
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA query_only=ON")
            self.schema_version()  # reads the header and the schema: a damaged or foreign file fails here
        except sqlite3.Error as exc:
            self._conn.close()
            raise JournalError(_open_problem(self.path, exc)) from None
        return self

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, schema_version={self.schema_version()})"

    # -- durability -----------------------------------------------------------------------------
    def _kill(self, point: str) -> None:
        if self.kill_hook is not None:
            self.kill_hook(point)

    @contextmanager
    def atomic(self, label: str = "write") -> Iterator[Journal]:
        """One durable transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``). Nested blocks join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self._kill(f"journal.before_commit:{label}")
        self._conn.execute("COMMIT")
        self._kill(f"journal.after_commit:{label}")

    @contextmanager
    def savepoint(self, name: str) -> Iterator[Journal]:
        """A part of an :meth:`atomic` block that can fail alone: on an exception its writes are undone and the
        exception goes on; the outer block's other writes stay."""
        if not self._depth:
            raise JournalError("a savepoint needs an enclosing atomic() block")
        label = "sp_" + "".join(c if c.isalnum() else "_" for c in name)
        self._conn.execute(f"SAVEPOINT {label}")
        try:
            yield self
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {label}")
            self._conn.execute(f"RELEASE {label}")
            raise
        self._conn.execute(f"RELEASE {label}")

    def displaced(self) -> str | None:
        """Why the file at :attr:`path` is no longer this open journal (deleted, or another file put in its
        place), or None while it is. SQLite goes on writing to a deleted file without an error, and everything
        written is lost when the process ends: a service asks before it acts."""
        now = file_identity(self.path)
        if now == self._identity:
            return None
        if now is None:
            return f"journal {self.path} was deleted while the service had it open"
        return f"journal {self.path} was replaced by another file while the service had it open"

    def copy_to(self, dest: str | os.PathLike[str]) -> Path:
        """Write this journal, as this connection sees it (committed writes of its WAL included), to ``dest``: a
        new file of mode 0600, written whole through SQLite's backup (removed again when the backup fails);
        ``dest`` must not exist."""
        target = Path(dest)
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        copy = sqlite3.connect(target)
        try:
            self._conn.backup(copy)
        except BaseException:
            copy.close()
            target.unlink(missing_ok=True)  # half a journal at the path would pass for the journal
            raise
        copy.close()
        return target

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def pragma(self, name: str) -> Any:
        if not name.isidentifier():
            raise JournalError(f"not a pragma name: {name!r}")
        return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def integrity_check(self) -> list[str]:
        """SQLite's ``integrity_check`` plus posguard's own invariants; ``["ok"]`` when healthy."""
        problems = [str(r[0]) for r in self._conn.execute("PRAGMA integrity_check").fetchall()]
        if problems == ["ok"]:
            problems = []
        problems += [f"foreign key: {tuple(r)}" for r in self._conn.execute("PRAGMA foreign_key_check").fetchall()]
        if self.schema_version() != LATEST_VERSION:
            problems.append(f"schema_version {self.schema_version()} != {LATEST_VERSION}")
        bad_saf = self._conn.execute(
            "SELECT s.id FROM saf_queue s LEFT JOIN transactions t ON t.id = s.txn_id "
            "WHERE s.txn_id IS NOT NULL AND t.id IS NULL"
        ).fetchall()
        problems += [f"saf item {r[0]} refers to a missing transaction" for r in bad_saf]
        return problems or ["ok"]

    # -- schema ---------------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if row is None:
            return 0
        v = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        return int(v or 0)

    def _migrate(self, migrations: Sequence[Migration], target: int) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            current = self.schema_version()
            known = max((m.version for m in migrations), default=0)
            if current > known:
                raise SchemaTooNew(
                    f"{self.path} has schema version {current}, this posguard knows up to {known}: "
                    "install the newer posguard that wrote it"
                )
            for m in sorted(migrations, key=lambda m: m.version):
                if current < m.version <= target:
                    for stmt in m.statements:
                        self._conn.execute(stmt)
                    self._conn.execute(
                        "INSERT INTO schema_version(version, description, applied_at) VALUES (?, ?, ?)",
                        (m.version, m.description, self.clock.now()),
                    )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # -- generic helpers ------------------------------------------------------------------------
    def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        if not self._depth:
            raise JournalError("journal writes must run inside `with journal.atomic(label):` (write-ahead rule)")
        return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        """Read-only SQL for reports and tests."""
        return list(self._conn.execute(sql, params).fetchall())

    # -- counters -------------------------------------------------------------------------------
    def _bump(self, name: str, wrap: int | None = None) -> int:
        row = self._write("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = int(row[0]) + 1
        if wrap is not None and value > wrap:
            value = 1
        self._write("UPDATE counters SET value = ? WHERE name = ?", (value, name))
        return value

    def allocate_stan(self) -> int:
        """The next STAN, 1..999999 wrapping; durable with the enclosing :meth:`atomic` block."""
        return self._bump("stan", STAN_MAX)

    def peek_counter(self, name: str) -> int:
        return int(self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])

    def next_txn_id(self, terminal_id: str) -> str:
        return f"{terminal_id}-{self._bump('txn'):08d}"

    def current_batch(self) -> int:
        return self.peek_counter("batch")

    def close_batch(self, totals: Mapping[str, int], host_result: str) -> int:
        """Close the current batch with its totals and open the next; returns the new batch number."""
        now = self.clock.now()
        batch = self.current_batch()
        self._write(
            "UPDATE batches SET state='closed', closed_at=?, debit_count=?, debit_minor=?, credit_count=?, "
            "credit_minor=?, host_result=? WHERE batch_no=?",
            (now, totals["debit_count"], totals["debit_minor"], totals["credit_count"], totals["credit_minor"],
             host_result, batch),
        )
        new = self._bump("batch", STAN_MAX)
        self._write("INSERT OR REPLACE INTO batches(batch_no, state, opened_at) VALUES (?, 'open', ?)", (new, now))
        return new

    # -- sign-on ------------------------------------------------------------------------------------
    def adopt_batch(self, batch_no: int) -> bool:
        """Take the acquirer's batch number (CUP sign-on answer, 60.2) when it is ahead of the open batch and that
        batch holds nothing yet (a batch with transactions keeps its number until settlement); True if taken."""
        current = self.current_batch()
        if batch_no <= current or self.query("SELECT 1 FROM transactions WHERE batch_no = ? LIMIT 1", (current,)):
            return False
        self._write("UPDATE counters SET value = ? WHERE name = 'batch'", (batch_no,))
        self._write("DELETE FROM batches WHERE batch_no = ? AND state = 'open'", (current,))
        self._write("INSERT OR REPLACE INTO batches(batch_no, state, opened_at) VALUES (?, 'open', ?)",
                    (batch_no, self.clock.now()))
        return True

    def sign_on_required(self) -> bool:
        """True when the host demanded a new sign-on (RC 77 / CUP header) and none has succeeded since."""
        return self.peek_counter("signon_required") != 0

    def set_sign_on_required(self, required: bool) -> None:
        self._write("UPDATE counters SET value = ? WHERE name = 'signon_required'", (int(required),))

    # -- settlement uploads ---------------------------------------------------------------------------
    def upload_record(self, batch_no: int, txn_id: str, purpose: str, *, state: str, last_rc: str | None = None,
                      host_had: bool | None = None, attempt: bool = False) -> None:
        """Create or update the upload row of ``txn_id`` in ``batch_no`` for ``purpose`` (detail, tc)."""
        self._write(
            "INSERT INTO settlement_uploads(batch_no, txn_id, purpose, state, attempts, last_rc, host_had, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(batch_no, txn_id, purpose) DO UPDATE SET "
            "state = excluded.state, attempts = attempts + excluded.attempts, "
            "last_rc = COALESCE(excluded.last_rc, last_rc), host_had = COALESCE(excluded.host_had, host_had), "
            "at = excluded.at",
            (batch_no, txn_id, purpose, state, int(attempt), last_rc, None if host_had is None else int(host_had),
             self.clock.now()),
        )

    def uploads(self, batch_no: int, purpose: str | None = None) -> list[sqlite3.Row]:
        if purpose is None:
            return self.query("SELECT * FROM settlement_uploads WHERE batch_no = ? ORDER BY rowid", (batch_no,))
        return self.query("SELECT * FROM settlement_uploads WHERE batch_no = ? AND purpose = ? ORDER BY rowid",
                          (batch_no, purpose))

    def batch(self, batch_no: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM batches WHERE batch_no = ?", (batch_no,))
        return rows[0] if rows else None

    # -- transactions ---------------------------------------------------------------------------
    def insert_txn(self, rec: TxnRecord) -> None:
        cols = ", ".join(_TXN_COLUMNS)
        marks = ", ".join("?" for _ in _TXN_COLUMNS)
        self._write(f"INSERT INTO transactions({cols}) VALUES ({marks})", [getattr(rec, c) for c in _TXN_COLUMNS])

    def update_txn(self, txn_id: str, **values: Any) -> None:
        unknown = set(values) - set(_TXN_COLUMNS)
        if unknown:
            raise JournalError(f"unknown transaction column(s): {sorted(unknown)}")
        values["updated_at"] = self.clock.now()
        sets = ", ".join(f"{k} = ?" for k in values)
        self._write(f"UPDATE transactions SET {sets} WHERE id = ?", [*values.values(), txn_id])

    def get_txn(self, txn_id: str) -> TxnRecord:
        row = self._conn.execute("SELECT * FROM transactions WHERE id = ?", (txn_id,)).fetchone()
        if row is None:
            raise JournalError(f"no transaction {txn_id!r} in {self.path}; list them with "
                               f"`posguard engine journal {self.path}`")
        return self._txn(row)

    @staticmethod
    def _txn(row: sqlite3.Row) -> TxnRecord:
        return TxnRecord(**{c: row[c] for c in _TXN_COLUMNS})

    def find_txns(self, where: str = "1=1", params: Sequence[Any] = ()) -> list[TxnRecord]:
        return [self._txn(r) for r in self._conn.execute(f"SELECT * FROM transactions WHERE {where} ORDER BY rowid", params)]

    def txns_in_states(self, states: Iterable[str], kinds: Iterable[str] | None = None) -> list[TxnRecord]:
        st = list(states)
        where = f"state IN ({','.join('?' * len(st))})"
        params: list[Any] = list(st)
        if kinds is not None:
            ks = list(kinds)
            where += f" AND kind IN ({','.join('?' * len(ks))})"
            params += ks
        return self.find_txns(where, params)

    def children(self, original_id: str) -> list[TxnRecord]:
        return self.find_txns("original_id = ?", (original_id,))

    def latest_txn(self, kind: str | None = None, stan: int | None = None) -> TxnRecord | None:
        """The newest transaction (of ``kind``, with ``stan``), or None: how a hand-written capture names one."""
        where: list[str] = ["1=1"]
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if stan is not None:
            where.append("stan = ?")
            params.append(stan)
        rows = self.find_txns(" AND ".join(where), params)
        return rows[-1] if rows else None

    def sales_for_order(self, order_ref: str, states: Iterable[str]) -> list[TxnRecord]:
        """Sales carrying ``order_ref`` in one of ``states`` (duplicate prevention: is this order paid?)."""
        st = list(states)
        return self.find_txns(f"kind = 'sale' AND order_ref = ? AND state IN ({','.join('?' * len(st))})",
                              [order_ref, *st])

    # -- history, messages, incidents, events, detections ---------------------------------------------
    def record_transition(
        self, entity: str, entity_id: str, kind: str, from_state: str, event: str, to_state: str | None,
        *, accepted: bool = True, detail: str | None = None,
    ) -> None:
        self._write(
            "INSERT INTO state_history(entity, entity_id, kind, from_state, event, to_state, accepted, at, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entity, entity_id, kind, from_state, event, to_state, int(accepted), self.clock.now(), detail),
        )

    def history(self, entity_id: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM state_history WHERE entity_id = ? ORDER BY id", (entity_id,))

    def record_message(
        self, *, direction: str, mti: str, masked: str, stan: int | None = None,
        txn_id: str | None = None, saf_id: int | None = None,
    ) -> None:
        self._write(
            "INSERT INTO messages(txn_id, saf_id, direction, mti, stan, at, masked) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (txn_id, saf_id, direction, mti, stan, self.clock.now(), masked),
        )

    def messages(self, txn_id: str | None = None) -> list[sqlite3.Row]:
        if txn_id is None:
            return self.query("SELECT * FROM messages ORDER BY id")
        return self.query("SELECT * FROM messages WHERE txn_id = ? ORDER BY id", (txn_id,))

    def record_incident(
        self, kind: str, message: str, *, severity: str = "warning", txn_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        cur = self._write(
            "INSERT INTO incidents(at, kind, severity, txn_id, message, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (self.clock.now(), kind, severity, txn_id, message, json.dumps(detail or {}, sort_keys=True)),
        )
        return int(cur.lastrowid or 0)

    def incidents(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind is None:
            return self.query("SELECT * FROM incidents ORDER BY id")
        return self.query("SELECT * FROM incidents WHERE kind = ? ORDER BY id", (kind,))

    def incident(self, incident_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return rows[0] if rows else None

    def incidents_since(self, since: float) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM incidents WHERE at >= ? ORDER BY id", (since,))

    def flow_events(self, incident_id: int, *, outcome: bool = True) -> list[sqlite3.Row]:
        """The ``flow_step`` (and, with ``outcome``, ``flow_outcome``) events of one flow incident, in order."""
        kinds = "('flow_step', 'flow_outcome')" if outcome else "('flow_step')"
        return self.query(f"SELECT kind, at, txn_id, detail FROM events WHERE kind IN {kinds} AND "
                          "json_extract(detail, '$.incident') = ? ORDER BY id", (incident_id,))

    def flow_incidents_open(self, kind: str, open_outcomes: Sequence[str]) -> list[sqlite3.Row]:
        """Incidents of ``kind`` still open: no flow outcome recorded yet, or the last one is in ``open_outcomes``
        (index seeks per incident, so a journal of years is not read whole)."""
        marks = ", ".join("?" * len(open_outcomes))
        return self.query(
            "SELECT i.* FROM incidents i WHERE i.kind = ? AND COALESCE((SELECT json_extract(e.detail, '$.outcome') "
            "FROM events e WHERE json_extract(e.detail, '$.incident') = i.id AND e.kind = 'flow_outcome' "
            f"ORDER BY e.id DESC LIMIT 1), '') IN ('', {marks}) ORDER BY i.id", (kind, *open_outcomes))

    def batch_opened_at(self, batch_no: int | None = None) -> float | None:
        """When the first transaction of ``batch_no`` (the open batch by default) was created; None if empty."""
        batch = self.current_batch() if batch_no is None else batch_no
        first = self.query("SELECT MIN(created_at) FROM transactions WHERE batch_no = ?", (batch,))[0][0]
        return float(first) if first is not None else None

    def state_counts(self) -> list[sqlite3.Row]:
        """``(state, count, amount)`` per transaction state, in state order."""
        return self.query("SELECT state, COUNT(*) AS count, SUM(amount_minor) AS amount FROM transactions "
                          "GROUP BY state ORDER BY state")

    def record_event(self, kind: str, *, txn_id: str | None = None, detail: Mapping[str, Any] | None = None) -> None:
        self._write(
            "INSERT INTO events(at, kind, txn_id, detail) VALUES (?, ?, ?, ?)",
            (self.clock.now(), kind, txn_id, json.dumps(detail or {}, sort_keys=True)),
        )

    def record_detection(self, kind: str, rule: str, txn_ids: Sequence[str], evidence: Mapping[str, Any]) -> int:
        cur = self._write(
            "INSERT INTO detections(at, kind, rule, txn_ids, evidence) VALUES (?, ?, ?, ?, ?)",
            (self.clock.now(), kind, rule, json.dumps(list(txn_ids)), json.dumps(evidence, sort_keys=True, default=str)),
        )
        return int(cur.lastrowid or 0)

    def detections(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind is None:
            return self.query("SELECT * FROM detections ORDER BY id")
        return self.query("SELECT * FROM detections WHERE kind = ? ORDER BY id", (kind,))

    # -- store-and-forward queue ----------------------------------------------------------------------
    def saf_insert(
        self, *, kind: str, txn_id: str | None, state: str, mti: str, sealed: bytes, reason: str | None,
        next_at: float, expires_at: float | None,
    ) -> int:
        cur = self._write(
            "INSERT INTO saf_queue(kind, txn_id, state, mti, reason, next_at, created_at, expires_at, sealed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, txn_id, state, mti, reason, next_at, self.clock.now(), expires_at, sealed),
        )
        return int(cur.lastrowid or 0)

    def saf_update(self, saf_id: int, **values: Any) -> None:
        unknown = set(values) - set(_SAF_COLUMNS)
        if unknown:
            raise JournalError(f"unknown saf_queue column(s): {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in values)
        self._write(f"UPDATE saf_queue SET {sets} WHERE id = ?", [*values.values(), saf_id])

    def saf_get(self, saf_id: int) -> SafRecord:
        row = self._conn.execute("SELECT * FROM saf_queue WHERE id = ?", (saf_id,)).fetchone()
        if row is None:
            raise JournalError(f"no store-and-forward item {saf_id} in {self.path}")
        return SafRecord(**{c: row[c] for c in _SAF_COLUMNS})

    def saf_items(self, states: Iterable[str] | None = None, txn_id: str | None = None) -> list[SafRecord]:
        where: list[str] = ["1=1"]
        params: list[Any] = []
        if states is not None:
            st = list(states)
            where.append(f"state IN ({','.join('?' * len(st))})")
            params += st
        if txn_id is not None:
            where.append("txn_id = ?")
            params.append(txn_id)
        rows = self._conn.execute(f"SELECT * FROM saf_queue WHERE {' AND '.join(where)} ORDER BY id", params)
        return [SafRecord(**{c: r[c] for c in _SAF_COLUMNS}) for r in rows]
