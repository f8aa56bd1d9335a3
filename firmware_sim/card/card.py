"""The simulated card: ATR, power states, T=0 response shaping (61xx / 6Cxx / GET RESPONSE) and
card faults, around the :class:`~firmware_sim.card.applet.EmvApplet`.

``Card.process(apdu) -> Outcome`` is what transports call; ``Card.transmit(apdu) -> bytes`` is the
plain "APDU bytes in, response bytes out" convenience for direct use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from firmware_sim.card import profiles
from firmware_sim.card.apdu import (
    SW_CONDITIONS_NOT_SATISFIED,
    SW_OK,
    SW_WRONG_LENGTH,
    ApduFormatError,
    Command,
    sw_bytes,
)
from firmware_sim.card.applet import EmvApplet
from firmware_sim.faults import Fault, FaultPlan

INS_GET_RESPONSE = 0xC0
INS_READ_RECORD = 0xB2


class CardMute(Exception):
    """The card did not answer (``mute`` fault)."""


class CardPulled(Exception):
    """The card was pulled out during the command (``pull`` fault)."""


@dataclass(frozen=True)
class Outcome:
    """What the card does with one command: a response (None = no answer), after ``delay`` seconds."""

    response: bytes | None
    delay: float = 0.0
    pulled: bool = False


class Card:
    """An EMV card built from a profile; keeps its counters across power cycles."""

    def __init__(self, profile: str | profiles.Profile = "visa_credit_sig", *,
                 faults: list[Fault | str] | tuple[Fault | str, ...] = (), seed: int = 0,
                 plan: FaultPlan | None = None, **overrides: Any) -> None:
        if isinstance(profile, str):
            profile = profiles.get_profile(profile, **overrides)
        elif overrides:
            profile = {**profile, **overrides}
            profiles.validate(profile)
        self.profile = profile
        self.applet = EmvApplet(profile)
        self.faults = plan if plan is not None else FaultPlan(faults, seed)
        self.powered = False
        self._pending = b""
        self._pending_sw = SW_OK

    @property
    def name(self) -> str:
        return str(self.profile.get("name", "?"))

    @property
    def atr(self) -> bytes:
        return profiles.atr(self.profile)

    @property
    def t0(self) -> bool:
        """True when the card shapes answers the T=0 way (61xx, 6Cxx, GET RESPONSE)."""
        return bool(self.profile["t0_get_response"])

    def power_on(self) -> bytes:
        self.powered = True
        self._reset_volatile()
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._reset_volatile()

    def reset(self) -> bytes:
        return self.power_on()

    def _reset_volatile(self) -> None:
        self.applet.reset()
        self._pending, self._pending_sw = b"", SW_OK

    def process(self, apdu: bytes) -> Outcome:
        ins = apdu[1] if len(apdu) > 1 else None
        if self.faults.take("pull", ins):
            self.power_off()
            return Outcome(None, pulled=True)
        if self.faults.take("mute", ins):
            return Outcome(None)
        if self.faults.take("atc_replay", ins):
            self.applet.replay_atc_next = True
        delay_fault = self.faults.take("delay", ins)
        delay = delay_fault.number("seconds", 0.5) if delay_fault else 0.0
        return Outcome(self._respond(apdu), delay=delay)

    def transmit(self, apdu: bytes) -> bytes:
        """Response bytes for ``apdu``; sleeps for ``delay`` faults, raises for mute/pull faults."""
        outcome = self.process(apdu)
        if outcome.pulled:
            raise CardPulled(f"card {self.name} pulled during {apdu[:4].hex().upper()}")
        if outcome.response is None:
            raise CardMute(f"card {self.name} did not answer {apdu[:4].hex().upper()}")
        if outcome.delay:
            time.sleep(outcome.delay)
        return outcome.response

    def _respond(self, apdu: bytes) -> bytes:
        try:
            cmd = Command.parse(apdu)
        except ApduFormatError:
            return sw_bytes(SW_WRONG_LENGTH)
        if self.t0 and cmd.cla == 0x00 and cmd.ins == INS_GET_RESPONSE:
            return self._get_response(cmd)
        self._pending, self._pending_sw = b"", SW_OK
        data, sw = self.applet.process(cmd)
        data = self._maybe_corrupt(cmd, data, sw)
        sw_fault = self.faults.take("sw", cmd.ins)
        if sw_fault:
            return bytes.fromhex(sw_fault.params.get("sw", "6F00"))
        if not data or not self.t0:
            return data + sw_bytes(sw)
        if cmd.case in (3, 4):  # a T=0 card never sees Le for case 4: the data waits for GET RESPONSE
            self._pending, self._pending_sw = data, sw
            return bytes([0x61, len(data) & 0xFF])
        if cmd.le != len(data):  # case 1 or 2 with a wrong (or absent) Le
            return bytes([0x6C, len(data) & 0xFF])
        return data + sw_bytes(sw)

    def _get_response(self, cmd: Command) -> bytes:
        if not self._pending:
            return sw_bytes(SW_CONDITIONS_NOT_SATISFIED)
        available = len(self._pending)
        le = cmd.le if cmd.le is not None else 256
        if le > available:
            return bytes([0x6C, available & 0xFF])
        chunk, self._pending = self._pending[:le], self._pending[le:]
        if self._pending:
            return chunk + bytes([0x61, len(self._pending) & 0xFF])
        sw, self._pending_sw = self._pending_sw, SW_OK
        return chunk + sw_bytes(sw)

    def _maybe_corrupt(self, cmd: Command, data: bytes, sw: int) -> bytes:
        if cmd.ins != INS_READ_RECORD or sw != SW_OK or len(data) < 2:
            return data
        fault = self.faults.take("corrupt_tlv", cmd.ins)
        if fault is None:
            return data
        delta = int(fault.number("delta", 5))
        index = 1 if data[1] < 0x80 else 1 + (data[1] & 0x7F)
        corrupted = bytearray(data)
        corrupted[index] = (corrupted[index] + delta) & 0xFF
        return bytes(corrupted)

    def status(self) -> dict[str, Any]:
        return {
            "profile": self.name,
            "powered": self.powered,
            "atc": self.applet.memory.atc,
            "pin_tries": self.applet.memory.pin_tries,
            "atr": self.atr.hex().upper(),
            "faults": self.faults.describe(),
        }
