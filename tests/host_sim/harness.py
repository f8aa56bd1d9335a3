"""Wiring posguard's host link to an in-process simulator on a shared virtual clock (used by engine tests).

The simulator's delayed responses are timers on the same ``VirtualClock`` the link reads its deadlines
from, and the link's :class:`VirtualWaiter` advances that clock only once the simulator has handled every
frame the link sent. Result: timeouts of 15/30 virtual seconds in milliseconds, with no race.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.host.keys import TEST_TMK
from posguard.clock import VirtualClock
from posguard.engine.engine import TerminalConfig
from posguard.engine.hostlink import HostLinkConfig, LinkEvent, TcpHostLink, VirtualWaiter
from posguard.engine.keys import TerminalMasterKey


def keyed(terminal: TerminalConfig, tmk: str = TEST_TMK) -> TerminalConfig:
    """``terminal`` with the test master key the simulator knows by default: an engine built with it signs on
    for working keys before its first message and MACs what needs a MAC, like a real terminal (the simulator's
    strict default refuses anything less)."""
    return replace(terminal, tmk=TerminalMasterKey(bytes.fromhex(tmk)))


@contextmanager
def linked(
    *,
    dialect: str = "cup",
    framing: str = "binary2",
    sim_config: dict[str, Any] | None = None,
    link_config: dict[str, Any] | None = None,
) -> Iterator[tuple[HostSimulator, TcpHostLink, VirtualClock, list[LinkEvent]]]:
    clock = VirtualClock(start=1_700_000_000.0)
    config = SimConfig(dialect=dialect, framing=framing, **(sim_config or {}))
    events: list[LinkEvent] = []
    with HostSimulator(config, scheduler=clock) as sim:
        link_cfg = replace(HostLinkConfig("127.0.0.1", sim.port, dialect=dialect, framing=framing),
                           **(link_config or {}))
        holder: dict[str, TcpHostLink] = {}
        waiter = VirtualWaiter(clock, settled=lambda: sim.frames_handled >= holder["link"].stats.frames_sent)
        link = TcpHostLink(link_cfg, clock=clock, waiter=waiter, listeners=[events.append])
        holder["link"] = link
        try:
            yield sim, link, clock, events
        finally:
            link.close()
