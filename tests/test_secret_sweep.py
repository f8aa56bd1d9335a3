"""The secret sweep can fail: a planted key, PIN block or PIN is found in each of its forms."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.secret_sweep import register_secret, secrets, sweep

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
BLOCK = bytes.fromhex("9C3A51D0E7B2468F")
NEVER_WRITTEN = bytes.fromhex("5E0C7A93D1F2B864")


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Path]:
    """A directory for planted values, removed afterwards so the session's own sweep stays clean."""
    yield tmp_path / "planted"
    shutil.rmtree(tmp_path / "planted", ignore_errors=True)


@pytest.mark.parametrize("form", ["raw", "HEX", "hex", "split across a chunk"])
def test_a_planted_value_is_found(plant: Path, form: str) -> None:
    tmp_path = plant
    written = {"raw": b"x" + BLOCK + b"y", "HEX": b'{"f52": "' + BLOCK.hex().upper().encode() + b'"}',
               "hex": b"log " + KEY.hex().encode(), "split across a chunk": b"." * ((1 << 22) - 3) + BLOCK}[form]
    (tmp_path / "sub").mkdir(parents=True)
    (tmp_path / "sub" / "journal.db").write_bytes(written)
    hits = sweep(tmp_path, [KEY, BLOCK])
    assert len(hits) == 1 and "journal.db" in hits[0]
    assert BLOCK.hex() not in hits[0].lower() and KEY.hex() not in hits[0].lower()  # the report never shows it


def test_a_clear_pin_is_found_and_clean_files_and_key_files_pass(plant: Path) -> None:
    tmp_path = plant
    tmp_path.mkdir()
    (tmp_path / "capture.jsonl").write_text('{"pin": "842917"}')
    (tmp_path / "clean.log").write_text("sale approved, 52 ****")
    (tmp_path / "tmk.key").write_text(KEY.hex().upper())  # a TMK file is where the key lives
    assert [h.split(":")[0] for h in sweep(tmp_path, [b"842917", KEY])] == [str(tmp_path / "capture.jsonl")]


def test_registered_values_are_swept_and_short_ones_refused() -> None:
    register_secret(NEVER_WRITTEN)
    assert NEVER_WRITTEN in secrets()
    with pytest.raises(ValueError):
        register_secret(b"123")


PLANT_ENV = "POSGUARD_SWEEP_PLANT"
LEFT_BEHIND = bytes.fromhex("7D1E4B2A90C3F56817E2D4C6B8A09F31")


@pytest.mark.skipif(not os.environ.get(PLANT_ENV), reason="the inner run of the next test")
def test_leave_a_secret_behind(tmp_path: Path) -> None:
    register_secret(LEFT_BEHIND)
    (tmp_path / "service.log").write_text(f"loaded key {LEFT_BEHIND.hex()}\n")


def test_the_session_fails_when_a_secret_is_left_behind() -> None:
    """The session-end hook itself: an inner pytest run that leaves a registered key in a log exits 1."""
    base = Path(tempfile.mkdtemp(prefix="posguard-sweep-proof-"))  # outside this session's base directory
    try:
        inner = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base / 'run'}",
             f"{Path(__file__).resolve()}::test_leave_a_secret_behind"],
            env={**os.environ, PLANT_ENV: "1"}, capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).resolve().parents[1])
        assert inner.returncode == 1, inner.stdout + inner.stderr
        assert "1 passed" in inner.stdout and "secret sweep" in inner.stdout and "service.log" in inner.stdout
        assert LEFT_BEHIND.hex() not in inner.stdout.lower()
    finally:
        shutil.rmtree(base, ignore_errors=True)
