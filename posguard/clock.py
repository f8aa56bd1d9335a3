"""Time sources for posguard.

Everything in posguard that reads the time or waits takes a :class:`Clock`. Production code uses
:class:`SystemClock`; tests use :class:`VirtualClock`, whose time moves only when a test (or a
``sleep`` inside the code under test) moves it, so timeouts, retry backoff and duplicate windows are
exercised deterministically and without real waiting.

>>> clock = VirtualClock(start=1_700_000_000.0)
>>> fired = []
>>> _ = clock.call_later(30.0, lambda: fired.append(clock.now()))
>>> clock.advance(29.0); fired
[]
>>> clock.sleep(1.0); fired
[1700000030.0]
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "Timer", "VirtualClock", "ClockError"]


class ClockError(ValueError):
    """A clock was asked to do something impossible (e.g. run time backwards)."""


@runtime_checkable
class Clock(Protocol):
    """The time source every time-dependent part of posguard takes."""

    def now(self) -> float:
        """Wall-clock time, seconds since the Unix epoch (for journals, slips, field 7/12/13)."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes backwards (for timeouts, deadlines and backoff)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; on a virtual clock this advances time instead."""
        ...


class SystemClock:
    """The real clock: :func:`time.time`, :func:`time.monotonic`, :func:`time.sleep`."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


@dataclass(order=True)
class Timer:
    """A callback scheduled on a :class:`VirtualClock`; ``cancel()`` stops it from firing."""

    due: float  # monotonic time at which it fires
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock whose time moves only on :meth:`advance` / :meth:`sleep` / :meth:`set`.

    ``now()`` and ``monotonic()`` move together; ``monotonic()`` starts at 0.0. Timers scheduled with
    :meth:`call_at` / :meth:`call_later` fire in due order, each seeing ``monotonic()`` equal to its due
    time, while time is advanced past them.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._epoch = float(start)
        self._mono = 0.0
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self.slept: list[float] = []  # every sleep() request, in order (tests assert backoff with it)

    # -- Clock protocol -------------------------------------------------------------------------
    def now(self) -> float:
        return self._epoch + self._mono

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ClockError(f"sleep({seconds}) is negative; pass 0 or more seconds")
        self.slept.append(seconds)
        self.advance(seconds)

    # -- test controls ---------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        if seconds < 0:
            raise ClockError(f"advance({seconds}) would run time backwards; virtual time only moves forward")
        with self._lock:
            target = self._mono + seconds
            while self._timers and self._timers[0].due <= target:
                timer = heapq.heappop(self._timers)
                if timer.cancelled:
                    continue
                self._mono = max(self._mono, timer.due)
                timer.callback()
            self._mono = max(self._mono, target)

    def set(self, epoch_seconds: float) -> None:
        """Jump the wall clock to ``epoch_seconds`` (must not be in the past)."""
        self.advance(epoch_seconds - self.now())

    def call_at(self, monotonic_due: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` when ``monotonic()`` reaches ``monotonic_due``."""
        with self._lock:
            timer = Timer(monotonic_due, next(self._seq), callback)
            heapq.heappush(self._timers, timer)
            return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` after ``delay`` virtual seconds."""
        return self.call_at(self._mono + delay, callback)

    def pending_timers(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now():.3f}, monotonic={self._mono:.3f})"
