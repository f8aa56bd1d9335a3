"""The TCP link to the acquirer: send one request, get back *its* response, or a typed failure.

:class:`TcpHostLink` implements :class:`posguard.engine.ports.HostLink`. It frames messages with
:mod:`posguard.iso8583.framing`, MACs requests and verifies responses when a :class:`MacScheme` is
configured, and matches every frame it reads against what it has sent:

==========================  ============================================================================
frame read                  what happens
==========================  ============================================================================
answers the request         validated (MTI + 10, fields 3/4/11/41/42 echoed, codec rules, MAC) and
                            returned; a failed check raises :class:`ResponseMismatch` /
                            :class:`MacFailure` (both :class:`~posguard.engine.ports.InvalidResponse`)
answers a timed-out request ``LATE_RESPONSE`` event (``approved`` set when it approves: the engine must
                            keep / send the reversal); never returned as an answer
answers a finished request  ``DUPLICATE_RESPONSE`` event; ignored
matches nothing             ``UNMATCHED_RESPONSE`` event; the wait for the real answer goes on
cannot be decoded           ``UNDECODABLE`` event; during an exchange it raises
                            :class:`UndecodableResponse` (it may have been the answer: outcome unknown)
==========================  ============================================================================

No response by the deadline raises :class:`~posguard.engine.ports.HostTimeout`; a refused or failed connect
raises :class:`ConnectFailed` (nothing sent); a connection lost after the request went out raises
:class:`LinkDropped` (``maybe_sent = True``). Every one of these is also reported to the listeners as a
:class:`LinkEvent` so the engine can journal it. :func:`reversal_reason` maps each failure to the CUP
reversal reason code for field 39 of the 0400 (98 timeout, A0 bad MAC, 96 otherwise).

Time: deadlines are read from an injected :class:`~posguard.clock.Clock`, and the wait for the socket goes
through an injected :class:`Waiter`. Production uses :class:`SelectWaiter` (a real ``select``). Tests use
:class:`VirtualWaiter` with a ``VirtualClock``: it waits *really* only until the peer is idle, then advances
virtual time, so a 30-second timeout takes milliseconds and cannot flake.

Retries: a financial request is never re-sent by the link (that is what creates duplicates); the engine
sends a reversal instead. Connect attempts (``connect_attempts``) and network management requests sent with
:meth:`TcpHostLink.net_exchange` (``net_attempts``) are retried with backoff.

The link builds no messages: the 0800 sign-on and echo test are built on the engine side
(:mod:`posguard.engine.signon`) and sent with :meth:`TcpHostLink.exchange` or :meth:`TcpHostLink.net_exchange`.

The link is meant for one thread (the engine's); it is not thread-safe.
"""

from __future__ import annotations

import select
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from posguard.clock import Clock, SystemClock
from posguard.engine.mac import MacScheme
from posguard.engine.ports import HostError, HostLinkError, HostTimeout, InvalidResponse
from posguard.iso8583 import Dialect, Framing, Iso8583Error, Message, StreamDecoder, get_dialect

__all__ = [
    "ConnectFailed",
    "HostLinkConfig",
    "LinkDropped",
    "LinkEvent",
    "LinkEventKind",
    "LinkStats",
    "MacFailure",
    "ResponseMismatch",
    "SelectWaiter",
    "TcpHostLink",
    "UndecodableResponse",
    "VirtualWaiter",
    "Waiter",
    "reversal_reason",
]

#: Fields a response must echo unchanged (pos-flows.md §B "Response validation").
ECHO_FIELDS = ("3", "4", "11", "41", "42")
#: MTIs that are not MACed (keys are not loaded before sign-on).
UNMACED_MTIS = frozenset({"0800", "0810", "0820", "0830"})


# ---------------------------------------------------------------------------------------------- errors
class ConnectFailed(HostLinkError):
    """No connection could be made: the request never left the terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(message, maybe_sent=False)


class LinkDropped(HostLinkError):
    """The connection broke after the request was (partly) sent: the outcome is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, maybe_sent=True)


class ResponseMismatch(InvalidResponse):
    """A response for this request arrived but does not answer it correctly (MTI, echoed fields, rules)."""


class MacFailure(InvalidResponse):
    """The response's MAC is missing or wrong. Never an approval: reverse with reason A0."""

    reversal_reason = "A0"


class UndecodableResponse(InvalidResponse):
    """A frame arrived while waiting that the codec cannot decode (it may have been the answer)."""


def reversal_reason(error: HostError) -> str:
    """The CUP reversal reason (field 39 of the 0400) for a host-link failure."""
    if isinstance(error, MacFailure):
        return "A0"
    if isinstance(error, HostTimeout):
        return "98"
    return "96"


# ---------------------------------------------------------------------------------------------- events
class LinkEventKind(StrEnum):
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"
    SENT = "sent"
    RESPONSE = "response"
    TIMEOUT = "timeout"
    LATE_RESPONSE = "late_response"
    DUPLICATE_RESPONSE = "duplicate_response"
    UNMATCHED_RESPONSE = "unmatched_response"
    INVALID_RESPONSE = "invalid_response"
    MAC_FAILURE = "mac_failure"
    UNDECODABLE = "undecodable"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class LinkEvent:
    """Something the link saw, for the engine's journal. ``message`` reprs masked (codec guarantee)."""

    kind: LinkEventKind
    at: float
    mti: str | None = None
    stan: int | None = None
    tid: str | None = None
    response_code: str | None = None
    approved: bool = False
    detail: str = ""
    message: Message | None = field(default=None, compare=False)


Listener = Callable[[LinkEvent], None]


def late_answer_detail(mti: str | None, response_code: str | None, reversal_done_codes: Collection[str]) -> str:
    """What an answer that came after its request timed out means, for the operator (the live link and a
    replay say the same). An answer to a reversal (04x0) is no approval: with one of the dialect's "done" codes
    (``Dialect.reversal_done_codes``) the host has the reversal; an approval of anything else came too late, so
    its reversal must go ahead."""
    if mti is not None and len(mti) == 4 and mti[1] == "4":
        if response_code in reversal_done_codes:
            return "late answer to a reversal that timed out: the host has the reversal"
        return f"late answer to a reversal that timed out (rc {response_code or '-'}): the reversal is not done"
    if response_code == "00":
        return "late approval after a timeout: the reversal must go ahead"
    return "late response after a timeout"


# ---------------------------------------------------------------------------------------------- waiting
class Waiter(Protocol):
    """Waits until ``sock`` is readable or the clock reaches ``deadline`` (a ``clock.monotonic()`` value)."""

    def wait_readable(self, sock: socket.socket, deadline: float) -> bool: ...


def _readable_now(sock: socket.socket, real_timeout: float = 0.0) -> bool:
    ready, _, _ = select.select([sock], [], [], real_timeout)
    return bool(ready)


@dataclass
class SelectWaiter:
    """The production waiter: a real ``select`` until the deadline of a real clock."""

    clock: Clock = field(default_factory=SystemClock)

    def wait_readable(self, sock: socket.socket, deadline: float) -> bool:
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return _readable_now(sock)
            if _readable_now(sock, remaining):
                return True


class AdvancingClock(Clock, Protocol):
    def advance(self, seconds: float) -> None: ...


@dataclass
class VirtualWaiter:
    """A waiter for tests on a virtual clock, against a real peer on loopback.

    Virtual time only moves when the peer is *settled* (``settled()`` is true: it has handled everything
    sent to it) and nothing is readable; then it moves by ``step`` (or to the deadline), which also fires
    the clock's timers (a simulator's delayed response). So "no response within 30 s" is decided without
    real waiting, and a response that is on its way is never mistaken for a timeout. If the peer does not
    settle within ``real_limit`` real seconds, that is a broken test: :class:`RuntimeError`.
    """

    clock: AdvancingClock
    settled: Callable[[], bool]
    step: float = 0.5
    real_limit: float = 5.0

    def wait_readable(self, sock: socket.socket, deadline: float) -> bool:
        while True:
            if _readable_now(sock):
                return True
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return False
            give_up = time.monotonic() + self.real_limit
            while not self.settled():
                if _readable_now(sock, 0.002):
                    return True
                if time.monotonic() > give_up:
                    raise RuntimeError("the peer never settled: is the settled() hook right?")
            if _readable_now(sock):
                return True
            self.clock.advance(min(self.step, remaining))


# ---------------------------------------------------------------------------------------------- config
#: the longest a reversal waits for its answer (pos-flows.md (D): "Node client: 15 s, 5 s for reversals")
REVERSAL_TIMEOUT_MAX = 15.0


def reversal_timeout_for(host_timeout: float) -> float:
    """How long the terminal waits for a reversal's answer: the host timeout, at most 15 s. One rule for the live
    service and for the replay of a capture whose header does not name it."""
    return min(host_timeout, REVERSAL_TIMEOUT_MAX)


@dataclass(frozen=True)
class HostLinkConfig:
    host: str
    port: int
    dialect: str = "cup"
    framing: str = "binary2"
    connect_timeout: float = 30.0
    send_timeout: float = 10.0  # a send that cannot be completed in this time drops the connection
    response_timeout: float = 30.0
    reversal_timeout: float = 15.0
    connect_attempts: int = 3
    net_attempts: int = 3
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled each further attempt
    mac: MacScheme | None = None  # a static MAC key (a host that uses one); see ``mac_key_source``
    #: "sign_on": the MAC key of the last good sign-on (:meth:`TcpHostLink.use_mac_key`) replaces ``mac``;
    #: "static": ``mac`` stays whatever a sign-on brings
    mac_key_source: str = "sign_on"
    require_response_mac: bool = True  # with a MAC configured, an approval without a MAC is a MacFailure
    close_on_timeout: bool = False  # keep the socket so a late response can still be seen and reported
    remember: int = 64  # finished / timed-out requests remembered to classify late and duplicate answers

    def timeout_for(self, request: Message) -> float:
        return self.reversal_timeout if request.is_reversal else self.response_timeout


@dataclass
class LinkStats:
    frames_sent: int = 0
    frames_received: int = 0
    connects: int = 0


_Key = tuple[str, int | None, str | None]  # (response MTI, STAN, TID)


def _text(msg: Message, key: str) -> str | None:
    v = msg.get(key)
    if v is None:
        return None
    return v if isinstance(v, str) else bytes(v).hex().upper()


# ---------------------------------------------------------------------------------------------- link
class TcpHostLink:
    """ISO 8583 over TCP to the acquirer (see the module docstring for the matching table)."""

    def __init__(
        self,
        config: HostLinkConfig,
        *,
        clock: Clock | None = None,
        waiter: Waiter | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.waiter: Waiter = waiter or SelectWaiter(self.clock)
        self.framing = Framing(config.framing)
        self.dialect: Dialect = get_dialect(config.dialect)
        mac_spec = self.dialect.fields.get("64")
        self._mac_wire_len = 8 if mac_spec is None or mac_spec.is_binary else 16
        self.listeners: list[Listener] = list(listeners or [])
        self.events: deque[LinkEvent] = deque(maxlen=256)
        self.stats = LinkStats()
        self._sock: socket.socket | None = None
        self._decoder = StreamDecoder(self.framing)
        self._frames: deque[bytes] = deque()
        self._timed_out: OrderedDict[_Key, Message] = OrderedDict()
        self._finished: OrderedDict[_Key, Message] = OrderedDict()
        self._capture: list[LinkEvent] | None = None
        self._session_mac: MacScheme | None = None

    def use_mac_key(self, scheme: MacScheme | None) -> None:
        """MAC from now on with the working MAC key of a sign-on (None: forget it, e.g. after a sign-off)."""
        self._session_mac = scheme

    @property
    def mac_scheme(self) -> MacScheme | None:
        """The MAC in force: the sign-on's key unless the configuration pins a static one."""
        if self.config.mac_key_source == "static" or self._session_mac is None:
            return self.config.mac
        return self._session_mac

    def __repr__(self) -> str:
        state = "connected" if self._sock is not None else "idle"
        return f"TcpHostLink({self.config.host}:{self.config.port} {self.config.dialect} {state})"

    # -- listeners ---------------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def _emit(self, kind: LinkEventKind, msg: Message | None = None, detail: str = "") -> LinkEvent:
        event = LinkEvent(
            kind=kind,
            at=self.clock.now(),
            mti=msg.mti if msg is not None else None,
            stan=msg.stan if msg is not None else None,
            tid=msg.tid if msg is not None else None,
            response_code=msg.response_code if msg is not None else None,
            approved=bool(msg is not None and msg.is_response and msg.approved),
            detail=detail,
            message=msg,
        )
        self.events.append(event)
        if self._capture is not None:
            self._capture.append(event)
        for listener in self.listeners:
            listener(event)
        return event

    # -- connection --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Connect if not connected, trying ``connect_attempts`` times with backoff on the clock."""
        if self._sock is not None:
            return
        last = ""
        for attempt in range(1, max(1, self.config.connect_attempts) + 1):
            if attempt > 1:
                self.clock.sleep(self.config.backoff * 2 ** (attempt - 2))
            try:  # a real socket timeout: connecting cannot be virtualised (instant on loopback)
                sock = socket.create_connection((self.config.host, self.config.port),
                                                timeout=self.config.connect_timeout)
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc.strerror or exc}"
                self._emit(LinkEventKind.CONNECT_FAILED, detail=f"attempt {attempt}: {last}")
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self._sock = sock
            self._decoder = StreamDecoder(self.framing)
            self._frames.clear()
            self.stats.connects += 1
            self._emit(LinkEventKind.CONNECTED, detail=f"{self.config.host}:{self.config.port}")
            return
        raise ConnectFailed(f"cannot connect to the acquirer at {self.config.host}:{self.config.port} after "
                            f"{self.config.connect_attempts} attempts ({last}); nothing was sent")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> TcpHostLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the port ----------------------------------------------------------------------------------
    def exchange(self, request: Message, *, timeout: float | None = None) -> Message:
        """Send ``request`` and return its validated response (see the module docstring for failures)."""
        if timeout is None:
            timeout = self.config.timeout_for(request)
        if self._sock is not None:
            self.poll(0.0)  # classify what arrived while idle; notice a connection the host closed
            self._drop_if_stalled(request)
        self.connect()
        wire_request = self._with_mac(request)
        key = self._key_for(wire_request)
        self._send(wire_request)
        deadline = self.clock.monotonic() + timeout
        while True:
            raw = self._next_frame(deadline, wire_request)
            if raw is None:
                self._remember(self._timed_out, key, wire_request)
                self._emit(LinkEventKind.TIMEOUT, wire_request, f"no response within {timeout:g} s")
                if self.config.close_on_timeout:
                    self.close()
                raise HostTimeout(f"no response to {wire_request.mti} STAN {wire_request.stan} within "
                                  f"{timeout:g} s; the outcome is unknown: reverse")
            response = self._decode(raw, during=wire_request)
            if self._answers(response, wire_request):
                self._check(response, raw, wire_request)
                self._remember(self._finished, key, wire_request)
                self._emit(LinkEventKind.RESPONSE, response)
                self._classify_buffered()
                return response
            self._classify(response)

    def _drop_if_stalled(self, request: Message) -> None:
        """A connection holding half a frame (the host stalled mid-answer, or drips, or announced a length it
        never sent) is not trusted with the next request — a reversal must not follow its original into a stuck
        socket: close it; the send reconnects. A clean connection after a timeout is kept, so a late answer can
        still be seen and reported."""
        if self._sock is not None and self._decoder.pending > 0:
            stuck = self._decoder.pending
            self.close()
            self._emit(LinkEventKind.DISCONNECTED, request, f"closed before sending {request.mti}: {stuck} byte(s) "
                                                            "of an unfinished response were stuck in it; reconnecting")

    def poll(self, wait: float = 0.0) -> list[LinkEvent]:
        """Read and classify whatever arrives within ``wait`` seconds (late, duplicate, unmatched frames)."""
        if self._sock is None:
            return []
        captured: list[LinkEvent] = []
        self._capture = captured
        deadline = self.clock.monotonic() + wait
        try:
            while True:
                raw = self._next_frame(deadline, None)
                if raw is None:
                    break
                try:
                    self._classify(self._decode(raw, during=None))
                except UndecodableResponse:
                    pass
        except (LinkDropped, UndecodableResponse):
            pass  # reported as DISCONNECTED / UNDECODABLE; the next exchange reconnects
        finally:
            self._capture = None
        return captured

    # -- network management ------------------------------------------------------------------------
    def net_exchange(self, request: Message) -> Message:
        """Exchange a network-management request (an 0800 sign-on or echo test: safe to repeat).

        Retried ``net_attempts`` times with backoff on link failures. The caller builds the request
        (:mod:`posguard.engine.signon`): the link builds no messages.
        """
        last: HostError | None = None
        for attempt in range(1, max(1, self.config.net_attempts) + 1):
            if attempt > 1:
                self.clock.sleep(self.config.backoff * 2 ** (attempt - 2))
            try:
                return self.exchange(request, timeout=self.config.response_timeout)
            except (HostTimeout, HostLinkError) as exc:
                last = exc
                self.close()
        assert last is not None
        raise last

    # -- sending -----------------------------------------------------------------------------------
    def _mac_field(self, msg: Message) -> str:
        return "128" if any(int(k) > 64 for k in msg.keys() if k not in ("64", "128")) else "64"

    def _mac_input(self, raw: bytes, msg: Message) -> bytes:
        return raw[msg.dialect.header_len : len(raw) - self._mac_wire_len]

    def wire_image(self, request: Message) -> Message:
        """``request`` as :meth:`exchange` sends it now: with its MAC under the current key where one is due
        (:class:`~posguard.engine.ports.WireImaging`)."""
        return self._with_mac(request)

    def _with_mac(self, request: Message) -> Message:
        scheme = self.mac_scheme
        if scheme is None or request.mti in UNMACED_MTIS:
            return request
        msg = request.copy()
        f = self._mac_field(msg)
        msg[f] = self._mac_value(bytes(8))
        mac = scheme.compute(self._mac_input(msg.encode(), msg))
        msg[f] = self._mac_value(mac)
        return msg

    def _mac_value(self, mac: bytes) -> str | bytes:
        return mac if self._mac_wire_len == 8 else mac.hex().upper()

    def _send(self, request: Message) -> None:
        assert self._sock is not None
        data = self.framing.frame(request.encode())
        try:  # a host that stops reading must not hang the terminal: the send has its own (real) deadline
            self._sock.settimeout(self.config.send_timeout)
            self._sock.sendall(data)
        except OSError as exc:
            self.close()
            self._emit(LinkEventKind.DISCONNECTED, request, f"send failed: {exc.strerror or exc}")
            raise LinkDropped(f"sending {request.mti} STAN {request.stan} failed ({exc.strerror or exc}); "
                              "it may have been partly sent: reverse") from None
        finally:
            if self._sock is not None:
                self._sock.setblocking(False)
        self.stats.frames_sent += 1
        self._emit(LinkEventKind.SENT, request)

    # -- receiving ---------------------------------------------------------------------------------
    def _next_frame(self, deadline: float, request: Message | None) -> bytes | None:
        while not self._frames:
            if self._sock is None:
                raise LinkDropped("the connection is closed")
            if not self.waiter.wait_readable(self._sock, deadline):
                return None
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                data = b""
                reason = exc.strerror or str(exc)
            else:
                reason = "closed by the host"
            if not data:
                self._lost(request, reason)
            try:
                self._frames.extend(self._decoder.feed(data))
            except Iso8583Error as exc:
                self.close()
                self._emit(LinkEventKind.UNDECODABLE, request, f"framing: {exc}")
                raise UndecodableResponse(f"unreadable frame length from the acquirer ({exc.reason}); "
                                          "the outcome is unknown: reverse") from None
        self.stats.frames_received += 1
        return self._frames.popleft()

    def _lost(self, request: Message | None, reason: str) -> None:
        partial = self._decoder.pending > 0
        self.close()
        what = "in the middle of a response" if partial else "before a response"
        self._emit(LinkEventKind.DISCONNECTED, request, f"{reason} {what}")
        name = f"{request.mti} STAN {request.stan}" if request is not None else "the link"
        raise LinkDropped(f"connection lost {what} to {name} ({reason}); the outcome is unknown: reverse")

    def _decode(self, raw: bytes, *, during: Message | None) -> Message:
        try:
            return Message.decode(raw, self.dialect)
        except Iso8583Error as exc:
            self._emit(LinkEventKind.UNDECODABLE, during, str(exc))
            raise UndecodableResponse(f"cannot decode a {len(raw)}-byte frame from the acquirer: {exc}; "
                                      "the outcome is unknown: reverse") from None

    # -- matching ----------------------------------------------------------------------------------
    @staticmethod
    def _key_for(request: Message) -> _Key:
        return (request.response_mti, request.stan, request.tid)

    @staticmethod
    def _key_of_response(response: Message) -> _Key:
        return (response.mti, response.stan, response.tid)

    def _answers(self, response: Message, request: Message) -> bool:
        """True when ``response`` is for ``request``: same STAN and TID, and not an answer to another MTI."""
        if response.stan != request.stan or response.tid != request.tid:
            return False
        if response.mti == request.response_mti:
            return True
        # Same STAN and TID but another MTI: a late/duplicate answer to an earlier request with the same STAN
        # (CUP reversals reuse the original's STAN) is not ours; anything else is a malformed answer.
        key = self._key_of_response(response)
        return key not in self._timed_out and key not in self._finished

    def _check(self, response: Message, raw: bytes, request: Message) -> None:
        problems = [str(v) for v in response.validate(request=request)]
        for f in ECHO_FIELDS:  # kept even if the codec's echo list differs
            want, got = _text(request, f), _text(response, f)
            if want is not None and got != want and not any(p.startswith(f"field {f}:") for p in problems):
                problems.append(f"field {f}: differs from the request" if got is not None
                                else f"field {f}: not echoed")
        if response.response_code is None and not any(p.startswith("field 39") for p in problems):
            problems.append("field 39: a response must carry the response code")
        if problems:
            text = "; ".join(problems)
            self._emit(LinkEventKind.INVALID_RESPONSE, response, text)
            raise ResponseMismatch(f"the response to {request.mti} STAN {request.stan} does not answer it: {text}; "
                                   "the outcome is unknown: reverse", violations=tuple(problems))
        self._check_mac(response, raw, request)

    def _check_mac(self, response: Message, raw: bytes, request: Message) -> None:
        scheme = self.mac_scheme
        if scheme is None or response.mti in UNMACED_MTIS:
            return
        f = self._mac_field(response)
        if f not in response:
            if self.config.require_response_mac and response.approved:
                self._emit(LinkEventKind.MAC_FAILURE, response, "approval without a MAC")
                raise MacFailure(f"the approval of {request.mti} STAN {request.stan} carries no MAC; "
                                 "not trusted: reverse (reason A0)")
            return
        tail = raw[len(raw) - self._mac_wire_len:]
        try:
            got = bytes.fromhex(tail.decode("ascii")) if self._mac_wire_len == 16 else tail
        except ValueError:
            got = b""
        if not scheme.verify(self._mac_input(raw, response), got):
            self._emit(LinkEventKind.MAC_FAILURE, response, "MAC does not verify")
            raise MacFailure(f"the MAC of the response to {request.mti} STAN {request.stan} does not verify; "
                             "not trusted: reverse (reason A0)")

    def _classify(self, response: Message) -> None:
        key = self._key_of_response(response)
        if key in self._timed_out:
            del self._timed_out[key]
            self._emit(LinkEventKind.LATE_RESPONSE, response,
                       late_answer_detail(response.mti, response.get("39"),
                                          get_dialect(response.dialect).reversal_done_codes))
        elif key in self._finished:
            self._emit(LinkEventKind.DUPLICATE_RESPONSE, response, "a second response to a finished request")
        else:
            self._emit(LinkEventKind.UNMATCHED_RESPONSE, response, "a response that matches no request sent")

    def _classify_buffered(self) -> None:
        """Classify frames that arrived together with the answer (e.g. a duplicate response)."""
        while self._frames:
            raw = self._frames.popleft()
            self.stats.frames_received += 1
            try:
                self._classify(self._decode(raw, during=None))
            except UndecodableResponse:
                pass

    def _remember(self, table: OrderedDict[_Key, Message], key: _Key, request: Message) -> None:
        table[key] = request
        table.move_to_end(key)
        while len(table) > self.config.remember:
            table.popitem(last=False)
