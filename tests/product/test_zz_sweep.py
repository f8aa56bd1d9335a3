"""Runs last in tests/product: every file the product tests wrote (captures, logs, journals with their WAL,
pcaps, configs) is searched for the simulators' PANs in clear: digits, BCD, ASCII and hex of ASCII."""

from __future__ import annotations

from tests.product.conftest import CAPTURES, WRITTEN_DIRS, clear_pan_hits


def test_nothing_written_by_the_product_suite_holds_a_pan_in_clear() -> None:
    files = [f for d in WRITTEN_DIRS if d.exists() for f in d.rglob("*") if f.is_file()]
    files += list(CAPTURES.glob("*.jsonl"))
    leaks = {str(f): hits for f in files if (hits := clear_pan_hits(f.read_bytes()))}
    assert leaks == {}
    assert files  # the sweep saw something
