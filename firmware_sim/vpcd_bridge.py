"""Run a simulated card as a TCP client of vsmartcard-vpcd (the virtual reader inside pcscd).

Wire protocol (vpcd): every message is a 2-byte big-endian length then the payload. A 1-byte
payload is a control: 00 power off, 01 power on, 02 reset, 04 ATR request (answered with the ATR).
Longer payloads are command APDUs, answered with the response APDU. TCP_QUICKACK is set before
every recv(): without it Nagle + delayed ACK add ~44 ms per APDU.

    python -m firmware_sim.vpcd_bridge --port 35963 --profile visa_credit_sig

Control lines on stdin (answers on stdout, see :mod:`firmware_sim.control`):

    insert [PROFILE] [key=value ...]   connect (the reader sees a card 0.2-0.4 s later)
    remove                             close the connection (the reader shows empty)
    swap PROFILE [gap=0.5] [key=value] remove, wait ``gap`` s (> pcscd's 0.4 s poll), insert
    fault SPEC | clear | status | unplug | replug | quit

``unplug`` drops the connection and stops reconnecting until ``replug`` (vpcd itself stays in
pcscd, so for a client "unplugged" and "no card" look alike). While a card is inserted, a
connection lost because pcscd restarted is re-made automatically.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from firmware_sim import control
from firmware_sim.card import Card, get_profile
from firmware_sim.faults import FaultPlan
from firmware_sim.loop import EventLoop, serve_control
from firmware_sim.program import (
    add_common_options,
    add_fault,
    add_profile_options,
    parse_overrides,
    then_status,
)

CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET, CTRL_ATR = 0, 1, 2, 4
RECONNECT_INTERVAL = 0.05
DEFAULT_SWAP_GAP = 0.5
# pcscd polls vpcd every 0.4 s. After a disconnect in the middle of a command, pcscd marks the
# slot empty at once, but if a card connects again before the next poll, the poll sees "present"
# both times and pcscd never reports the new card. So no reconnect within this guard time.
REINSERT_GUARD = 0.5


class VpcdBridge:
    """One card slot of vpcd: connects while a card is inserted, answers vpcd's frames."""

    def __init__(self, card: Card, *, host: str = "127.0.0.1", port: int = 35963,
                 inserted: bool = True, plan: FaultPlan | None = None,
                 loop: EventLoop | None = None) -> None:
        self.card = card
        self.host, self.port = host, port
        self.plan = plan if plan is not None else card.faults
        self.card.faults = self.plan
        self.loop = loop or EventLoop()
        self.inserted = inserted
        self.unplugged = False
        self.sock: socket.socket | None = None
        self._buffer = b""
        self.apdus = 0
        self.last_event = "started"
        self._connect_after = 0.0
        self._awaiting_answer = False

    # -- connection ------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.call_later(0, self._maintain)

    def _maintain(self) -> None:
        """Keep the connection in the state the control commands asked for."""
        if self.inserted and not self.unplugged and self.sock is None:
            self._try_connect()
        self.loop.call_later(RECONNECT_INTERVAL, self._maintain)

    def _try_connect(self) -> None:
        if time.monotonic() < self._connect_after:
            return  # _maintain() retries every RECONNECT_INTERVAL
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(1.0)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            return
        sock.setblocking(True)
        self.sock = sock
        self._buffer = b""
        self.loop.add_reader(sock.fileno(), self._on_readable)
        self.last_event = "connected"

    def _disconnect(self, reason: str) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
            self._connect_after = time.monotonic() + REINSERT_GUARD
        self.card.power_off()
        if self._awaiting_answer and "mid-command" not in reason:
            reason += " mid-command"
        self._awaiting_answer = False
        self.last_event = reason

    # -- vpcd frames -----------------------------------------------------------------------
    def _on_readable(self) -> None:
        assert self.sock is not None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        try:
            chunk = self.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._disconnect("connection closed by vpcd")
            return
        self._buffer += chunk
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if len(self._buffer) < 2 + length:
                break
            payload, self._buffer = self._buffer[2 : 2 + length], self._buffer[2 + length :]
            self._on_frame(payload)
            if self.sock is None:
                return
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def _on_frame(self, payload: bytes) -> None:
        if len(payload) == 1:
            ctrl = payload[0]
            if ctrl == CTRL_POWER_OFF:
                self.card.power_off()
            elif ctrl in (CTRL_POWER_ON, CTRL_RESET):
                self.card.power_on()
            elif ctrl == CTRL_ATR:
                self._send(self.card.atr)
            return
        self.apdus += 1
        self._awaiting_answer = True
        outcome = self.card.process(payload)
        if outcome.pulled:
            self.inserted = False
            self._disconnect("card pulled mid-command")
            return
        if outcome.response is None:
            self.last_event = f"mute on {payload[:4].hex().upper()}"
            return
        response = outcome.response
        if outcome.delay:
            self.loop.call_later(outcome.delay, lambda: self._send(response))
        else:
            self._send(response)

    def _send(self, payload: bytes) -> None:
        if self.sock is None:
            return
        self._awaiting_answer = False
        try:
            self.sock.sendall(len(payload).to_bytes(2, "big") + payload)
        except OSError:
            self._disconnect("send failed")

    # -- control ---------------------------------------------------------------------------
    def insert(self, profile: str | None = None, **overrides: Any) -> None:
        if self.inserted and self.sock is not None and profile is None:
            return
        self._disconnect("removed")
        if profile is not None or overrides:
            self.card = Card(get_profile(profile or self.card.name, **overrides), plan=self.plan)
        self.inserted = True
        self._try_connect()

    def remove(self) -> None:
        self.inserted = False
        self._disconnect("removed")

    def swap(self, profile: str, gap: float = DEFAULT_SWAP_GAP, **overrides: Any) -> None:
        self.remove()
        self.loop.call_later(gap, lambda: self.insert(profile, **overrides))

    def unplug(self) -> None:
        self.unplugged = True
        self._disconnect("unplugged")

    def replug(self) -> None:
        self.unplugged = False

    def status(self) -> dict[str, Any]:
        return {
            **self.card.status(),
            "inserted": self.inserted,
            "connected": self.sock is not None,
            "unplugged": self.unplugged,
            "port": self.port,
            "apdus": self.apdus,
            "last_event": self.last_event,
        }

    def handlers(self) -> dict[str, control.Handler]:
        def insert(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            self.insert(args[0] if args else None, **parse_overrides(kw))
            return self.status()

        def swap(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            if not args:
                raise control.CommandError("swap needs a profile name")
            gap = float(kw.pop("gap", DEFAULT_SWAP_GAP))
            get_profile(args[0], **parse_overrides(kw))  # validate now: answer err on a bad profile
            self.swap(args[0], gap, **parse_overrides(kw))
            return {"profile": args[0], "gap": gap}

        def fault(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            add_fault(self.plan, args, kw, self.unplug)
            return {"faults": self.plan.describe()}

        def simple(action: Callable[[], object]) -> control.Handler:
            return then_status(action, self.status)

        return {
            "insert": insert, "swap": swap, "fault": fault,
            "remove": simple(self.remove), "unplug": simple(self.unplug), "replug": simple(self.replug),
            "clear": simple(self.plan.clear), "status": simple(lambda: None),
            "quit": simple(self.loop.stop),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.vpcd_bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=35963, help="vpcd port (slot 0; slot 1 is port+1)")
    parser.add_argument("--removed", action="store_true", help="start with no card inserted")
    add_profile_options(parser)
    add_common_options(parser)
    args = parser.parse_args(argv)
    try:
        plan = FaultPlan(args.fault, args.seed)
        card = Card(get_profile(args.profile, **parse_overrides(args.set)), plan=plan)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bridge = VpcdBridge(card, host=args.host, port=args.port, inserted=not args.removed, plan=plan)
    serve_control(bridge.loop, bridge.handlers())
    bridge.start()
    control.emit("ready", {"port": args.port, "profile": card.name, "atr": card.atr.hex().upper()})
    bridge.loop.run()
    bridge.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
