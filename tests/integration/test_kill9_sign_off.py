"""kill -9 at every point of a sign-off (issue 12 §1, the clean shutdown's CUP 0820 60.3 = 002 / ISO 0800 70 = 002):
after the restart the terminal is signed on with keys the host still holds, or not signed on (and the next sale
signs on first) — never holding keys the host has already dropped, which would earn the next sale an RC 77.

The acquirer simulator runs as its own program (strict default, its clock started at the terminal's virtual time);
the child process signs on, then SIGKILLs itself at the n-th occurrence of one kill point of the sign-off (both
sides of every journal commit, both sides of the send), as ``test_kill9_sign_on.py`` does for the sign-on.
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
from tests.integration.simproc import Wired, die_at, wire_engine

TID = TERMINAL.terminal_id


@pytest.fixture(scope="module", params=["iso87ascii", "cup"])
def sim(request: pytest.FixtureRequest) -> Iterator[HostProcess]:
    with host_process(request.param, extra_args=("--clock-start", str(MONDAY_0900))) as s:
        yield s


def _signed_on(sim: HostProcess, case: Path) -> Wired:
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900), keyed(TERMINAL))
    w.engine.sign_on(reason="operator")
    return w


def _discover(sim: HostProcess, case: Path) -> list[tuple[str, int]]:
    w = _signed_on(sim, case)
    seen: Counter[str] = Counter()
    points: list[tuple[str, int]] = []

    def record(point: str) -> None:
        seen[point] += 1
        points.append((point, seen[point]))

    w.engine.kill_points = record
    assert w.engine.sign_off(reason="shutdown") is not None
    w.close()
    return points


def _sign_off_and_die(sim: HostProcess, case: Path, target: tuple[str, int]) -> int:
    def act(kill_at: Callable[[str], None]) -> None:
        w = _signed_on(sim, case)
        w.engine.kill_points = kill_at
        w.engine.sign_off(reason="shutdown")

    return die_at(target, act)


def test_kill_9_at_every_point_of_a_sign_off(sim: HostProcess, tmp_path: Path) -> None:
    (tmp_path / "discover").mkdir()
    points = _discover(sim, tmp_path / "discover")
    off = "0820" if sim.dialect == "cup" else "0800"
    assert (f"host.before_send:{off}", 1) in points and (f"host.after_send:{off}", 1) in points, points
    outcomes: Counter[str] = Counter()
    for i, target in enumerate(points):
        case = tmp_path / f"k{i:02d}"
        case.mkdir()
        sim.reset()  # a fresh journal reuses STANs: the host's duplicate check must not see the last case
        status = _sign_off_and_die(sim, case, target)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (target, status)
        sim.wait_idle()
        w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + 60), keyed(TERMINAL))
        try:
            journal = w.engine.journal
            assert journal.integrity_check() == ["ok"], target
            due = w.engine.sign_on_due
            assert due in (None, "no working keys"), (target, due)
            host = sim.ctl.call("keys", tid=TID)
            if due is None:  # still signed on: only when the host never saw the sign-off, with its very keys
                outcomes["signed on"] += 1
                assert w.engine.working_keys is not None
                assert host["state"] == "signed_on", f"the terminal kept keys the host dropped (kill at {target})"
                assert host["mac_kcv"][:6] == w.engine.working_keys.mac.kcv, target
            else:
                outcomes["not signed on"] += 1
                assert w.engine.working_keys is None, target
            sent_before = len([m for m in journal.messages() if m["direction"] == "out" and m["mti"] == "0800"])
            sale = w.engine.sale(card(), 1_00)  # the till works again: signs on first only if it was not
            assert sale.approved, (target, sale.response_code, sale.operator_message)
            sent_after = len([m for m in journal.messages() if m["direction"] == "out" and m["mti"] == "0800"])
            assert sent_after - sent_before == (0 if due is None else 1), target
        finally:
            w.close()
    assert outcomes["signed on"] >= 1 and outcomes["not signed on"] >= 1, outcomes
    print(f"\n{sim.dialect}: kill -9 at {len(points)} points of a sign-off survived: {dict(outcomes)}")
