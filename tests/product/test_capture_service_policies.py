"""A capture the service writes (``posguard run --record``) names the engine policies it runs with, so that its
replay times a reversal as the live terminal did (docs/capture-format.md, "A late answer is a timeout"): the
service waits for a reversal's answer the host timeout, at most 15 s, and the replay of its capture waits the same,
from the header's ``policies`` or, in a capture written before the header named them, by the same rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posguard.capture.format import read_capture
from posguard.config import load_config
from posguard.service.run import EventLog, Service
from tests.product.test_service import write_config


@pytest.mark.parametrize(("host_timeout", "reversal_wait"), [("5.0", 5.0), ("30.0", 15.0)])
def test_the_service_header_names_the_reversal_timeout_it_runs_with(tmp_path: Path, host_timeout: str,
                                                                    reversal_wait: float) -> None:
    path = write_config(tmp_path, 9)  # nothing is sent: the service is built, not started
    path.write_text(path.read_text().replace("timeout = 5\n", f"timeout = {host_timeout}\n"))
    cfg, problems = load_config(path)
    assert problems == [] and cfg.timeout == float(host_timeout)
    capture = tmp_path / "day.jsonl"
    svc = Service(cfg, EventLog(), record=str(capture))
    try:
        assert svc.engine.policies.saf.timeout == reversal_wait
    finally:
        svc.close()
    header = json.loads(capture.read_text().splitlines()[0])
    assert header["policies"] == {"saf_timeout": reversal_wait, "backoff_initial": 1.0,
                                  "block_new_transactions": True, "send_reversal_immediately": True}
    assert read_capture(capture).header == header  # the reader takes what the writer wrote
