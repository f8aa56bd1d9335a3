"""Faults on demand, declared as data and fired deterministically (seeded RNG, counted events).

A fault is written ``KIND key=value ...``, e.g. ``sw sw=6F00 ins=B2 after=1 times=2``:

- ``after=N``  let N matching events pass first (default 0),
- ``times=N``  fire N times, then retire (default 1; ``times=0`` fires until cleared),
- ``ins=XX``   card faults only: match commands with this INS (hex).

Kinds, and which simulator honours them:

==============  ===========================================================  ===============
kind            effect                                                       simulators
==============  ===========================================================  ===============
pull            card pulled mid-command: no answer, card gone                card transports
mute            card never answers the command (``timeout=`` for the Twin)   card transports
sw              answer the command with status word ``sw=6F00``, no data      card
corrupt_tlv     READ RECORD answer with the 70 length off by ``delta=+5``     card
atc_replay      the next first GENERATE AC reuses the last ATC (``ins=AE``)  card
delay           answer ``seconds=0.5`` later                                 all
unplug          reader gone: vpcd connection dropped / pty closed            all
noise           on the reader's output: ``flip= drop= dup= garbage=``         serial readers
                (probabilities 0..1: flip one bit of a byte, drop a byte,
                duplicate a byte, insert 1-8 random bytes before a frame)
==============  ===========================================================  ===============
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

KINDS = ("pull", "mute", "sw", "corrupt_tlv", "atc_replay", "delay", "unplug", "noise")


class FaultSpecError(ValueError):
    """A fault specification cannot be understood."""


@dataclass
class Fault:
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    after: int = 0
    times: int = 1
    ins: int | None = None
    seen: int = 0
    fired: int = 0

    @classmethod
    def parse(cls, text: str) -> Fault:
        words = text.split()
        if not words:
            raise FaultSpecError("empty fault specification")
        kind, params = words[0], {}
        if kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        for word in words[1:]:
            key, sep, value = word.partition("=")
            if not sep:
                raise FaultSpecError(f"fault parameter {word!r} must be key=value")
            params[key] = value
        try:
            after = int(params.pop("after", "0"))
            times = int(params.pop("times", "1"))
            ins = int(params.pop("ins"), 16) if "ins" in params else None
        except ValueError as exc:
            raise FaultSpecError(f"bad number in fault {text!r}: {exc}") from None
        return cls(kind, params, after=after, times=times, ins=ins)

    def to_text(self) -> str:
        parts = [self.kind, *(f"{k}={v}" for k, v in self.params.items())]
        if self.ins is not None:
            parts.append(f"ins={self.ins:02X}")
        parts += [f"after={self.after}", f"times={self.times}"]
        return " ".join(parts)

    @property
    def active(self) -> bool:
        return self.times == 0 or self.fired < self.times

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.params.get(key, default))
        except ValueError:
            raise FaultSpecError(f"fault {self.kind}: {key} must be a number") from None


class FaultPlan:
    """The faults of one simulator. ``take(kind)`` counts one event and says whether it fires."""

    def __init__(self, faults: list[Fault | str] | tuple[Fault | str, ...] = (), seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.faults: list[Fault] = []
        for f in faults:
            self.add(f)

    def add(self, fault: Fault | str) -> Fault:
        parsed = Fault.parse(fault) if isinstance(fault, str) else fault
        self.faults.append(parsed)
        return parsed

    def clear(self) -> None:
        self.faults.clear()

    def take(self, kind: str, ins: int | None = None) -> Fault | None:
        """The first active fault of ``kind`` (matching ``ins``) that fires on this event, if any."""
        for fault in self.faults:
            if fault.kind != kind or not fault.active:
                continue
            if fault.ins is not None and fault.ins != ins:  # an INS filter never matches reader events
                continue
            fault.seen += 1
            if fault.seen <= fault.after:
                continue
            fault.fired += 1
            return fault
        return None

    def describe(self) -> list[str]:
        return [f"{f.to_text()} fired={f.fired}" for f in self.faults]

    def noisy(self, frame: bytes) -> bytes:
        """``frame`` as it arrives at the host when a ``noise`` fault is active."""
        fault = self.take("noise")
        if fault is None:
            return frame
        flip, drop = fault.number("flip", 0.0), fault.number("drop", 0.0)
        dup, garbage = fault.number("dup", 0.0), fault.number("garbage", 0.0)
        rng = self.rng
        out = bytearray()
        if rng.random() < garbage:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        for byte in frame:
            if rng.random() < drop:
                continue
            if rng.random() < flip:
                byte ^= 1 << rng.randrange(8)
            out.append(byte)
            if rng.random() < dup:
                out.append(byte)
        return bytes(out)
