"""The secret sweep can fail: a planted key, PIN block or PIN is found in each of its forms."""

from __future__ import annotations

import shutil
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
