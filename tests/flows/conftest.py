"""A till (engine + real TcpHostLink + real acquirer simulator, virtual clock) with a flow desk on top.

``Desk.restart()`` simulates a crash: the journal is closed and reopened on the same file, a new engine is
built over the same link and simulator and runs ``recover()``, as the product does at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.hostlink import TcpHostLink
from posguard.engine.journal import Journal
from posguard.flows import FLOWS, FlowContext, FlowOutcome, FlowPolicies, FlowRequest
from posguard.flows.base import FlowCrash
from posguard.iso8583.message import Message
from tests.engine.conftest import TERMINAL
from tests.host_sim.harness import linked

DIALECTS = ["iso87ascii", "cup"]
TID = TERMINAL.terminal_id


@dataclass
class Desk:
    dialect: str
    path: Path
    sim: HostSimulator
    link: TcpHostLink
    clock: VirtualClock
    policies: FlowPolicies = field(default_factory=FlowPolicies)
    crash_at: str | None = None
    points: list[str] = field(default_factory=list)
    journal: Journal = field(init=False)
    engine: TransactionEngine = field(init=False)

    def __post_init__(self) -> None:
        self._open()

    def _kill(self, point: str) -> None:
        self.points.append(point)
        if self.crash_at is not None and point == self.crash_at:
            self.crash_at = None
            raise FlowCrash(point)

    def _open(self) -> None:
        self.journal = Journal(self.path, clock=self.clock)
        self.engine = TransactionEngine(self.journal, self.link, self.dialect, TERMINAL, self.clock,
                                        Detectors.default(self.clock), kill_points=self._kill)

    def restart(self, *, recover: bool = True) -> None:
        self.link.close()  # whatever was on the wire is gone with the process
        self.journal.close()
        self._open()
        if recover:
            self.engine.recover()

    @property
    def ctx(self) -> FlowContext:
        return FlowContext(self.engine, self.journal, self.dialect, self.policies, self.clock, kill_points=self._kill)

    def run(self, request: FlowRequest, *, dry_run: bool = False) -> FlowOutcome:
        return FLOWS[request.kind]().run(self.ctx, request, dry_run=dry_run)

    def resume(self, incident_id: int, request: FlowRequest) -> FlowOutcome:
        return FLOWS[request.kind]().resume(self.ctx, incident_id, request)

    def open_incident(self) -> int:
        rows = self.journal.query("SELECT id FROM incidents WHERE kind LIKE 'flow:%' ORDER BY id DESC LIMIT 1")
        return int(rows[0]["id"])

    def ledger(self, **where: Any) -> list[Any]:
        return self.sim.ledger.find(tid=TID, **where)

    def wire(self, outcome: FlowOutcome) -> list[Message]:
        dialect = "cup" if self.dialect == "cup" else self.dialect
        return [Message.decode(bytes.fromhex(h), dialect) for h in outcome.messages]

    def settle(self) -> None:
        self.engine.settle()


@contextmanager
def desk_for(dialect: str, tmp_path: Path, *, sim_config: dict[str, Any] | None = None, **kw: Any) -> Iterator[Desk]:
    with linked(dialect=dialect, sim_config=sim_config) as (sim, link, clock, _events):
        desk = Desk(dialect, tmp_path / "journal.db", sim, link, clock, **kw)
        try:
            yield desk
        finally:
            desk.journal.close()


@pytest.fixture(params=DIALECTS)
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    with desk_for(request.param, tmp_path) as d:
        yield d


def no_full_pan(text: str, *pans: str) -> bool:
    return all(p not in text for p in pans)


Scenario = Callable[[Desk], Any]
