"""systemd's readiness protocol (``sd_notify``) in a few lines of socket code, and the watchdog.

Under a ``Type=notify`` unit systemd passes ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)
and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``). The service says ``READY=1`` once it
serves operators, ``STOPPING=1`` when it begins to stop, ``STATUS=...`` for ``systemctl status``, and
``WATCHDOG=1`` every half watchdog period for as long as its acting thread shows signs of life
(:class:`Heartbeat`): a thread stuck for longer than its longest command lets the watchdog expire, and systemd
restarts the service. Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Heartbeat", "Notifier", "Watchdog"]


class Notifier:
    """Datagrams to systemd's notification socket; does nothing when there is none. Never raises: the terminal
    keeps working if the supervisor cannot be told."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.failed: str | None = None  # the last send error, for the log

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """The notifier systemd asked for; ``unset`` removes ``NOTIFY_SOCKET`` from this process's environment so
        that nothing it starts speaks for it."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if unset and environ is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: object) -> bool:
        """One message: ``send(READY=1, STATUS="serving")`` -> ``READY=1\\nSTATUS=serving``."""
        if self.address is None:
            return False
        text = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall(text.encode())
        except OSError as exc:
            self.failed = f"{type(exc).__name__}: {exc.strerror or exc}"
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(READY=1, STATUS=status) if status else self.send(READY=1)

    def stopping(self, status: str = "") -> bool:
        return self.send(STOPPING=1, STATUS=status) if status else self.send(STOPPING=1)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` messages (half of ``$WATCHDOG_USEC``), or None when no watchdog is asked for
    this process (``$WATCHDOG_PID`` names another one, or the value is not a positive integer)."""
    env = os.environ if environ is None else environ
    pid, usec = env.get("WATCHDOG_PID"), env.get("WATCHDOG_USEC")
    if pid and pid != str(os.getpid()):
        return None
    try:
        micros = int(usec or "0")
    except ValueError:
        return None
    return micros / 2e6 if micros > 0 else None


class Heartbeat:
    """The acting thread calls :meth:`beat` as it goes; :meth:`alive` is whether it did within ``limit`` seconds."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self._clock = limit, clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def alive(self) -> bool:
        return self._clock() - self._last < self.limit


class Watchdog:
    """A daemon thread that sends ``WATCHDOG=1`` every ``interval`` seconds while ``alive()`` holds."""

    def __init__(self, notifier: Notifier, interval: float, alive: Callable[[], bool]) -> None:
        self.notifier, self.interval, self.alive = notifier, interval, alive
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.alive():
                self.notifier.send(WATCHDOG=1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval + 1.0)
