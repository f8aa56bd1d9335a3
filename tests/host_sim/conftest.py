from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.host import HostSimulator, SimConfig

from .wire import WireClient


@pytest.fixture
def cup_sim() -> Iterator[HostSimulator]:
    # routing, rules and faults through raw messages: a test of other concerns, so the open security mode
    # (tests/host_sim/test_security.py drives the strict default)
    with HostSimulator(SimConfig(dialect="cup", security="open")) as sim:
        yield sim


@pytest.fixture
def cup_client(cup_sim: HostSimulator) -> Iterator[WireClient]:
    client = WireClient(cup_sim.address, "cup")
    yield client
    client.close()
