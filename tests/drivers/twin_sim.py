"""A GemPC Twin simulator on a pty that *our* serial driver talks to directly.

The rig's ``twin_factory`` hands the pty to pcscd's libccidtwin, which would hold the port; here the
simulator runs alone."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware_sim.rig.sims import SimHandle, SimProcess

TOKEN_KEY = bytes(range(32))


class TwinSim(SimHandle):
    """Handle of a twin_reader simulator process; ``link`` is the pty path for TwinReader."""

    def __init__(self, sim: SimProcess, link: Path) -> None:
        super().__init__(sim)
        self.link = link

    def insert(self, profile: str = "visa_credit_sig") -> None:
        self.sim.command(f"insert {profile}")

    def remove(self) -> None:
        self.sim.command("remove")

    def unplug(self) -> None:
        self.sim.command("unplug")


@pytest.fixture
def twin_sim() -> Iterator[Callable[..., TwinSim]]:
    """``twin_sim(profile, faults=(), echo=True, inserted=True)`` -> a Twin on a pty, no pcscd."""
    with contextlib.ExitStack() as stack:
        def make(profile: str = "visa_credit_sig", faults: tuple[str, ...] = (), *, echo: bool = True,
                 inserted: bool = True, seed: int = 0) -> TwinSim:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="posguard-twin-")))
            link = tmp / "ttyTwin"
            args = ["--link", str(link), "--profile", profile, "--seed", str(seed)]
            args += [a for f in faults for a in ("--fault", f)]
            if not echo:
                args.append("--no-echo")
            if not inserted:
                args.append("--removed")
            sim = SimProcess("twin_reader", args)
            stack.callback(sim.stop)
            sim.start()
            return TwinSim(sim, link)
        yield make
