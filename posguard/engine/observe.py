"""What crosses the wire, for whoever wants to watch: the engine's exchange listeners.

The engine owns its host link; nobody swaps it to watch it (jPOS log listeners, not wrappers). A listener is a
callable that receives one :class:`Exchange` per step of every request the engine sends — ``sent`` before the
request goes out, then ``received`` with the response or ``failed`` with the typed host error — for sales,
corrections, reversals and advices from the store-and-forward queue, sign-on and settlement alike.

>>> from posguard.iso8583 import Message
>>> watch = Observers()
>>> with watch.recording() as sent:
...     watch.notify(Exchange("sent", Message("0800", {"11": "000001", "70": "301"}, dialect="iso87")))
>>> [m.mti for m in sent]
['0800']

A listener observes; it never changes what the engine does. One that raises is logged and left out of that
one notification: the transaction goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from posguard.engine.ports import HostError
    from posguard.iso8583.message import Message

__all__ = ["Exchange", "ExchangeListener", "Observers"]

_log = logging.getLogger("posguard.engine")


@dataclass(frozen=True)
class Exchange:
    """One step of one request/response exchange with the host."""

    event: Literal["sent", "received", "failed"]
    request: Message
    response: Message | None = None
    error: HostError | None = None


ExchangeListener = Callable[[Exchange], None]


class Observers:
    """The listeners of one engine."""

    def __init__(self) -> None:
        self._listeners: list[ExchangeListener] = []

    def add(self, listener: ExchangeListener) -> None:
        self._listeners.append(listener)

    def remove(self, listener: ExchangeListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def notify(self, exchange: Exchange) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(exchange)
            except Exception as exc:  # noqa: BLE001 - an observer never changes the transaction's course
                _log.warning("exchange listener %r failed on %s %s: %s", listener, exchange.event,
                             exchange.request.mti, type(exc).__name__)

    @contextmanager
    def recording(self) -> Iterator[list[Message]]:
        """The requests sent while the block runs, in order (what a correction sent, as evidence)."""
        sent: list[Message] = []

        def keep(exchange: Exchange) -> None:
            if exchange.event == "sent":
                sent.append(exchange.request)

        self.add(keep)
        try:
            yield sent
        finally:
            self.remove(keep)
