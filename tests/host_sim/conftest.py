from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.host import HostSimulator, SimConfig

from .wire import WireClient


@pytest.fixture
def cup_sim() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="cup")) as sim:
        yield sim


@pytest.fixture
def cup_client(cup_sim: HostSimulator) -> Iterator[WireClient]:
    client = WireClient(cup_sim.address, "cup")
    yield client
    client.close()
