"""pytest plugin: replay a posguard capture in a test.

Registered under the ``pytest11`` entry point (``posguard = "posguard.capture.pytest_plugin"``). The
``posguard_replay`` fixture is a function: call it with a capture file and get a :class:`Replayed` with the
incidents, the wire messages the replayed engine sent and the journal's transaction states::

    def test_duplicate(posguard_replay):
        day = posguard_replay("tests/captures/cup-duplicate_charge.jsonl")
        assert day.incident_kinds() == ["duplicate_charge"]
        assert day.states()["POSGRD01-00000006"] == "voided"
        assert "0200" in day.wire_mtis()

Replays are deterministic (virtual clock, no network); each journal lives in the test's ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from posguard.capture.replay import ReplayResult, replay
from posguard.incidents import IncidentReport
from posguard.service.till import Till

__all__ = ["Replayed", "posguard_replay"]


@dataclass
class Replayed:
    result: ReplayResult

    @property
    def incidents(self) -> list[IncidentReport]:
        return self.result.incidents

    def incident_kinds(self) -> list[str]:
        return [i.kind for i in self.result.incidents]

    def incident_dicts(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.result.incidents]

    def wire_mtis(self) -> list[str]:
        return [m.mti for m in self.result.sent]

    @property
    def wire(self) -> list[Any]:
        """The request messages the replayed engine sent (``posguard.iso8583.Message``; masked in repr)."""
        return self.result.sent

    def states(self) -> dict[str, str]:
        """Transaction id -> journal state."""
        return {t.id: t.state for t in self.result.journal.find_txns()}

    @property
    def journal(self) -> Any:
        return self.result.journal

    @property
    def log(self) -> list[str]:
        return self.result.log


@pytest.fixture
def posguard_replay(tmp_path: Path) -> Iterator[Callable[[str | Path], Replayed]]:
    opened: list[Replayed] = []

    def run(path: str | Path) -> Replayed:
        db = tmp_path / f"replay-{len(opened)}.db"
        day = Replayed(replay(path, desk=Till.for_replay, journal_path=db))
        opened.append(day)
        return day

    yield run
    for day in opened:
        day.result.journal.close()
