"""Waiting for a card the way a terminal must: bounded, cancellable, and telling whoever waits how long.

A driver's ``wait_for_card(timeout)`` blocks for the whole timeout. :func:`wait_for_card` waits in short
slices instead, so a cancel (the operator's ``cancel``, SIGTERM) is seen within a slice, a progress callback
can print "waiting for a card... 5 s", and a reader that is briefly missing (hot-plug) does not end the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from posguard.drivers.errors import NoCard, NoReader, ServiceUnavailable, WaitCancelled
from posguard.drivers.reader import Reader

__all__ = ["wait_for_card", "SLICE_S"]

#: how long one slice of the wait blocks: the longest a cancel waits to be seen
SLICE_S = 0.25


def wait_for_card(reader: Reader, timeout: float, *, cancelled: Callable[[], bool] | None = None,
                  progress: Callable[[float], None] | None = None, every: float = 1.0,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Return when a card is in ``reader``; raise :class:`NoCard` after ``timeout`` s, :class:`WaitCancelled`
    when ``cancelled()`` says so. ``progress(elapsed)`` is called about every ``every`` s while waiting."""
    if timeout <= 0:
        raise ValueError(f"card wait must be a positive number of seconds, not {timeout}")
    start = clock()
    deadline = start + timeout
    told = start
    missing: Exception | None = None
    while True:
        if cancelled is not None and cancelled():
            raise WaitCancelled("the wait for a card was cancelled", reader=getattr(reader, "name", None))
        now = clock()
        if now >= deadline:
            if missing is not None:
                raise missing
            raise NoCard(f"no card inserted within {timeout:g} s", reader=getattr(reader, "name", None))
        try:
            reader.wait_for_card(min(SLICE_S, deadline - now))
            return
        except NoCard:
            missing = None
        except (NoReader, ServiceUnavailable) as exc:  # unplugged for a moment: keep waiting to the deadline
            missing = exc
            time.sleep(min(SLICE_S, max(deadline - clock(), 0.0)))
        now = clock()
        if progress is not None and now - told >= every:
            told = now
            progress(now - start)
