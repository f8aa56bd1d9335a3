"""One service per journal: an exclusive lock on a file beside the journal, taken before recovery.

Two services on one journal would each recover the other's transactions in flight — the second one reversing
a sale the first had just told the operator was approved. The lock (``flock`` on ``<journal>.lock``, 0600,
holding the owner's pid) is released by the kernel when the process ends, however it ends, so a kill -9
never leaves a stale lock behind. Readers (``posguard incidents``, ``report``) do not take it. A lock file
deleted under its holder locks nothing: the holder checks :meth:`JournalLock.still_held` and retakes it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["JournalLock", "JournalInUse", "file_identity"]


class JournalInUse(RuntimeError):
    """Another process holds the journal; ``pid`` is the holder when it could be read."""

    def __init__(self, journal: Path, pid: int | None) -> None:
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"journal {journal} is in use by {who} (another `posguard run`?); stop it first, or give "
                         "this service its own journal")
        self.journal = journal
        self.pid = pid


class JournalLock:
    """``with JournalLock(path):`` — hold the journal for this process, or raise :class:`JournalInUse`."""

    def __init__(self, journal: str | Path) -> None:
        self.journal = Path(journal)
        self.path = self.journal.with_name(self.journal.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> JournalLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise JournalInUse(self.journal, holder) from None
                raise
            if _is_at(fd, self.path):
                break
            os.close(fd)  # deleted or replaced between the open and the lock: lock the file at the path
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def still_held(self) -> bool:
        """The lock file at :attr:`path` is the one this process holds. A lock file deleted (or replaced) under
        its holder is a lock nobody holds: the next ``posguard run`` on the journal would start."""
        return self._fd is not None and _is_at(self._fd, self.path)

    def retake(self) -> None:
        """Hold the lock file now at :attr:`path` (a new one when it was deleted). Raises :class:`JournalInUse`
        when another process holds it: that process started on the journal meanwhile."""
        old, self._fd = self._fd, None
        try:
            self.acquire()
        except BaseException:
            self._fd = old
            raise
        if old is not None:
            os.close(old)

    def __enter__(self) -> JournalLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def file_identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` as the kernel knows it (device, inode); None when there is none. What tells a file
    deleted or replaced under its holder (this lock file, the journal) from the one the holder opened."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _is_at(fd: int, path: Path) -> bool:
    """``fd`` is the file at ``path`` (same device and inode)."""
    held = os.fstat(fd)
    return file_identity(path) == (held.st_dev, held.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
