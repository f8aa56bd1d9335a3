"""``posguard run --stdin`` driven from a test, as an operator at the till would: one command line in, the
service's JSON answer out (the structured log lines it prints before the answer are kept in ``LOGS`` for the
test to check), and a clean SIGTERM at the end whose exit status, stdout and stderr the test reads."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from firmware_sim.rig.pcscd import pcsc_env
from tests.product.conftest import ROOT

#: the log lines ``ask`` read past on its way to an answer, in order (a test clears it before a session)
LOGS: list[str] = []


def ask(proc: subprocess.Popen[str], line: str, timeout: float = 20.0) -> dict[str, Any]:
    """The service's answer to ``line``; the log lines before it go to ``LOGS``. A service that stops or stays
    silent is an AssertionError that quotes the last things it said (and its stderr when it died)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = proc.stdout.readline()
        if not text:
            break
        obj = json.loads(text)
        if "answer" in obj:
            answer: dict[str, Any] = obj["answer"]
            return answer
        LOGS.append(text)
    died = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""
    said = "\n".join(t.strip()[:300] for t in LOGS[-8:])
    raise AssertionError(f"no answer to {line!r}{': the service stopped: ' + died if died else ''}; it said: {said}")


class StdinService:
    """One running ``posguard run --stdin``: ``ask`` while it runs; ``returncode``, ``out`` and ``err`` after the
    ``with`` block stopped it with SIGTERM."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out = ""
        self.err = ""

    def ask(self, line: str, timeout: float = 20.0) -> dict[str, Any]:
        return ask(self.proc, line, timeout)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


@contextlib.contextmanager
def stdin_service(config: Path, *, record: Path | None = None,
                  env: Mapping[str, str] | None = None) -> Iterator[StdinService]:
    """Start ``posguard run --config CONFIG --stdin`` (``--record`` when given; the private pcscd's environment
    unless ``env`` is given); on a normal exit of the block send SIGTERM and collect its output, and on any exit
    leave no process behind."""
    args = [sys.executable, "-m", "posguard.cli", "run", "--config", str(config), "--stdin"]
    if record is not None:
        args += ["--record", str(record)]
    proc = subprocess.Popen(args, cwd=ROOT, env=dict(env) if env is not None else pcsc_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    service = StdinService(proc)
    try:
        yield service
        proc.send_signal(signal.SIGTERM)
        service.out, service.err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
