"""Issue 10, "two services on one journal": the second one refuses, naming the holder's pid; a killed holder
leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from posguard.engine.instance_lock import JournalInUse, JournalLock

HOLD = "import sys, time; from posguard.engine.instance_lock import JournalLock; " \
       "JournalLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_second_holder_in_the_same_process_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    with JournalLock(journal) as first:
        assert first.held and (tmp_path / "journal.db.lock").stat().st_mode & 0o777 == 0o600
        with pytest.raises(JournalInUse) as err:
            JournalLock(journal).acquire()
        assert err.value.pid == os.getpid() and f"process {os.getpid()}" in str(err.value)
    with JournalLock(journal):  # released: the next one takes it
        pass


def test_another_process_is_named_and_a_kill_leaves_no_stale_lock(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(journal)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(JournalInUse) as err:
            JournalLock(journal).acquire()
        assert err.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    with JournalLock(journal) as lock:  # the kernel dropped the dead holder's lock
        assert lock.held


def test_a_lock_file_deleted_under_its_holder_is_noticed_and_retaken(tmp_path: Path) -> None:
    """A deleted lock file locks nothing: a second service would start on the journal. The holder sees it
    (``still_held``) and retakes the lock; when another process took it first, ``retake`` names that one."""
    journal = tmp_path / "journal.db"
    lock_file = tmp_path / "journal.db.lock"
    with JournalLock(journal) as first:
        assert first.still_held()
        lock_file.unlink()
        assert not first.still_held()
        first.retake()
        assert first.still_held() and lock_file.read_text() == f"{os.getpid()}\n"
        with pytest.raises(JournalInUse):
            JournalLock(journal).acquire()
        lock_file.unlink()
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(journal)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(JournalInUse) as err:
                first.retake()
            assert err.value.pid == holder.pid and first.held
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
