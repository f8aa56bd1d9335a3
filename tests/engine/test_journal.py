import sqlite3
import stat

import pytest

from posguard.engine.journal import STAN_MAX, Journal, JournalError, SchemaTooNew
from posguard.engine.schema import LATEST_VERSION, MIGRATIONS
from tests.engine.conftest import OTHER_PAN, UNIONPAY_PAN, VISA_PAN, card


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_journal_is_wal_synchronous_full_and_private(journal_path, clock):
    with Journal(journal_path, clock=clock) as journal:
        with journal.atomic("first"):
            journal.allocate_stan()
        assert journal.pragma("journal_mode") == "wal"
        assert journal.pragma("synchronous") == 2  # FULL
        for suffix in ("", "-wal", "-shm"):
            path = journal_path.with_name(journal_path.name + suffix)
            assert path.exists() and _mode(path) == 0o600, (suffix, oct(_mode(path)))


def test_a_world_readable_journal_is_tightened_on_open(journal_path, clock):
    Journal(journal_path, clock=clock).close()
    journal_path.chmod(0o644)
    Journal(journal_path, clock=clock).close()
    assert _mode(journal_path) == 0o600


def test_stan_runs_1_to_999999_wraps_and_survives_restart(journal_path, clock):
    with Journal(journal_path, clock=clock) as journal:
        with journal.atomic():
            assert journal.allocate_stan() == 1
            journal._write("UPDATE counters SET value = ? WHERE name = 'stan'", (STAN_MAX - 1,))
            assert journal.allocate_stan() == STAN_MAX
    with Journal(journal_path, clock=clock) as journal:
        with journal.atomic():
            assert journal.allocate_stan() == 1
            assert journal.allocate_stan() == 2


def test_a_stan_allocated_in_a_rolled_back_block_is_not_consumed(journal_path, clock):
    with Journal(journal_path, clock=clock) as journal:
        with pytest.raises(RuntimeError), journal.atomic():
            journal.allocate_stan()
            raise RuntimeError("crash inside the block")
        with journal.atomic():
            assert journal.allocate_stan() == 1


def test_writes_outside_an_atomic_block_are_refused(journal_path, clock):
    with Journal(journal_path, clock=clock) as journal, pytest.raises(JournalError, match="write-ahead"):
        journal.allocate_stan()


def test_old_schema_is_migrated_and_keeps_its_rows(journal_path, clock):
    with Journal(journal_path, clock=clock, migrate_to=1) as old:
        assert old.schema_version() == 1
        with old.atomic():
            old._write("INSERT INTO transactions(id, kind, state, amount_minor, currency, terminal_id, created_at, "
                       "updated_at) VALUES ('T-1', 'sale', 'approved', 500, 'CNY', 'TERM0001', 1, 1)")
        assert not old.query("SELECT name FROM sqlite_master WHERE name = 'detections'")
    with Journal(journal_path, clock=clock) as journal:
        assert journal.schema_version() == LATEST_VERSION == len(MIGRATIONS)
        assert journal.get_txn("T-1").amount_minor == 500 and journal.get_txn("T-1").settled_at is None
        assert [r["version"] for r in journal.query("SELECT version FROM schema_version")] == list(range(1, LATEST_VERSION + 1))
        assert journal.batch(journal.current_batch())["state"] == "open"
        assert journal.integrity_check() == ["ok"]


def test_a_newer_schema_is_refused_with_advice(journal_path, clock):
    Journal(journal_path, clock=clock).close()
    con = sqlite3.connect(journal_path)
    con.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    con.commit()
    con.close()
    with pytest.raises(SchemaTooNew, match="install the newer posguard"):
        Journal(journal_path, clock=clock)


def test_integrity_check_reports_a_dangling_queue_item(journal_path, clock):
    with Journal(journal_path, clock=clock) as journal:
        assert journal.integrity_check() == ["ok"]
        journal._conn.execute("PRAGMA foreign_keys=OFF")
        with journal.atomic():
            journal.saf_insert(kind="reversal", txn_id="GHOST", state="queued", mti="0400", sealed=b"x",
                               reason=None, next_at=0, expires_at=None)
        assert any("missing transaction" in p for p in journal.integrity_check())


def test_no_clear_card_data_anywhere_in_the_journal_files(make_engine, host, journal_path):
    engine = make_engine()
    sale = engine.sale(card(VISA_PAN, signature=True), 88_00, order_ref="A-1")
    engine.sign(sale.txn_id)
    host.then("lost_response")
    engine.sale(card(UNIONPAY_PAN, scheme="unionpay"), 12_00)
    engine.void(sale.txn_id)
    engine.sale(card(OTHER_PAN), 5_00)
    engine.journal.close()
    blob = b"".join(p.read_bytes() for p in journal_path.parent.glob("journal.db*"))
    for pan in (VISA_PAN, UNIONPAY_PAN, OTHER_PAN):
        assert pan.encode() not in blob
        assert pan[6:12].encode() + pan[-4:].encode() not in blob
    assert b"A1B2C3D4E5F60718" not in blob.upper() and bytes.fromhex("A1B2C3D4E5F60718") not in blob  # 9F26
    assert b"476173******0127" in blob  # the masked form is there for people


def test_reprs_and_errors_never_show_the_pan(engine):
    c = card()
    result = engine.sale(c, 100)
    txn = engine.journal.get_txn(result.txn_id)
    for text in (repr(c), str(c), repr(txn), repr(result)):
        assert VISA_PAN not in text


def test_a_journal_deleted_or_replaced_under_its_user_is_noticed_and_can_be_written_back(journal_path, clock):
    """SQLite writes on into a deleted file without an error: ``displaced()`` says so, and ``copy_to`` writes
    the open journal, committed WAL pages included, to a new private file."""
    j = Journal(journal_path, clock=clock)
    with j.atomic():
        stans = [j.allocate_stan() for _ in range(3)]
    assert j.displaced() is None
    for f in journal_path.parent.glob(journal_path.name + "*"):
        f.unlink()
    assert j.displaced() == f"journal {journal_path} was deleted while the service had it open"
    with j.atomic():
        stans.append(j.allocate_stan())  # written into the deleted file: only this connection still sees it
    j.copy_to(journal_path)
    with pytest.raises(FileExistsError):
        j.copy_to(journal_path)  # never over a file that is there
    assert j.displaced() == f"journal {journal_path} was replaced by another file while the service had it open"
    j.close()
    assert stat.S_IMODE(journal_path.stat().st_mode) == 0o600
    back = Journal(journal_path, clock=clock)
    with back.atomic():
        assert back.allocate_stan() == stans[-1] + 1
    assert back.integrity_check() == ["ok"] and back.displaced() is None
    back.close()
