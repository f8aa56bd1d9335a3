"""The ports between the transaction engine and the outside world.

The engine never talks to a socket. It hands a request :class:`~posguard.iso8583.Message` to a
:class:`HostLink` and gets back the matched, validated response, or one of three typed failures:

* :class:`HostTimeout` — the request *may* have reached the host, no response arrived in time. The engine
  treats the outcome as unknown: the armed reversal stays armed and is sent.
* :class:`HostLinkError` — the request certainly did **not** leave the terminal (no connection, connect
  refused, send failed before the first byte). Subclasses may set ``maybe_sent = True`` when a failure
  happened after bytes went out; the engine then treats it like a timeout.
* :class:`InvalidResponse` — a response arrived but does not match or validate against the request
  (wrong MTI, field 3/4/11/41/42 not echoed, bad MAC). The outcome is unknown: reverse.

The real TCP implementation lives in ``posguard.engine.hostlink``; tests use small in-process fakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from posguard.engine.mac import MacScheme
    from posguard.iso8583.message import Message

__all__ = ["HostLink", "HostLinkError", "HostTimeout", "InvalidResponse", "HostError", "KeyedLink", "WireImaging"]


class HostError(Exception):
    """Base of every failure a :class:`HostLink` raises."""

    #: True when the request may have reached the host (outcome unknown -> reversal needed).
    maybe_sent: bool = True
    #: the word captures and logs use for this failure
    event: str = "error"
    #: the CUP reversal reason (field 39 of the 0400) when this failure leaves the outcome unknown
    #: (``pos-flows.md`` §B: 98 timeout, 96 could not complete, A0 bad MAC)
    reversal_reason: str = "96"


class HostTimeout(HostError):
    """No response within the timeout. The request may have been processed: keep the reversal armed."""

    maybe_sent = True
    event = "timeout"
    reversal_reason = "98"


class HostLinkError(HostError):
    """The link failed. By default the request never left the terminal (``maybe_sent = False``).

    Pass ``maybe_sent=True`` when the failure happened after the request was (partly) written.
    """

    event = "link_error"

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class InvalidResponse(HostError):
    """A response arrived but failed matching/validation against the request. Outcome unknown."""

    maybe_sent = True
    event = "invalid_response"

    def __init__(self, message: str, *, violations: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations


@runtime_checkable
class HostLink(Protocol):
    """Sends one request and returns its matched, validated response."""

    def exchange(self, request: Message, *, timeout: float) -> Message:
        """Send ``request`` and wait up to ``timeout`` seconds for its response.

        Raises :class:`HostTimeout`, :class:`HostLinkError` or :class:`InvalidResponse`.
        """
        ...


@runtime_checkable
class KeyedLink(Protocol):
    """A link that MACs with the working MAC key of the last good sign-on (``TcpHostLink``)."""

    def use_mac_key(self, scheme: MacScheme | None) -> None:
        """MAC every message that needs one with ``scheme`` from now on; None forgets the key."""
        ...


@runtime_checkable
class WireImaging(Protocol):
    """A link that adds to a request what only it knows (the MAC under the sign-on's key): it can show the request
    as it will go on the wire, so that what the exchange listeners (the capture, the incident evidence) record is
    what the acquirer received."""

    def wire_image(self, request: Message) -> Message:
        """``request`` as this link sends it now (with its MAC where one is due)."""
        ...
