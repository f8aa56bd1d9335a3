"""The journal's schema, as an ordered list of migrations.

A new database runs every migration in order; an existing one runs only those above its recorded
``schema_version``. Never edit a released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Migration", "MIGRATIONS", "LATEST_VERSION"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = (
    """CREATE TABLE transactions (
        id            TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        state         TEXT NOT NULL,
        amount_minor  INTEGER NOT NULL CHECK (amount_minor >= 0),
        currency      TEXT NOT NULL,
        pan_token     TEXT,
        pan_masked    TEXT,
        stan          INTEGER,
        rrn           TEXT,
        auth_code     TEXT,
        response_code TEXT,
        batch_no      INTEGER,
        original_id   TEXT REFERENCES transactions(id),
        order_ref     TEXT,
        terminal_id   TEXT NOT NULL,
        merchant_id   TEXT,
        cvm_results   TEXT,
        signature     TEXT NOT NULL DEFAULT 'not_required',
        entry_mode    TEXT,
        card_sealed   BLOB,
        refunded_minor INTEGER NOT NULL DEFAULT 0,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        sent_at       REAL,
        responded_at  REAL,
        approved_at   REAL
    )""",
    "CREATE INDEX tx_state ON transactions(state)",
    "CREATE INDEX tx_original ON transactions(original_id)",
    "CREATE INDEX tx_batch ON transactions(batch_no, kind)",
    """CREATE TABLE messages (
        id        INTEGER PRIMARY KEY,
        txn_id    TEXT,
        saf_id    INTEGER,
        direction TEXT NOT NULL CHECK (direction IN ('out', 'in')),
        mti       TEXT NOT NULL,
        stan      INTEGER,
        at        REAL NOT NULL,
        masked    TEXT NOT NULL
    )""",
    "CREATE INDEX msg_txn ON messages(txn_id)",
    """CREATE TABLE state_history (
        id         INTEGER PRIMARY KEY,
        entity     TEXT NOT NULL,
        entity_id  TEXT NOT NULL,
        kind       TEXT NOT NULL,
        from_state TEXT NOT NULL,
        event      TEXT NOT NULL,
        to_state   TEXT,
        accepted   INTEGER NOT NULL,
        at         REAL NOT NULL,
        detail     TEXT
    )""",
    "CREATE INDEX hist_entity ON state_history(entity, entity_id)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO counters(name, value) VALUES ('stan', 0), ('batch', 1), ('txn', 0)",
    """CREATE TABLE saf_queue (
        id           INTEGER PRIMARY KEY,
        kind         TEXT NOT NULL CHECK (kind IN ('reversal', 'advice')),
        txn_id       TEXT,
        state        TEXT NOT NULL,
        mti          TEXT NOT NULL,
        reason       TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      REAL NOT NULL,
        created_at   REAL NOT NULL,
        expires_at   REAL,
        last_rc      TEXT,
        last_error   TEXT,
        sealed       BLOB NOT NULL
    )""",
    "CREATE INDEX saf_state ON saf_queue(state, id)",
    """CREATE TABLE incidents (
        id       INTEGER PRIMARY KEY,
        at       REAL NOT NULL,
        kind     TEXT NOT NULL,
        severity TEXT NOT NULL,
        txn_id   TEXT,
        message  TEXT NOT NULL,
        detail   TEXT
    )""",
    """CREATE TABLE events (
        id     INTEGER PRIMARY KEY,
        at     REAL NOT NULL,
        kind   TEXT NOT NULL,
        txn_id TEXT,
        detail TEXT
    )""",
)

_V2 = (
    """CREATE TABLE detections (
        id       INTEGER PRIMARY KEY,
        at       REAL NOT NULL,
        kind     TEXT NOT NULL,
        rule     TEXT NOT NULL,
        txn_ids  TEXT NOT NULL,
        evidence TEXT NOT NULL,
        status   TEXT NOT NULL DEFAULT 'open'
    )""",
    "CREATE INDEX det_kind ON detections(kind)",
    "CREATE INDEX tx_dup ON transactions(pan_token, amount_minor, terminal_id, approved_at)",
    "CREATE INDEX tx_order ON transactions(order_ref)",
)

_V3 = (
    """CREATE TABLE batches (
        batch_no     INTEGER PRIMARY KEY,
        state        TEXT NOT NULL DEFAULT 'open',
        opened_at    REAL NOT NULL,
        closed_at    REAL,
        debit_count  INTEGER,
        debit_minor  INTEGER,
        credit_count INTEGER,
        credit_minor INTEGER,
        host_result  TEXT
    )""",
    "INSERT INTO batches(batch_no, state, opened_at) SELECT value, 'open', 0 FROM counters WHERE name = 'batch'",
    "ALTER TABLE transactions ADD COLUMN settled_at REAL",
    "ALTER TABLE transactions ADD COLUMN scheme TEXT",
)

_V4 = (
    "INSERT INTO counters(name, value) VALUES ('signon_required', 0)",
    """CREATE TABLE settlement_uploads (
        batch_no  INTEGER NOT NULL,
        txn_id    TEXT NOT NULL REFERENCES transactions(id),
        purpose   TEXT NOT NULL,
        state     TEXT NOT NULL,
        attempts  INTEGER NOT NULL DEFAULT 0,
        last_rc   TEXT,
        host_had  INTEGER,
        at        REAL NOT NULL,
        PRIMARY KEY (batch_no, txn_id, purpose)
    )""",
)

#: a flow incident's steps and outcome are events naming it in ``detail.incident``; the idle tick and every
#: ``posguard incidents`` view look them up by incident, so the lookup is an index seek, not a scan of the journal
_V5 = (
    "CREATE INDEX ev_incident ON events(json_extract(detail, '$.incident'))",
    "CREATE INDEX inc_kind ON incidents(kind)",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "transactions, messages, history, counters, SAF queue, incidents, events", _V1),
    Migration(2, "detections; duplicate and order-reference indexes", _V2),
    Migration(3, "batches; settled_at and scheme on transactions", _V3),
    Migration(4, "sign-on demanded by the host (counter); settlement uploads per batch", _V4),
    Migration(5, "flow events found by their incident; incidents by kind (indexes)", _V5),
)

LATEST_VERSION: Final = MIGRATIONS[-1].version
