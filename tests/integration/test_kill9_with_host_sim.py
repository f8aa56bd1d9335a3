"""kill -9 of the engine at every kill point of a sale, a void and a refund, against the real acquirer simulator.

The simulator runs as its own process (``python -m firmware_sim.host``) and keeps its ledger across the
crash. For every kill point (state transitions, both sides of every journal commit, both sides of every send)
a forked child runs the operation over the real TcpHostLink and SIGKILLs itself at that point; the parent
then restarts the engine on the same journal, runs ``recover()`` and asserts that the simulator's ledger and
the journal agree (:func:`books_disagree`): no transaction lost, no charge left without its reversal, no
double charge. Then a kill inside ``recover()`` itself, at each of its points, followed by a second recovery.
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
from tests.integration.simproc import books_disagree, wire_engine

SALE_AMOUNT, REFUND_AMOUNT = 120_00, 20_00
TID = TERMINAL.terminal_id
Point = tuple[str, int]


@pytest.fixture(scope="module", params=["iso87ascii", "cup"])
def sim(request: pytest.FixtureRequest) -> Iterator[HostProcess]:
    # the host's clock starts at the terminal's virtual time: its local-date check (on by default) agrees
    with host_process(request.param, extra_args=("--clock-start", str(MONDAY_0900))) as s:
        yield s


def _prepare(sim: HostProcess, case: Path, op: str) -> str | None:
    """A clean host; for a void or refund, an approved sale to correct."""
    sim.reset()
    case.mkdir()
    if op == "sale":
        return None
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900), keyed(TERMINAL))
    try:
        sale = w.engine.sale(card(), SALE_AMOUNT, order_ref="ORD-7")
        assert sale.approved, sale.operator_message
        return sale.txn_id
    finally:
        w.close()


def _operate(sim: HostProcess, case: Path, op: str, original: str | None, hook: Callable[[str], None]) -> None:
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + 60), keyed(TERMINAL))
    w.engine.kill_points = hook
    try:
        if op == "sale":
            w.engine.sale(card(), SALE_AMOUNT, order_ref="ORD-7")
        elif op == "void":
            w.engine.void(original or "")
        else:
            w.engine.refund(original or "", REFUND_AMOUNT)
    finally:
        w.close()


def _recover(sim: HostProcess, case: Path, hook: Callable[[str], None] | None = None, at: float = 3600) -> None:
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + at), keyed(TERMINAL))
    w.engine.kill_points = hook
    try:
        w.engine.recover()
    finally:
        w.close()


def _recorder() -> tuple[list[Point], Callable[[str], None]]:
    seen: Counter[str] = Counter()
    points: list[Point] = []

    def record(point: str) -> None:
        seen[point] += 1
        points.append((point, seen[point]))

    return points, record


def _killer(target: Point) -> Callable[[str], None]:
    seen: Counter[str] = Counter()

    def kill_at(point: str) -> None:
        seen[point] += 1
        if (point, seen[point]) == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return kill_at


def _in_child_killed_at(target: Point, run: Callable[[Callable[[str], None]], None]) -> None:
    """Fork; the child runs ``run`` and SIGKILLs itself at ``target``; assert it died there."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            run(_killer(target))
            code = 4  # ran to the end without reaching the point
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (target, status)


def _check_books(sim: HostProcess, case: Path, op: str, original: str | None) -> None:
    """Restart, recover, compare the simulator's ledger with the journal; then the till must work again."""
    sim.wait_idle()
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + 7200), keyed(TERMINAL))
    try:
        report = w.engine.recover()
        journal = w.engine.journal
        assert journal.integrity_check() == ["ok"]
        assert not report.still_pending, "the host is up: recovery must clear the queue"
        assert books_disagree(journal, sim.ledger(), TID) == []
        standing = [e for e in sim.ledger(TID) if e["kind"] == "sale" and e["status"] == "approved"]
        assert len(standing) <= 1, "double charge"
        if op == "void":
            sale = journal.get_txn(original or "")
            assert (sale.state == "voided") == (not standing)
        after = w.engine.sale(card(), 1_00)
        assert after.approved, after.operator_message
        assert books_disagree(journal, sim.ledger(), TID) == []
    finally:
        w.close()


CASES = [
    ("sale", ""),
    ("sale", "no_response"),  # the sale's answer is lost: crash around the timeout and the reversal
    ("void", ""),
    ("refund", ""),  # ISO: 0200 reversible; CUP: 0220 advice, repeated as 0221 after a crash
]


@pytest.mark.parametrize(("op", "fault"), CASES, ids=[f"{o}-{f or 'ok'}" for o, f in CASES])
def test_kill_9_at_every_point_against_the_simulator(sim: HostProcess, tmp_path: Path, op: str, fault: str) -> None:
    discover = tmp_path / "discover"
    original = _prepare(sim, discover, op)
    if fault:
        sim.ctl.add_fault(fault, mti="0200")
    points, record = _recorder()
    _operate(sim, discover, op, original, record)
    assert len(points) >= 10, points
    for i, target in enumerate(points):
        case = tmp_path / f"k{i:03d}"
        original = _prepare(sim, case, op)
        if fault:
            sim.ctl.add_fault(fault, mti="0200")

        def run(hook: Callable[[str], None], case: Path = case, original: str | None = original) -> None:
            _operate(sim, case, op, original, hook)

        _in_child_killed_at(target, run)
        sim.ctl.clear_faults()
        try:
            _check_books(sim, case, op, original)
        except AssertionError as exc:
            raise AssertionError(f"after kill -9 at {target[0]} #{target[1]}: {exc}") from exc
    print(f"\n{op}/{sim.dialect}/{fault or 'ok'}: {len(points)} kill points survived against the simulator")


@pytest.mark.parametrize("first_kill", ["host.after_send:0200", "journal.after_commit:sent"])
def test_kill_9_inside_recover_then_recover_again(sim: HostProcess, tmp_path: Path, first_kill: str) -> None:
    """A crash with a sale in flight, then a crash at every point of the recovery, then a clean recovery."""
    discover = tmp_path / "discover"
    _prepare(sim, discover, "sale")
    _in_child_killed_at((first_kill, 1), lambda hook: _operate(sim, discover, "sale", None, hook))
    sim.wait_idle()
    points, record = _recorder()
    _recover(sim, discover, record)
    assert any(p.startswith("host.before_send:040") for p, _ in points), points  # the reversal goes out
    assert len(points) >= 10, points
    for i, target in enumerate(points):
        case = tmp_path / f"r{i:03d}"
        _prepare(sim, case, "sale")

        def sale(hook: Callable[[str], None], case: Path = case) -> None:
            _operate(sim, case, "sale", None, hook)

        def recover(hook: Callable[[str], None], case: Path = case) -> None:
            _recover(sim, case, hook)

        _in_child_killed_at((first_kill, 1), sale)
        sim.wait_idle()
        _in_child_killed_at(target, recover)
        try:
            _check_books(sim, case, "sale", None)
        except AssertionError as exc:
            raise AssertionError(f"after kill -9 at {first_kill}, then in recover() at {target}: {exc}") from exc
    print(f"\nrecover()/{sim.dialect}/{first_kill}: {len(points)} kill points inside recovery survived")


DECLINED_PAN = "4000000000000002"  # the simulator declines it (RC 05)


def _unbalanced_batch(sim: HostProcess, case: Path) -> None:
    """One sale both sides agree on, one the host booked declined while the terminal heard 00."""
    sim.reset()
    case.mkdir()
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900), keyed(TERMINAL))
    try:
        assert w.engine.sale(card(), 40_00).approved
        sim.ctl.add_fault("wrong_rc", rc="00")
        assert w.engine.sale(card(DECLINED_PAN), 25_00).approved
    finally:
        w.close()


def _settle(sim: HostProcess, case: Path, hook: Callable[[str], None] | None, at: float) -> int:
    w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + at), keyed(TERMINAL))
    w.engine.kill_points = hook
    try:
        return w.engine.settle().next_batch
    finally:
        w.close()


def test_kill_9_at_every_point_of_an_unbalanced_settlement(sim: HostProcess, tmp_path: Path) -> None:
    """The batch number advances once, only with the batch end acknowledged; the books agree afterwards."""
    discover = tmp_path / "discover"
    _unbalanced_batch(sim, discover)
    points, record = _recorder()
    assert _settle(sim, discover, record, 600) == 2
    assert any(p.startswith("host.before_send:0320") for p, _ in points), points
    for i, target in enumerate(points):
        case = tmp_path / f"s{i:03d}"
        _unbalanced_batch(sim, case)

        def settle(hook: Callable[[str], None], case: Path = case) -> None:
            _settle(sim, case, hook, 600)

        _in_child_killed_at(target, settle)
        sim.wait_idle()
        w = wire_engine(sim, case / "journal.db", VirtualClock(start=MONDAY_0900 + 7200), keyed(TERMINAL))
        try:
            journal = w.engine.journal
            assert journal.integrity_check() == ["ok"]
            closed = journal.current_batch() == 2
            assert closed == (points.index(target) > points.index(("journal.before_commit:batch_closed", 1))), target
            if not closed:
                assert w.engine.settle().next_batch == 2, target
            row = journal.batch(1)
            assert journal.current_batch() == 2 and row is not None and row["state"] == "closed"
            assert books_disagree(journal, sim.ledger(), TID) == [], target
            assert all(e["batch_closed"] for e in sim.ledger(TID) if e["kind"] == "sale"), target
        finally:
            w.close()
    print(f"\nsettlement/{sim.dialect}: {len(points)} kill points survived against the simulator")
