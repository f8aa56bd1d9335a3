"""Serial magnetic stripe reader on a pseudo-terminal: ISO 7813 tracks 1 and 2 per swipe.

    python -m firmware_sim.magstripe --link /tmp/ttyMag [--bcc]

Each swipe sends ``STX %B<PAN>^<NAME>^<YYMM><SVC><DD>? ;<PAN>=<YYMM><SVC><DD>? CR ETX`` (the
card's own track LRCs are not sent, like MagTek-style serial readers); with ``--bcc`` a BCC
follows ETX: the XOR of every byte after STX up to and including ETX.

Control lines on stdin: ``swipe [PROFILE] [mode=ok|partial|misread|track1|track2] [k=v]``
(``partial``: track 2 cut short, no end sentinel; ``misread``: ``%E?;E?``), ``fault SPEC``
(``delay``, ``noise``, ``unplug``), ``clear``, ``status``, ``unplug``, ``replug``, ``quit``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_sim import control
from firmware_sim.card import profiles
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

STX, ETX, CR = 0x02, 0x03, 0x0D
MODES = ("ok", "partial", "misread", "track1", "track2")


def track1(profile: profiles.Profile) -> str:
    """ISO 7813 track 1 with sentinels, e.g. ``%B4761739001010119^VISA TEST/CARDHOLDER^2812201...?``."""
    name = profile["cardholder_name"][:26]
    text = f"%B{profile['pan']}^{name}^{profile['expiry'][:4]}{profile['service_code']}"
    text += f"{profile['track_discretionary']}?"
    if len(text) > 79:
        raise ValueError(f"track 1 is {len(text)} characters, ISO 7813 allows 79")
    return text


def track2(profile: profiles.Profile) -> str:
    """ISO 7813 track 2 with sentinels, e.g. ``;4761739001010119=28122011000000000000?``."""
    text = ";" + profiles.track2_digits(profile).replace("D", "=") + "?"
    if len(text) > 40:
        raise ValueError(f"track 2 is {len(text)} characters, ISO 7813 allows 40")
    return text


def swipe_payload(profile: profiles.Profile, mode: str = "ok") -> str:
    """What the reader read from the stripe, before framing."""
    if mode not in MODES:
        raise ValueError(f"unknown swipe mode {mode!r}; known: {', '.join(MODES)}")
    t1, t2 = track1(profile), track2(profile)
    return {
        "ok": t1 + t2,
        "partial": t1 + t2[: len(t2) * 3 // 5],
        "misread": "%E?;E?",
        "track1": t1,
        "track2": t2,
    }[mode]


def frame(payload: str, *, bcc: bool = False) -> bytes:
    body = payload.encode("ascii") + bytes([CR, ETX])
    out = bytes([STX]) + body
    if bcc:
        check = 0
        for byte in body:
            check ^= byte
        out += bytes([check])
    return out


class MagstripeReader:
    def __init__(self, port: PtyPort, profile: str = "visa_credit_sig", *, bcc: bool = False,
                 plan: FaultPlan | None = None, loop: EventLoop | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self.port = port
        self.profile_name = profile
        self.overrides = overrides or {}
        self.bcc = bcc
        self.plan = plan or FaultPlan()
        self.loop = loop or EventLoop()
        self.swipes = 0
        self.unplugged = False

    def plug(self) -> None:
        self.port.plug()
        self.loop.add_reader(self.port.master, self._drain)
        self.unplugged = False

    def _drain(self) -> None:
        """Host writes are read and ignored."""
        self.port.read()

    def unplug(self) -> None:
        if self.port.open:
            self.loop.remove_reader(self.port.master)
        self.port.unplug()
        self.unplugged = True

    def swipe(self, profile: str | None = None, mode: str = "ok", **overrides: Any) -> bytes:
        """Frame a swipe and send it (after a ``delay`` fault, through ``noise``); returns the frame."""
        if profile is None:
            overrides = {**self.overrides, **overrides}
        card = profiles.get_profile(profile or self.profile_name, **overrides)
        data = frame(swipe_payload(card, mode), bcc=self.bcc)
        self.swipes += 1
        delay_fault = self.plan.take("delay")
        wire = self.plan.noisy(data)
        if delay_fault:
            self.loop.call_later(delay_fault.number("seconds", 0.5), lambda: self.port.write(wire))
        else:
            self.port.write(wire)
        return data

    def status(self) -> dict[str, Any]:
        return {"link": str(self.port.link), "tty": self.port.slave_name, "bcc": self.bcc,
                "profile": self.profile_name, "swipes": self.swipes, "unplugged": self.unplugged,
                "faults": self.plan.describe()}

    def handlers(self) -> dict[str, control.Handler]:
        def swipe(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            mode = kw.pop("mode", "ok")
            data = self.swipe(args[0] if args else None, mode, **parse_overrides(kw))
            return {"frame": data.hex().upper(), "mode": mode}

        def fault(args: list[str], kw: dict[str, str]) -> dict[str, Any]:
            add_fault(self.plan, args, kw, self.unplug)
            return self.status()

        def simple(action: Callable[[], object]) -> control.Handler:
            return then_status(action, self.status)

        return {"swipe": swipe, "fault": fault, "unplug": simple(self.unplug), "replug": simple(self.plug),
                "clear": simple(self.plan.clear), "status": simple(lambda: None),
                "quit": simple(self.loop.stop)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.magstripe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", type=Path, default=None, help="symlink to publish")
    parser.add_argument("--bcc", action="store_true", help="append a BCC after ETX")
    add_profile_options(parser)
    add_common_options(parser)
    args = parser.parse_args(argv)
    try:
        profiles.get_profile(args.profile, **parse_overrides(args.set))
        plan = FaultPlan(args.fault, args.seed)
        port = PtyPort(args.link or default_link("mag"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reader = MagstripeReader(port, args.profile, bcc=args.bcc, plan=plan,
                             overrides=parse_overrides(args.set))
    reader.plug()
    serve_control(reader.loop, reader.handlers())
    control.emit("ready", {"link": str(port.link), "tty": port.slave_name, "profile": args.profile})
    try:
        reader.loop.run()
    finally:
        reader.unplug()
    return 0


if __name__ == "__main__":
    sys.exit(main())
