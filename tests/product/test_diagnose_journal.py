"""``posguard diagnose --check journal`` as a technician meets the journal: it looks and never touches (no file
initialised, no migration, no write lock waited for while the running service writes), it names what is wrong
with a journal that cannot be read and what to do (never "restore from backup" for a journal that is merely
busy), and it counts the transactions whose outcome is still unknown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from posguard.clock import SystemClock
from posguard.diagnose import DiagnoseConfig, run_checks
from posguard.engine.instance_lock import JournalLock
from posguard.engine.journal import Journal, TxnRecord


def _journal_check(path: Path) -> tuple[str, str, str, dict[str, object]]:
    [r] = run_checks(DiagnoseConfig(journal=str(path)), ["journal"])
    return r.verdict, r.figure, r.advice, r.data


def _fresh(path: Path) -> Path:
    Journal(path, clock=SystemClock()).close()
    return path


def test_an_empty_file_is_reported_and_left_empty(tmp_path: Path) -> None:
    """A 0-byte journal (a backup restored as an empty file) is not initialised by diagnose and called healthy."""
    path = tmp_path / "journal.db"
    path.write_bytes(b"")
    verdict, figure, advice, _ = _journal_check(path)
    assert verdict == "warn" and "empty (0 bytes)" in figure and "journal.path" in advice
    assert path.stat().st_size == 0 and not Path(f"{path}-wal").exists()


def test_another_programs_database_is_named_and_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE cash_drawer (id INTEGER)")
    con.commit()
    con.close()
    verdict, figure, advice, _ = _journal_check(path)
    assert verdict == "fail" and "not a posguard journal" in figure and "journal.path" in advice
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert tables == {"cash_drawer"}  # diagnose added no table of its own


def test_a_journal_held_by_the_running_service_mid_write_is_read_without_waiting(tmp_path: Path) -> None:
    """The running service holds the instance lock and, at that moment, a write transaction: diagnose reads the
    journal (WAL readers do not wait for the writer), names the service's pid and gives no restore advice."""
    import os

    path = _fresh(tmp_path / "journal.db")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        with JournalLock(path):
            writer.execute("BEGIN IMMEDIATE")
            verdict, figure, advice, data = _journal_check(path)
            writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert verdict == "ok", (figure, advice)
    assert f"in use by the running service (pid {os.getpid()})" in figure and data["service_pid"] == os.getpid()


def test_a_truncated_journal_fails_with_the_restore_advice_once(tmp_path: Path) -> None:
    path = _fresh(tmp_path / "journal.db")
    Path(f"{path}-wal").unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    verdict, figure, advice, _ = _journal_check(path)
    assert verdict == "fail" and "damaged" in figure and "restore" in advice and "restore" not in figure


def test_a_directory_is_not_a_journal(tmp_path: Path) -> None:
    verdict, figure, advice, _ = _journal_check(tmp_path)
    assert verdict == "fail" and "is a directory" in figure and "journal.path" in advice


def test_transactions_of_unknown_outcome_are_counted(tmp_path: Path) -> None:
    """A sale left ``sent`` (the box lost power waiting for the answer) is unresolved until the service
    reverses it: diagnose says so, even with nothing yet in the reversal queue."""
    path = tmp_path / "journal.db"
    j = Journal(path, clock=SystemClock())
    now = SystemClock().now()
    with j.atomic("t"):
        j.insert_txn(TxnRecord(id="POSGRD01-00000001", kind="sale", state="sent", amount_minor=1250, currency="156",
                               terminal_id="POSGRD01", created_at=now, updated_at=now, batch_no=j.current_batch()))
    j.close()
    verdict, figure, advice, data = _journal_check(path)
    assert verdict == "warn" and data["in_doubt"] == 1 and "1 transaction(s) of unknown outcome" in figure
    assert "reverses them" in advice


def test_a_journal_this_user_cannot_read_says_so(tmp_path: Path) -> None:
    """Diagnose run as a user who cannot reach or read the journal (root's 0600 file, as nobody; or a file
    with mode 000): a failure naming the uid and the permissions, not "check crashed: PermissionError"."""
    import os

    path = _fresh(tmp_path / "journal.db")
    _journal_check(path)  # everything imported while the files are still readable
    as_root = os.geteuid() == 0
    if as_root:
        os.setegid(65534)
        os.seteuid(65534)
    else:
        path.chmod(0)
    try:
        verdict, figure, advice, _ = _journal_check(path)
    finally:
        if as_root:
            os.seteuid(0)
            os.setegid(0)
        else:
            path.chmod(0o600)
    assert verdict == "fail" and "as uid" in figure and "crashed" not in figure, figure
    assert "service's user" in advice
