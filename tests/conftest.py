"""Session-wide checks. At the end of the session: the secret sweep (tests/secret_sweep.py) over every file the
tests wrote under the session's base temporary directory; a key, PIN block or clear PIN found fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from posguard.demo.day import CARD_PIN, PIN_PAD_KEY, PIN_PAD_TMK
from tests.secret_sweep import register_secret, sweep

register_secret(PIN_PAD_TMK, PIN_PAD_KEY, CARD_PIN.encode())  # the demo day's PIN pad keys and card PIN

#: the captures the tests keep in the repository (re-recorded by some tests): swept too
CAPTURES = Path(__file__).resolve().parent / "captures"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        base = factory.getbasetemp()
    except (OSError, ValueError):
        return
    hits = sweep(base) + sweep(CAPTURES)
    if hits:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "secret sweep: test keys / PIN data found in files the tests wrote:\n  " + "\n  ".join(hits)
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
