"""The service's card reader: opened lazily, reopened when it appears, and able to say where it stands.

A reader missing at start (the Twin's serial port not created yet, pcscd not running or its reader not plugged
in) is not the end of the day: :meth:`ReaderSlot.poll`, called by the service's acting thread whenever it is
idle, tries again — the serial port's path is looked at every poll (a ``stat``) and opened once it exists;
PC/SC is asked whether the configured reader is listed. A failed open backs off (0.25 s doubling to 5 s) so a
reader that answers badly is not hammered. A reader lost in use (unplugged, pcscd gone) goes back to waiting.

:meth:`ReaderSlot.state` is what ``status`` shows: ``open``, ``none`` (``reader.kind = "none"``) or
``waiting for /dev/ttyUSB0 since 2026-11-30T18:50:02Z (last: ...)``. Every change is a log event:
``reader.waiting`` (warning), ``reader.open`` (info), ``reader.lost`` (warning).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from posguard.logs import event
from posguard.sensitive import scrub

__all__ = ["ReaderSlot", "BACKOFF_MIN_S", "BACKOFF_MAX_S"]

BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0
_log = logging.getLogger("posguard.reader")


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class ReaderSlot:
    """``kind`` is ``pcsc``, ``twin`` or ``none``; ``on_open(reader)`` runs when a reader is (re)opened."""

    def __init__(self, kind: str, *, name: str = "", serial_port: str = "",
                 on_open: Callable[[Any], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.kind, self.name, self.serial_port = kind, name, serial_port
        self.on_open = on_open
        self._clock, self._wall = clock, wall
        self.reader: Any = None
        self.since: float | None = None  # wall time the wait started
        self.last_error = ""
        self.opened = 0  # how many times a reader was opened (1 at start, more after hot-plugs)
        self._delay = BACKOFF_MIN_S
        self._next = 0.0

    @property
    def target(self) -> str:
        if self.kind == "twin":
            return self.serial_port
        return f"PC/SC reader {self.name!r}" if self.name else "a PC/SC reader"

    def state(self) -> str:
        if self.kind == "none":
            return "none"
        if self.reader is not None:
            return "open"
        since = _utc(self.since) if self.since is not None else "start"
        last = f" (last: {self.last_error})" if self.last_error else ""
        return f"waiting for {self.target} since {since}{last}"

    # -- opening ------------------------------------------------------------------------------------------
    def poll(self, *, force: bool = False) -> Any:
        """The reader, opening it if it is due (``force``: now, whatever the backoff says); None if missing."""
        if self.kind == "none" or self.reader is not None:
            return self.reader
        now = self._clock()
        if not force and now < self._next:
            return None
        if self.since is None:
            self.since = self._wall()
        if self.kind == "twin" and not os.path.exists(self.serial_port):
            self._missing(f"{self.serial_port} does not exist", backoff=False)
            return None
        try:
            reader = self._open()
        except Exception as exc:  # noqa: BLE001 - any failure to open is "still waiting", said once
            self._missing(scrub(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"), backoff=True)
            return None
        if reader is None:
            self._missing(f"{self.target} not listed by pcscd", backoff=True)
            return None
        waited = self._wall() - self.since
        self.reader, self.since, self.last_error = reader, None, ""
        self._delay = BACKOFF_MIN_S
        self.opened += 1
        event(_log, "reader.open", f"{getattr(reader, 'name', self.target)} open"
              + (f" after waiting {waited:.1f} s" if self.opened > 1 or waited >= 1 else ""),
              reader=getattr(reader, "name", self.target), waited_s=round(waited, 3))
        if self.on_open is not None:
            self.on_open(reader)
        return reader

    def _open(self) -> Any:
        if self.kind == "twin":
            from posguard.drivers.twin.reader import TwinReader

            return TwinReader(self.serial_port)
        from posguard.drivers.pcsc import PcscReader

        reader = PcscReader(self.name or None)
        if not reader.connected():
            reader.close()
            return None
        return reader

    def _missing(self, why: str, *, backoff: bool) -> None:
        if why != self.last_error:  # said once per reason, not once per poll
            event(_log, "reader.waiting", f"waiting for {self.target}: {why}", level=logging.WARNING,
                  target=self.target, reason=why)
        self.last_error = why
        if backoff:
            self._next = self._clock() + self._delay
            self._delay = min(self._delay * 2, BACKOFF_MAX_S)
        else:
            self._next = self._clock() + BACKOFF_MIN_S

    # -- losing it ----------------------------------------------------------------------------------------
    def lost(self, why: str) -> None:
        """The reader went away in use: close it and wait for it again."""
        if self.reader is None:
            return
        reader, self.reader = self.reader, None
        try:
            reader.close()
        except Exception:  # noqa: BLE001, S110 - closing a vanished reader may fail any way
            pass
        self.since, self.last_error = self._wall(), scrub(why)
        self._delay, self._next = BACKOFF_MIN_S, self._clock() + BACKOFF_MIN_S
        event(_log, "reader.lost", f"{self.target} lost: {self.last_error}; waiting for it to return",
              level=logging.WARNING, target=self.target, reason=self.last_error)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
