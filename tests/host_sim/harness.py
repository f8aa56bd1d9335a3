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
from posguard.engine.hostlink import (
    HostLinkConfig,
    LinkEvent,
    LinkEventKind,
    LinkStats,
    TcpHostLink,
    VirtualWaiter,
)
from posguard.engine.keys import KeyError_, TerminalMasterKey, parse_cup_keys
from posguard.engine.mac import MacAlgorithm, MacScheme
from posguard.engine.signon import sign_on_message
from posguard.iso8583.message import Message


def keyed(terminal: TerminalConfig, tmk: str = TEST_TMK) -> TerminalConfig:
    """``terminal`` with the test master key the simulator knows by default: an engine built with it signs on
    for working keys before its first message and MACs what needs a MAC, like a real terminal (the simulator's
    strict default refuses anything less)."""
    return replace(terminal, tmk=TerminalMasterKey(bytes.fromhex(tmk)))


TID, MID = "TERM0001", "123456789012345"


class TerminalKeys:
    """The harness's part of a terminal with the test TMK: every approved sign-on answer the link sees (the
    harness's own, a test's, an engine's) puts its MAC key into the link, as a terminal's key store does. An
    engine built with :func:`keyed` does the same itself; one without a TMK relies on this."""

    def __init__(self, link: TcpHostLink, tmk: str = TEST_TMK) -> None:
        self.link = link
        self.tmk = TerminalMasterKey(bytes.fromhex(tmk))
        cup_style = "70" not in link.dialect.fields  # network management in 60.3, keys in 62 (CUP)
        self.keys_field = "62" if cup_style else "48"
        self.algorithm: MacAlgorithm = "cup-ecb" if cup_style else "x919"

    def __call__(self, event: LinkEvent) -> None:
        msg = event.message
        if event.kind != LinkEventKind.RESPONSE or msg is None or msg.mti != "0810" or msg.response_code != "00":
            return
        raw = msg.get(self.keys_field)
        if raw is None:
            return
        try:
            keys = parse_cup_keys(raw if isinstance(raw, bytes) else bytes.fromhex(raw), self.tmk)
        except (KeyError_, ValueError):
            return  # keys that do not check are not used (the engine's own check reports them)
        self.link.use_mac_key(MacScheme(self.algorithm, keys.mac))


def sign_on(link: TcpHostLink, *, tid: str = TID, mid: str = MID, stan: int = 999_999) -> Message:
    """An 0800 sign-on on ``link`` (the keys of the answer reach the link through :class:`TerminalKeys`)."""
    return link.exchange(sign_on_message(link.dialect, stan=stan, tid=tid, mid=mid, when=link.clock.now()))


@contextmanager
def linked(
    *,
    dialect: str = "cup",
    framing: str = "binary2",
    sim_config: dict[str, Any] | None = None,
    link_config: dict[str, Any] | None = None,
    signed_on: bool = True,
) -> Iterator[tuple[HostSimulator, TcpHostLink, VirtualClock, list[LinkEvent]]]:
    """A simulator and a link on one virtual clock. Like a real terminal the link is signed on (terminal
    ``TERM0001``, the test TMK) before the test starts, when the simulator is strict (its default), uses no
    static MAC key and ``signed_on`` is true; the sign-on is then cleared from ``sim.received``/``sim.sent`` and
    the events and the ledger, and its connection closed."""
    clock = VirtualClock(start=1_700_000_000.0)
    config = SimConfig(dialect=dialect, framing=framing, **(sim_config or {}))
    events: list[LinkEvent] = []
    with HostSimulator(config, scheduler=clock) as sim:
        link_cfg = replace(HostLinkConfig("127.0.0.1", sim.port, dialect=dialect, framing=framing),
                           **(link_config or {}))
        holder: dict[str, TcpHostLink] = {}
        before = {"frames": 0}  # frames of the harness's own sign-on, not counted in the test's link stats
        waiter = VirtualWaiter(clock, settled=lambda: sim.frames_handled - before["frames"]
                               >= holder["link"].stats.frames_sent)
        link = TcpHostLink(link_cfg, clock=clock, waiter=waiter, listeners=[events.append])
        link.add_listener(TerminalKeys(link))
        holder["link"] = link
        if signed_on and config.security == "strict" and not config.mac_key:  # a static-key host: no sign-on keys
            sign_on(link)
            link.close()  # a fresh connection for the test (the keys stay with the link)
            before["frames"] = link.stats.frames_sent
            link.stats = LinkStats()
            sim.ledger.reset()  # the books start empty, as the tests expect (the keys stay issued)
            sim.received.clear()
            sim.sent.clear()
            events.clear()
        try:
            yield sim, link, clock, events
        finally:
            link.close()
