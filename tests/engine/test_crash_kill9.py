"""kill -9 at every kill point of a sale, a void and a refund; restart; recover; check the books.

Each case forks a child that runs the engine against a host whose ledger is fsynced to a file before it
answers. The child sends itself SIGKILL at the n-th occurrence of one named kill point (state transitions,
both sides of every journal commit, both sides of every send). The parent then restarts the engine on the
same journal and host ledger, runs ``recover()`` and checks: the journal is intact, nothing the host saw is
missing from the journal, no charge stands without the terminal knowing it, no double charge.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from posguard.clock import VirtualClock
from posguard.engine.chart import CHARGE_STANDS
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from tests.engine.conftest import MONDAY_0900, TERMINAL, card
from tests.engine.fakehost import FakeHost

SALE_AMOUNT, REFUND_AMOUNT = 120_00, 20_00


def _engine(tmp: Path, clock: VirtualClock, dialect: str) -> tuple[TransactionEngine, FakeHost]:
    host = FakeHost(clock, ledger_path=tmp / "host-ledger.json")
    journal = Journal(tmp / "journal.db", clock=clock)
    return TransactionEngine(journal, host, dialect, TERMINAL, clock, Detectors.default(clock)), host


def _prepare(tmp: Path, op: str, dialect: str) -> str | None:
    """Before the operation under test: for a void or refund, an approved sale."""
    if op == "sale":
        return None
    engine, _ = _engine(tmp, VirtualClock(start=MONDAY_0900), dialect)
    sale = engine.sale(card(), SALE_AMOUNT, order_ref="ORD-7")
    engine.journal.close()
    assert sale.approved
    return sale.txn_id


def _operate(engine: TransactionEngine, op: str, original: str | None) -> None:
    if op == "sale":
        engine.sale(card(), SALE_AMOUNT, order_ref="ORD-7")
    elif op == "void":
        assert original
        engine.void(original)
    else:
        assert original
        engine.refund(original, REFUND_AMOUNT)


def _discover(tmp: Path, op: str, dialect: str, script: tuple[str, ...]) -> list[tuple[str, int]]:
    original = _prepare(tmp, op, dialect)
    engine, host = _engine(tmp, VirtualClock(start=MONDAY_0900 + 60), dialect)
    host.then(*script)
    seen: Counter[str] = Counter()
    points: list[tuple[str, int]] = []

    def record(point: str) -> None:
        seen[point] += 1
        points.append((point, seen[point]))

    engine.kill_points = record
    _operate(engine, op, original)
    engine.journal.close()
    return points


def _run_and_kill(tmp: Path, op: str, dialect: str, script: tuple[str, ...], target: tuple[str, int],
                  original: str | None) -> int:
    pid = os.fork()
    if pid == 0:  # child: run the operation and SIGKILL ourselves at the target point
        code = 3
        try:
            engine, host = _engine(tmp, VirtualClock(start=MONDAY_0900 + 60), dialect)
            host.then(*script)
            seen: Counter[str] = Counter()

            def kill_at(point: str) -> None:
                seen[point] += 1
                if (point, seen[point]) == target:
                    os.kill(os.getpid(), signal.SIGKILL)

            engine.kill_points = kill_at
            _operate(engine, op, original)
            code = 4  # ran to the end without reaching the point
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _check_books(tmp: Path, op: str, dialect: str, original: str | None) -> None:
    clock = VirtualClock(start=MONDAY_0900 + 3600)
    engine, host = _engine(tmp, clock, dialect)
    report = engine.recover()
    journal = engine.journal
    assert journal.integrity_check() == ["ok"]
    assert not report.still_pending, "the host is up: recovery must clear the queue"
    txns = journal.find_txns()
    stans = {t.stan for t in txns} | {m["stan"] for m in journal.messages() if m["direction"] == "out"}
    for entry in host.ledger.values():
        assert entry["stan"] in stans, f"host saw STAN {entry['stan']} the journal does not know (lost txn)"
    for t in txns:
        assert t.state not in ("request_journaled", "sent", "timed_out", "reversal_pending", "created", "card_read")
    sales = [t for t in txns if t.kind == "sale"]
    assert len(sales) <= 1
    standing = host.charges_standing()
    assert len(standing) <= 1, "double charge"
    terminal_charged = sum(t.amount_minor - t.refunded_minor for t in sales if t.state in CHARGE_STANDS)
    assert host.net_charged() == terminal_charged, "host and terminal disagree about what the card paid"
    if op == "void":
        sale = journal.get_txn(original or "")
        assert (sale.state == "voided") == (not standing)
    if op == "refund":
        sale = journal.get_txn(original or "")
        assert sale.refunded_minor in (0, REFUND_AMOUNT)
    after = engine.sale(card(), 1_00)  # the till works again, nothing blocks it
    assert after.approved
    journal.close()


CASES = [
    ("sale", "iso87ascii", ()),
    ("sale", "iso87ascii", ("lost_response",)),  # crash while the reversal is being sent
    ("sale", "cup", ()),
    ("void", "iso87ascii", ()),
    ("void", "cup", ("lost_response",)),
    ("refund", "iso87ascii", ()),
    ("refund", "cup", ()),  # CUP refund: 0220 advice, repeated as 0221 after a crash
]


@pytest.mark.parametrize(("op", "dialect", "script"), CASES, ids=[f"{o}-{d}-{'+'.join(s) or 'ok'}" for o, d, s in CASES])
def test_kill_9_at_every_point_then_recover(tmp_path, op, dialect, script):
    points = _discover(tmp_path / "discover", op, dialect, script) if (tmp_path / "discover").mkdir() is None else []
    assert len(points) >= 10
    killed = 0
    for i, target in enumerate(points):
        case = tmp_path / f"k{i:03d}"
        case.mkdir()
        original = _prepare(case, op, dialect)
        status = _run_and_kill(case, op, dialect, script, target, original)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (target, status)
        killed += 1
        try:
            _check_books(case, op, dialect, original)
        except AssertionError as exc:
            raise AssertionError(f"after kill -9 at {target[0]} #{target[1]}: {exc}") from exc
    assert killed == len(points)
    print(f"\n{op}/{dialect}/{'+'.join(script) or 'ok'}: {killed} kill points survived")
