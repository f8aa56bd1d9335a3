"""kill -9 at every point of a sign-on (issue 12 §1): after the restart the terminal is signed on with the keys the
host issued, or not signed on at all — never half (keys without "signed on", or "signed on" without keys).

The acquirer simulator runs as its own program in its strict default (it keeps its key store across the
terminal's death); the child process signs on and SIGKILLs itself at the n-th occurrence of one kill point
(both sides of every journal commit, both sides of the send), as in ``tests/engine/test_crash_kill9.py``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_sim.rig import HostProcess, host_process
from posguard.clock import VirtualClock
from tests.engine.conftest import MONDAY_0900, TERMINAL, card
from tests.host_sim.harness import keyed
from tests.integration.simproc import die_at, wire_engine

TID = TERMINAL.terminal_id


@pytest.fixture(scope="module", params=["iso87ascii", "cup"])
def sim(request: pytest.FixtureRequest) -> Iterator[HostProcess]:
    # the host's clock starts at the terminal's virtual time: its local-date check (on by default) agrees
    with host_process(request.param, extra_args=("--clock-start", str(MONDAY_0900))) as s:
        yield s


def _discover(sim: HostProcess, case: Path) -> list[tuple[str, int]]:
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900), keyed(TERMINAL))
    seen: Counter[str] = Counter()
    points: list[tuple[str, int]] = []

    def record(point: str) -> None:
        seen[point] += 1
        points.append((point, seen[point]))

    w.engine.kill_points = record
    w.engine.sign_on(reason="operator")
    w.close()
    return points


def _sign_on_and_die(sim: HostProcess, case: Path, target: tuple[str, int]) -> int:
    def act(kill_at: Callable[[str], None]) -> None:
        w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900), keyed(TERMINAL))
        w.engine.kill_points = kill_at
        w.engine.sign_on(reason="operator")

    return die_at(target, act)


def test_kill_9_at_every_point_of_a_sign_on(sim: HostProcess, tmp_path: Path) -> None:
    (tmp_path / "discover").mkdir()
    points = _discover(sim, tmp_path / "discover")
    assert len(points) >= 6 and ("host.before_send:0800", 1) in points
    outcomes: Counter[str] = Counter()
    for i, target in enumerate(points):
        case = tmp_path / f"k{i:02d}"
        case.mkdir()
        sim.reset()  # a fresh journal reuses STANs: the host's duplicate check must not see the last case
        status = _sign_on_and_die(sim, case, target)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (target, status)
        sim.wait_idle()
        w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + 60), keyed(TERMINAL))
        try:
            journal = w.engine.journal
            assert journal.integrity_check() == ["ok"], target
            signed = journal.query("SELECT COUNT(*) FROM events WHERE kind = 'signed_on'")[0][0]
            keyed_events = journal.query("SELECT COUNT(*) FROM events WHERE kind = 'working_keys'")[0][0]
            assert signed == keyed_events <= 1, f"half signed on after kill -9 at {target}"
            due = w.engine.sign_on_due
            assert due in (None, "no working keys"), (target, due)
            host = sim.ctl.call("keys", tid=TID)
            if due is None:  # signed on: with exactly the keys the host holds for this terminal
                outcomes["signed on"] += 1
                assert signed == 1 and w.engine.working_keys is not None
                assert host["state"] == "signed_on" and host["mac_kcv"][:6] == w.engine.working_keys.mac.kcv
            else:
                outcomes["not signed on"] += 1
                assert signed == 0 and w.engine.working_keys is None
            sent_before = len([m for m in journal.messages() if m["direction"] == "out" and m["mti"] == "0800"])
            sale = w.engine.sale(card(), 1_00)  # the till works again: signs on first only if it was not
            assert sale.approved, (target, sale.operator_message)
            sent_after = len([m for m in journal.messages() if m["direction"] == "out" and m["mti"] == "0800"])
            assert sent_after - sent_before == (0 if due is None else 1), target
        finally:
            w.close()
    assert outcomes["signed on"] >= 1 and outcomes["not signed on"] >= 1, outcomes
    print(f"\n{sim.dialect}: kill -9 at {len(points)} points of a sign-on survived: {dict(outcomes)}")
