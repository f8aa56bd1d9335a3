"""Product tests: the demo, capture and replay, diagnose. The replay fixture comes from posguard's pytest plugin
(also registered under the ``pytest11`` entry point once installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from posguard.capture.pytest_plugin import posguard_replay  # noqa: F401 - the fixture, for runs without the entry point

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "captures"
#: the simulators' card PANs: none may appear in clear in anything posguard writes
SIM_PANS = ("4761739001010119", "6250947000000014", "5413330089010434")


def clear_pan_hits(data: bytes) -> list[str]:
    """Simulator PANs found in ``data``: as digits (text, BCD hex) and as hex of ASCII digits."""
    text = data.decode("latin-1")
    hits = []
    for pan in SIM_PANS:
        if pan in text or pan.encode().hex() in text.lower() or bytes.fromhex(pan) in data \
                or pan.encode() in data:
            hits.append(pan)
    return hits


#: every tmp_path a product test used: swept for clear PANs by test_zz_sweep.py at the end of the run
WRITTEN_DIRS: list[Path] = []


@pytest.fixture(autouse=True)
def _remember_written(request: pytest.FixtureRequest) -> None:
    if "tmp_path" in request.fixturenames:
        WRITTEN_DIRS.append(request.getfixturevalue("tmp_path"))
