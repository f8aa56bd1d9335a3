"""Run a blocking call in a worker thread with a deadline, so a hung reader cannot hang a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    thread: threading.Thread
    started: float
    result: Any = None
    error: BaseException | None = None
    ended: float | None = None

    def wait(self, timeout: float) -> bool:
        """True when the call ended within ``timeout`` seconds."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def start(fn: Callable[[], Any]) -> Call:
    call = Call(threading.Thread(target=lambda: None, daemon=True), time.monotonic())

    def run() -> None:
        try:
            call.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            call.error = exc
        finally:
            call.ended = time.monotonic()

    call.thread = threading.Thread(target=run, daemon=True)
    call.thread.start()
    return call
