"""A tiny single-threaded select() loop: file descriptor callbacks and timers.

Simulators run one loop each, so a slow or mute answer never blocks the control channel.
"""

from __future__ import annotations

import heapq
import itertools
import select
import time
from collections.abc import Callable
from typing import Any


class EventLoop:
    def __init__(self) -> None:
        self._readers: dict[int, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._ids = itertools.count()
        self.running = False

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self._readers.pop(fd, None)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._ids), callback))

    def cancel_timers(self) -> None:
        self._timers.clear()

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        while self.running:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, callback = heapq.heappop(self._timers)
                callback()
                if not self.running:
                    return
            timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else 1.0
            fds = list(self._readers)
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):  # a descriptor was closed under us: drop the dead ones
                for fd in fds:
                    try:
                        select.select([fd], [], [], 0)
                    except (OSError, ValueError):
                        self.remove_reader(fd)
                continue
            for fd in ready:
                reader = self._readers.get(fd)
                if reader is not None:
                    reader()
                if not self.running:
                    return


def serve_control(loop: EventLoop, handlers: dict[str, Any]) -> None:
    """Dispatch control lines from standard input to ``handlers``; stop ``loop`` when the parent goes away."""
    from firmware_sim.control import ControlChannel

    channel = ControlChannel(handlers)

    def on_control() -> None:
        channel.on_readable()
        if channel.closed:  # our parent went away: leave quietly
            loop.stop()

    loop.add_reader(channel.fd, on_control)
