"""Issue 10: a damaged journal, or one in a place that cannot exist, is one JournalError saying what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from posguard.engine.journal import Journal, JournalError


def test_a_damaged_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"this is not SQLite" * 100)
    os.chmod(path, 0o600)
    with pytest.raises(JournalError, match="is damaged .* keep the file as evidence"):
        Journal(path)


def test_a_journal_in_a_place_that_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="cannot be opened"):
        Journal(blocker / "journal.db")
