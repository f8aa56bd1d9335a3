"""GemPC Twin serial reader firmware on a pseudo-terminal, for pcscd's ``libccidtwin`` driver.

    python -m firmware_sim.twin_reader --link /tmp/ttyTwin --profile visa_credit_sig

The host (libccidtwin) writes ``03 06 <CCID message> LRC``; like the real reader, this one
echoes every frame before answering (``--no-echo`` turns it off; libccidtwin's "GemPCTwin"
mode then misreads the answer as the echo). The driver's first frames are Escape 02 (firmware
version, 2 s timeout), Escape 01 01 01 (synchronous card movement notification) and
GetSlotStatus; then IccPowerOn, SetParameters and XfrBlock. The Twin exchanges TPDUs: T=0
commands go to the card as they are, T=1 blocks go through :mod:`firmware_sim.t1`.
Card movements are notified (``50 03`` / ``50 02``) after the echo of the next host frame.

Control lines on stdin: ``insert [PROFILE] [k=v]``, ``remove``, ``swap PROFILE [k=v]``,
``fault SPEC``, ``clear``, ``status``, ``unplug`` (pty closed, link removed), ``replug``, ``quit``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_sim import ccid, control
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
from firmware_sim.pty_port import PtyPort, default_link
from firmware_sim.t1 import T1Session

FIRMWARE = b"GemPC Twin (posguard sim) V1.00"
DEFAULT_T0_PARAMS = bytes([0x11, 0x00, 0x00, 0x0A, 0x00])
DEFAULT_MUTE_TIMEOUT = 1.0


class TwinReader:
    """The reader's firmware: CCID command handling for one slot, card movements, faults."""

    def __init__(self, port: PtyPort, card: Card | None, *, echo: bool = True,
                 plan: FaultPlan | None = None, loop: EventLoop | None = None) -> None:
        self.port = port
        self.card = card
        self.echo = echo
        self.plan = plan if plan is not None else (card.faults if card else FaultPlan())
        if card is not None:
            card.faults = self.plan
        self.loop = loop or EventLoop()
        self.decoder = ccid.FrameDecoder()
        self.pending_notifications: list[bytes] = []
        self.parameters = DEFAULT_T0_PARAMS
        self.protocol = 0
        self.t1: T1Session | None = None
        self.last_answer = b""
        self.counts: dict[str, int] = {}
        self.unplugged = False

    # -- port --------------------------------------------------------------------------------
    def plug(self) -> None:
        self.port.plug()
        self.decoder = ccid.FrameDecoder()
        self.loop.add_reader(self.port.master, self._on_readable)
        self.unplugged = False

    def unplug(self) -> None:
        if self.port.open:
            self.loop.remove_reader(self.port.master)
        self.port.unplug()
        self.unplugged = True

    def _on_readable(self) -> None:
        data = self.port.read()
        for received in self.decoder.feed(data):
            self._on_frame(received)

    def _write(self, data: bytes) -> None:
        self.port.write(self.plan.noisy(data))

    # -- frames ------------------------------------------------------------------------------
    def _on_frame(self, received: ccid.Received) -> None:
        if self.echo:
            self._write(received.raw)
        if received.nak:  # the host asks for the last answer again
            self._write(self.last_answer)
            return
        if received.bad_lrc or received.message is None:
            self._write(ccid.NAK_FRAME)
            return
        for note in self.pending_notifications:
            self._write(note)
        self.pending_notifications.clear()
        msg = received.message
        self.counts[msg.name] = self.counts.get(msg.name, 0) + 1
        answer, delay = self.handle(msg)
        if answer is None:
            return
        framed = ccid.frame(answer)
        delay_fault = self.plan.take("delay") if msg.type != 0x6F else None
        delay += delay_fault.number("seconds", 0.5) if delay_fault else 0.0
        if delay:
            self.loop.call_later(delay, lambda: self._send_answer(framed))
        else:
            self._send_answer(framed)

    def _send_answer(self, framed: bytes) -> None:
        self.last_answer = framed
        self._write(framed)

    @property
    def icc(self) -> int:
        if self.card is None:
            return ccid.ICC_ABSENT
        return ccid.ICC_ACTIVE if self.card.powered else ccid.ICC_INACTIVE

    def handle(self, msg: ccid.Message) -> tuple[bytes | None, float]:
        """The RDR_to_PC answer to ``msg`` (None: no answer) and how long to wait before it."""
        kind = msg.type
        if kind == 0x6B:  # Escape
            data = FIRMWARE if msg.data[:1] == b"\x02" else b""
            return ccid.rdr_message(ccid.RDR_ESCAPE, msg, icc=self.icc, data=data), 0.0
        if kind == 0x65:  # GetSlotStatus
            return ccid.rdr_message(ccid.RDR_SLOT_STATUS, msg, icc=self.icc), 0.0
        if kind == 0x62:  # IccPowerOn
            if self.card is None:
                return self._no_card(ccid.RDR_DATA_BLOCK, msg), 0.0
            atr = self.card.power_on()
            self.parameters, self.protocol, self.t1 = DEFAULT_T0_PARAMS, 0, None
            return ccid.rdr_message(ccid.RDR_DATA_BLOCK, msg, icc=self.icc, data=atr), 0.0
        if kind == 0x63:  # IccPowerOff
            if self.card is not None:
                self.card.power_off()
            return ccid.rdr_message(ccid.RDR_SLOT_STATUS, msg, icc=self.icc), 0.0
        if kind in (0x61, 0x6C, 0x6D):  # Set / Get / ResetParameters
            if self.card is None:
                return self._no_card(ccid.RDR_PARAMETERS, msg), 0.0
            if kind == 0x61:
                self.parameters, self.protocol = msg.data, msg.specific[0]
            elif kind == 0x6D:
                self.parameters, self.protocol = DEFAULT_T0_PARAMS, 0
            card = self.card
            self.t1 = T1Session(card.process) if self.protocol == 1 else None
            return ccid.rdr_message(ccid.RDR_PARAMETERS, msg, icc=self.icc, specific=self.protocol,
                                    data=self.parameters), 0.0
        if kind == 0x6F:
            return self._xfr_block(msg)
        if kind == 0x73:  # SetDataRateAndClockFrequency: accept, echo the values
            return ccid.rdr_message(ccid.RDR_RATE_CLOCK, msg, icc=self.icc, data=msg.data[:8]), 0.0
        if kind in (0x6E, 0x71, 0x72):  # IccClock, Mechanical, Abort
            return ccid.rdr_message(ccid.RDR_SLOT_STATUS, msg, icc=self.icc), 0.0
        return ccid.rdr_message(ccid.RDR_SLOT_STATUS, msg, icc=self.icc, failed=True,
                                error=ccid.ERR_CMD_NOT_SUPPORTED), 0.0

    def _no_card(self, kind: int, msg: ccid.Message) -> bytes:
        return ccid.rdr_message(kind, msg, icc=self.icc, failed=True, error=ccid.ERR_ICC_MUTE)

    def _xfr_block(self, msg: ccid.Message) -> tuple[bytes | None, float]:
        if self.card is None or not self.card.powered:
            return self._no_card(ccid.RDR_DATA_BLOCK, msg), 0.0
        outcome = self.t1.on_block(msg.data) if self.t1 else self.card.process(msg.data)
        if outcome.pulled:
            self.card = None
            self._write(ccid.notification(False))
            return self._no_card(ccid.RDR_DATA_BLOCK, msg), 0.0
        if outcome.response is None:  # mute card: the reader gives up after its own timeout
            fault_timeout = DEFAULT_MUTE_TIMEOUT
            for fault in self.plan.faults:
                if fault.kind == "mute":
                    fault_timeout = fault.number("timeout", DEFAULT_MUTE_TIMEOUT)
            return self._no_card(ccid.RDR_DATA_BLOCK, msg), fault_timeout
        return ccid.rdr_message(ccid.RDR_DATA_BLOCK, msg, icc=self.icc, data=outcome.response), outcome.delay

    # -- card movements ----------------------------------------------------------------------
    def insert(self, profile: str | None = None, **overrides: Any) -> None:
        name = profile or (self.card.name if self.card else "visa_credit_sig")
        self.card = Card(get_profile(name, **overrides), plan=self.plan)
        self.pending_notifications.append(ccid.notification(True))

    def remove(self) -> None:
        if self.card is not None:
            self.card = None
            self.pending_notifications.append(ccid.notification(False))

    def status(self) -> dict[str, Any]:
        card = self.card.status() if self.card else {"profile": None}
        return {**card, "present": self.card is not None, "link": str(self.port.link),
                "tty": self.port.slave_name, "unplugged": self.unplugged, "echo": self.echo,
                "commands": dict(self.counts), "skipped_bytes": self.decoder.skipped,
                "faults": self.plan.describe()}

    def handlers(self) -> dict[str, control.Handler]:
        def insert(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            self.insert(args[0] if args else None, **parse_overrides(kw))
            return self.status()

        def swap(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            if not args:
                raise control.CommandError("swap needs a profile name")
            self.remove()
            self.insert(args[0], **parse_overrides(kw))
            return self.status()

        def fault(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            add_fault(self.plan, args, kw, self.unplug)
            return self.status()

        def simple(action: Callable[[], object]) -> control.Handler:
            return then_status(action, self.status)

        return {
            "insert": insert, "swap": swap, "fault": fault, "remove": simple(self.remove),
            "unplug": simple(self.unplug), "replug": simple(self.plug), "clear": simple(self.plan.clear),
            "status": simple(lambda: None), "quit": simple(self.loop.stop),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.twin_reader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", type=Path, default=None, help="symlink to publish (no ':' in it)")
    parser.add_argument("--no-echo", action="store_true", help="do not echo host frames")
    parser.add_argument("--removed", action="store_true", help="start with no card in the slot")
    add_profile_options(parser)
    add_common_options(parser)
    args = parser.parse_args(argv)
    try:
        plan = FaultPlan(args.fault, args.seed)
        card = None if args.removed else Card(get_profile(args.profile, **parse_overrides(args.set)), plan=plan)
        port = PtyPort(args.link or default_link("twin"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reader = TwinReader(port, card, echo=not args.no_echo, plan=plan)
    reader.plug()
    serve_control(reader.loop, reader.handlers())
    control.emit("ready", {"link": str(port.link), "tty": port.slave_name,
                           "profile": card.name if card else None})
    try:
        reader.loop.run()
    finally:
        reader.unplug()
    return 0


if __name__ == "__main__":
    sys.exit(main())
