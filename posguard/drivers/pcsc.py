"""PC/SC transport on pyscard's low-level ``smartcard.scard`` API.

* Reader hot-plug: waits watch ``\\\\?PnP?\\Notification`` when the reader is missing and pick it up again
  when it returns; a restarted pcscd is handled by establishing a new context.
* Every ``SCARD_*`` failure becomes a typed :mod:`posguard.drivers.errors` error with guidance.
* ``transmit_raw`` is one ``SCardTransmit`` plus two attribute stores; a watchdog thread bounds a command
  that never returns (vpcd and some drivers have no timeout of their own) by shutting the context's socket
  to pcscd, which makes the blocked call fail; the reader then reports :class:`CardMute`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from posguard.extras import MissingExtra

try:
    from smartcard.scard import _scard
except ImportError as _exc:  # the pcsc extra is not installed: say which one, in one line
    raise MissingExtra("pcsc", "smartcard") from _exc

from posguard.drivers.errors import (
    CardMute,
    CardRemoved,
    CardReset,
    CardStillPresent,
    NoCard,
    NoReader,
    ReaderBusy,
    ReaderError,
    ReaderTimeout,
    ReaderUnplugged,
    ServiceUnavailable,
    TransportError,
)
from posguard.drivers.reader import CardEvent, Reader, ReaderInfo, Response

__all__ = ["PcscReader", "list_readers", "translate_error", "PNP_NOTIFICATION"]

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
DEFAULT_PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
_S = _scard
_transmit = _S.SCardTransmit
_monotonic = time.monotonic
_new_tuple = tuple.__new__  # builds a Response without a Python-level __new__ frame
_OK = _S.SCARD_S_SUCCESS
_E_TIMEOUT = _S.SCARD_E_TIMEOUT
_SERVICE_DOWN = {_S.SCARD_E_NO_SERVICE, _S.SCARD_E_SERVICE_STOPPED, _S.SCARD_F_COMM_ERROR,
                 _S.SCARD_E_INVALID_HANDLE}
_GONE = _S.SCARD_STATE_UNKNOWN | _S.SCARD_STATE_UNAVAILABLE | _S.SCARD_STATE_IGNORE
#: After an answer without status word, how long to wait for pcscd (400 ms poll) to report a removal.
_REMOVAL_SETTLE_S = 0.6
#: How often a wait re-checks for a restarted pcscd.
_SERVICE_RETRY_S = 0.2

# code -> (error class, message, hint or None for the class default)
_TABLE: dict[int, tuple[type[ReaderError], str, str | None]] = {
    _S.SCARD_E_NO_SERVICE: (ServiceUnavailable, "PC/SC service not running", None),
    _S.SCARD_E_SERVICE_STOPPED: (ServiceUnavailable, "PC/SC service stopped", None),
    _S.SCARD_F_COMM_ERROR: (ServiceUnavailable, "lost the connection to pcscd", None),
    _S.SCARD_E_INVALID_HANDLE: (ServiceUnavailable, "PC/SC handle no longer valid (pcscd restarted?)", None),
    _S.SCARD_E_NO_READERS_AVAILABLE: (NoReader, "no card reader connected", None),
    _S.SCARD_E_UNKNOWN_READER: (NoReader, "reader not known to pcscd", None),
    _S.SCARD_E_READER_UNAVAILABLE: (ReaderUnplugged, "reader no longer available", None),
    _S.SCARD_E_SHARING_VIOLATION: (ReaderBusy, "reader in use by another program", None),
    _S.SCARD_E_NO_SMARTCARD: (NoCard, "no card in the reader", None),
    _S.SCARD_W_REMOVED_CARD: (CardRemoved, "card removed", None),
    _S.SCARD_W_UNRESPONSIVE_CARD: (CardMute, "card does not answer to reset (mute)", None),
    _S.SCARD_W_UNPOWERED_CARD: (CardMute, "card is not powered", "re-insert the card; if it persists the card is faulty"),
    _S.SCARD_W_UNSUPPORTED_CARD: (CardMute, "card's ATR is not supported", "this card cannot be read by chip: "
                                   "use magstripe fallback per scheme rules"),
    _S.SCARD_E_PROTO_MISMATCH: (CardMute, "card does not support T=0 or T=1", "this card cannot be read by chip"),
    _S.SCARD_W_RESET_CARD: (CardReset, "card was reset by another program", None),
    _S.SCARD_E_NOT_TRANSACTED: (TransportError, "command not transacted (card or reader failed)",
                                "re-insert the card; if it persists, check the reader"),
    _S.SCARD_E_TIMEOUT: (TransportError, "PC/SC operation timed out", None),
    _S.SCARD_E_CANCELLED: (TransportError, "PC/SC operation cancelled", None),
}


def translate_error(code: int, action: str, reader: str | None = None) -> ReaderError:
    """Turn an ``SCARD_*`` result into the typed error, naming the ``action`` that failed."""
    cls, message, hint = _TABLE.get(code, (TransportError, "PC/SC error", None))
    try:
        text = _S.SCardGetErrorMessage(code)
    except Exception:  # pragma: no cover - pyscard always has it
        text = ""
    detail = f": {text}" if text else ""
    return cls(f"{action}: {message}{detail}", reader=reader, code=code, hint=hint)


def _establish() -> int:
    hr, ctx = _S.SCardEstablishContext(_S.SCARD_SCOPE_USER)
    if hr != _OK:
        raise translate_error(hr, "connect to pcscd")
    return int(ctx)


def _list(ctx: int) -> list[str]:
    hr, names = _S.SCardListReaders(ctx, [])
    if hr == _S.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if hr != _OK:
        raise translate_error(hr, "list readers")
    return list(names)


def _match(names: list[str], wanted: str) -> str | None:
    """Exact name, else the first reader whose name starts with ``wanted`` (``Virtual PCD`` style)."""
    if wanted in names:
        return wanted
    for n in names:
        if n.startswith(wanted):
            return n
    return None


def _pcscd_fds() -> set[int]:
    """Our file descriptors that are sockets connected to pcscd (libpcsclite honours PCSCLITE_CSOCK_NAME)."""
    path = os.environ.get("PCSCLITE_CSOCK_NAME", DEFAULT_PCSCD_SOCKET)
    found: set[int] = set()
    try:
        entries = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - non-Linux
        return found
    for entry in entries:
        fd = int(entry)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family == socket.AF_UNIX and s.getpeername() == path:
                found.add(fd)
        except OSError:
            pass
        finally:
            s.close()
    return found


class _Watchdog:
    """Fires ``on_expire`` when a deadline set by the APDU path passes. Costs the APDU path two stores."""

    def __init__(self, on_expire: Callable[[], None], period: float = 0.05) -> None:
        self.deadline = 0.0
        self._on_expire = on_expire
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pcsc-apdu-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            d = self.deadline
            if d and time.monotonic() > d:
                self.deadline = 0.0
                self._on_expire()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


class PcscReader(Reader):
    """One PC/SC reader slot.

    ``name`` is an exact reader name or a prefix (``"Virtual PCD"``); None takes the first reader. The reader
    may be absent when constructed with a name: waits pick it up when it appears. ``apdu_timeout`` bounds one
    command (GENERATE AC on a slow card takes ~1 s; the default leaves ample room).
    """

    def __init__(self, name: str | None = None, *, apdu_timeout: float = 8.0, exclusive: bool = False) -> None:
        self.apdu_timeout = apdu_timeout
        self._wanted = name
        self._share = _S.SCARD_SHARE_EXCLUSIVE if exclusive else _S.SCARD_SHARE_SHARED
        self._ctx = 0
        self._ctx_fds: set[int] = set()
        self._hcard = 0
        self._pci = _S.SCARD_PCI_T1
        self._watchdog: _Watchdog | None = None
        self._expired = False
        self._lock = threading.Lock()
        self._connect_context()
        names = _list(self._ctx)
        if name is None:
            if not names:
                raise NoReader("no PC/SC reader connected")
            self.name = names[0]
        else:
            self.name = _match(names, name) or name

    # -- context ---------------------------------------------------------------------------------------
    def _connect_context(self) -> None:
        with self._lock:
            before = _pcscd_fds()
            self._ctx = _establish()
            self._ctx_fds = _pcscd_fds() - before

    def _drop_context(self) -> None:
        if self._ctx:
            _S.SCardReleaseContext(self._ctx)
        self._ctx = 0
        self._hcard = 0

    def _recover_context(self, deadline: float) -> None:
        """pcscd went away: wait (bounded) for it to come back and open a new context."""
        self._drop_context()
        while True:
            try:
                self._connect_context()
                return
            except ServiceUnavailable:
                if time.monotonic() + _SERVICE_RETRY_S > deadline:
                    raise
                time.sleep(_SERVICE_RETRY_S)

    def _renew_context(self) -> None:
        """After the watchdog shut our pcscd socket down: a new context for the next call (none if pcscd is gone:
        the next call recovers it)."""
        self._drop_context()
        with contextlib.suppress(ServiceUnavailable):
            self._connect_context()

    def _ensure_context(self, deadline: float) -> None:
        """Open a new context if the last one was dropped (pcscd restarted); pyscard must never see 0."""
        if not self._ctx:
            self._recover_context(deadline)

    def _resolve(self) -> str | None:
        self._ensure_context(_monotonic())
        names = _list(self._ctx)
        found = _match(names, self._wanted or self.name)
        if found is not None:
            self.name = found
        return found

    def connected(self) -> bool:
        """Is our reader listed by pcscd now? (Constructed by name, the reader may not be plugged in yet; a
        pcscd that is down or restarting counts as not listed.)"""
        try:
            return self._resolve() is not None
        except ServiceUnavailable:
            self._drop_context()
            return False

    # -- events ----------------------------------------------------------------------------------------
    def _state(self, timeout: float, known: int) -> tuple[int, int, bytes]:
        """(hresult, event state, ATR) for our reader after at most ``timeout`` s of waiting."""
        self._ensure_context(_monotonic() + max(timeout, 0.0))
        ms = max(0, int(timeout * 1000))
        hr, states = _S.SCardGetStatusChange(self._ctx, ms, [(self.name, known)])
        if hr != _OK:
            return int(hr), 0, b""
        _, event, atr = states[0]
        return _OK, int(event), bytes(atr)

    def _wait_reader(self, deadline: float) -> None:
        """Block until our reader is listed again (hot-plug), or raise NoReader at the deadline."""
        known = _S.SCARD_STATE_UNAWARE
        while True:
            try:
                if self._resolve() is not None:
                    return
            except ServiceUnavailable:
                self._recover_context(deadline)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoReader(f"reader {self._wanted or self.name!r} not connected")
            hr, states = _S.SCardGetStatusChange(self._ctx, int(remaining * 1000), [(PNP_NOTIFICATION, known)])
            if hr == _OK:
                known = int(states[0][1]) & ~_S.SCARD_STATE_CHANGED
            elif hr in _SERVICE_DOWN:
                self._recover_context(deadline)
            elif hr != _E_TIMEOUT:
                raise translate_error(hr, "wait for reader", self.name)

    def _wait_state(self, deadline: float, want_present: bool) -> None:
        known = _S.SCARD_STATE_UNAWARE
        while True:
            remaining = deadline - time.monotonic()
            hr, event, _ = self._state(max(remaining, 0.0), known)
            if hr == _OK:
                if event & _GONE:
                    self._wait_reader(deadline)
                    known = _S.SCARD_STATE_UNAWARE
                    continue
                present = bool(event & _S.SCARD_STATE_PRESENT)
                if present and want_present and event & _S.SCARD_STATE_MUTE:
                    raise CardMute("card inserted but does not answer to reset", reader=self.name)
                if present == want_present:
                    return
                known = event & ~_S.SCARD_STATE_CHANGED
            elif hr == _E_TIMEOUT or remaining <= 0:
                if want_present:
                    raise NoCard("no card inserted in time", reader=self.name)
                raise CardStillPresent("card not removed in time", reader=self.name)
            elif hr in _SERVICE_DOWN:
                self._recover_context(deadline)
                known = _S.SCARD_STATE_UNAWARE
            elif hr in (_S.SCARD_E_UNKNOWN_READER, _S.SCARD_E_READER_UNAVAILABLE):
                self._wait_reader(deadline)
                known = _S.SCARD_STATE_UNAWARE
            else:
                raise translate_error(hr, "wait for card", self.name)

    def card_present(self) -> bool:
        hr, event, _ = self._state(0, _S.SCARD_STATE_UNAWARE)
        if hr != _OK:
            if hr in (_S.SCARD_E_UNKNOWN_READER, _S.SCARD_E_READER_UNAVAILABLE, _E_TIMEOUT):
                return False
            raise translate_error(hr, "read reader state", self.name)
        return bool(event & _S.SCARD_STATE_PRESENT) and not event & _GONE

    def wait_for_card(self, timeout: float) -> None:
        self._wait_state(time.monotonic() + timeout, want_present=True)

    def wait_for_removal(self, timeout: float) -> None:
        self._wait_state(time.monotonic() + timeout, want_present=False)

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        deadline = time.monotonic() + timeout
        hr, event, _ = self._state(0, _S.SCARD_STATE_UNAWARE)
        if hr != _OK:
            raise translate_error(hr, "read reader state", self.name)
        was_present = bool(event & _S.SCARD_STATE_PRESENT)
        try:
            self._wait_state(deadline, want_present=not was_present)
        except (NoCard, CardStillPresent):
            return None
        return CardEvent.REMOVED if was_present else CardEvent.INSERTED

    # -- card ------------------------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Reset (or connect and power) the card and return its ATR. Each PC/SC call here is bounded by
        ``apdu_timeout`` as a command is: pcscd waits without limit for a reader still busy with a card that went
        mute, so a blocked call is broken by the watchdog and reported (:meth:`_stuck`) instead of hanging the
        caller for good."""
        if self._watchdog is None:
            self._watchdog = _Watchdog(self._expire, period=min(0.1, self.apdu_timeout / 10))
        self._expired = False
        if self._hcard:
            hr, proto = self._bounded(_S.SCardReconnect, self._hcard, self._share,
                                      _S.SCARD_PROTOCOL_T0 | _S.SCARD_PROTOCOL_T1, _S.SCARD_RESET_CARD)
            if hr != _OK:
                self._hcard = 0
                raise self._stuck("reset the card") if self._expired else translate_error(hr, "reset card", self.name)
        else:
            self._ensure_context(_monotonic() + 2.0)
            hr, hcard, proto = self._bounded(_S.SCardConnect, self._ctx, self.name, self._share,
                                             _S.SCARD_PROTOCOL_T0 | _S.SCARD_PROTOCOL_T1)
            if hr in _SERVICE_DOWN and not self._expired:
                self._recover_context(time.monotonic() + 2.0)
                hr, hcard, proto = self._bounded(_S.SCardConnect, self._ctx, self.name, self._share,
                                                 _S.SCARD_PROTOCOL_T0 | _S.SCARD_PROTOCOL_T1)
            if hr != _OK:
                raise self._stuck("power the card on") if self._expired else translate_error(hr, "power on card",
                                                                                              self.name)
            self._hcard = int(hcard)
        self._pci = _S.SCARD_PCI_T0 if proto == _S.SCARD_PROTOCOL_T0 else _S.SCARD_PCI_T1
        hr, _, _, _, atr = self._bounded(_S.SCardStatus, self._hcard)
        if hr != _OK:
            raise self._stuck("read the ATR") if self._expired else translate_error(hr, "read ATR", self.name)
        return bytes(atr)

    def _bounded(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` under the watchdog's deadline (``apdu_timeout``): past it our pcscd socket is shut down,
        the call returns an error and ``_expired`` says why."""
        wd = self._watchdog
        assert wd is not None  # set by power_on
        wd.deadline = _monotonic() + self.apdu_timeout
        try:
            return call(*args)
        finally:
            wd.deadline = 0.0

    def _stuck(self, what: str) -> ReaderError:
        """A power-on call the watchdog broke: the reader did not come back within ``apdu_timeout`` (pcscd is
        still waiting on it, e.g. for a card that went mute). A new PC/SC context is opened for the next try."""
        self._renew_context()
        self._expired = False
        return ReaderTimeout(f"the reader did not {what} within {self.apdu_timeout:g} s: it is still busy (a card "
                             "that went mute?)", reader=self.name,
                             hint="remove the card; if the next card fails the same way, unplug and replug the "
                                  "reader or restart pcscd")

    @property
    def protocol(self) -> str:
        return "T=0" if self._pci == _S.SCARD_PCI_T0 else "T=1"

    def _expire(self) -> None:
        """Watchdog: a command overran ``apdu_timeout``; break the blocked call by closing our pcscd socket."""
        self._expired = True
        for fd in self._ctx_fds:
            try:
                socket.socket(fileno=os.dup(fd)).shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _not_powered(self) -> ReaderError:
        return CardRemoved("card not powered: call power_on first", reader=self.name,
                           hint="wait for the card and power it on before sending commands")

    def transmit_raw(self, apdu: bytes) -> bytes:
        wd = self._watchdog
        if wd is None:
            raise self._not_powered()
        wd.deadline = _monotonic() + self.apdu_timeout
        hr, resp = _transmit(self._hcard, self._pci, list(apdu))
        wd.deadline = 0.0
        if hr:
            raise self._transmit_failed(int(hr))
        return bytes(resp)

    def transmit(self, apdu: bytes) -> Response:
        # The hot path, inlined: one SCardTransmit, two stores for the watchdog, one tuple.
        wd = self._watchdog
        if wd is None:
            raise self._not_powered()
        wd.deadline = _monotonic() + self.apdu_timeout
        hr, resp = _transmit(self._hcard, self._pci, list(apdu))
        wd.deadline = 0.0
        if hr:
            raise self._transmit_failed(int(hr))
        if len(resp) >= 2:
            sw1 = resp[-2]
            if sw1 != 0x61 and sw1 != 0x6C:
                return _new_tuple(Response, (bytes(resp[:-2]), (sw1 << 8) | resp[-1]))
        return self._finish(apdu, bytes(resp))

    def _finish(self, apdu: bytes, raw: bytes) -> Response:
        if len(raw) < 2:
            raise self._short_response(len(raw))
        return self._t0_rounds(apdu, raw)

    def transmit_raw_checked(self, apdu: bytes) -> bytes:
        raw = self.transmit_raw(apdu)
        if len(raw) < 2:
            raise self._short_response(len(raw))
        return raw

    def _short_response(self, n: int) -> ReaderError:
        """A response without status word usually means the card left mid-command (vpcd and some drivers
        return an empty answer): wait one pcscd poll period for the slot state to tell."""
        settled = self._settle()
        if settled is not None:
            return settled
        return TransportError(f"response of {n} bytes has no status word", reader=self.name,
                              hint="the card or reader sent a truncated answer: re-insert the card and retry")

    def _settle(self) -> ReaderError | None:
        """After a failed exchange: ReaderUnplugged / CardRemoved / CardMute if pcscd reports one within
        one poll period, else None."""
        deadline = _monotonic() + _REMOVAL_SETTLE_S
        known = _S.SCARD_STATE_UNAWARE
        while True:
            hr, event, _ = self._state(max(0.0, deadline - _monotonic()), known)
            if hr in (_S.SCARD_E_UNKNOWN_READER, _S.SCARD_E_READER_UNAVAILABLE) or (hr == _OK and event & _GONE):
                return translate_error(_S.SCARD_E_READER_UNAVAILABLE, "transmit", self.name)
            if hr == _OK and not event & _S.SCARD_STATE_PRESENT:
                return translate_error(_S.SCARD_W_REMOVED_CARD, "transmit", self.name)
            if hr == _OK and event & _S.SCARD_STATE_MUTE:
                return translate_error(_S.SCARD_W_UNRESPONSIVE_CARD, "transmit", self.name)
            if hr != _OK or _monotonic() >= deadline:
                return None
            known = event & ~_S.SCARD_STATE_CHANGED

    def _transmit_failed(self, hr: int) -> ReaderError:
        if self._expired:
            self._renew_context()
            return CardMute(f"card did not answer within {self.apdu_timeout:g} s", reader=self.name)
        if hr in (_S.SCARD_E_NOT_TRANSACTED, _S.SCARD_E_READER_UNAVAILABLE):
            # Ambiguous codes: give pcscd one poll period to tell whether the card or the reader left.
            settled = self._settle()
            if settled is not None:
                return settled
        if hr in _SERVICE_DOWN:
            self._drop_context()
        return translate_error(hr, "transmit", self.name)

    def power_off(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._hcard:
            _S.SCardDisconnect(self._hcard, _S.SCARD_UNPOWER_CARD)
            self._hcard = 0

    def close(self) -> None:
        self.power_off()
        self._drop_context()

    def __repr__(self) -> str:
        return f"PcscReader({self.name!r})"


def list_readers() -> list[ReaderInfo]:
    """Every PC/SC reader with card presence and ATR (empty list when pcscd has no reader)."""
    ctx = _establish()
    try:
        names = _list(ctx)
        if not names:
            return []
        hr, states = _S.SCardGetStatusChange(ctx, 0, [(n, _S.SCARD_STATE_UNAWARE) for n in names])
        if hr != _OK:
            raise translate_error(hr, "read reader states")
        out = []
        for name, event, atr in states:
            present = bool(event & _S.SCARD_STATE_PRESENT)
            mute = bool(event & _S.SCARD_STATE_MUTE)
            out.append(ReaderInfo(name=name, transport="pcsc", card_present=present,
                                  atr=bytes(atr) if present and atr else None,
                                  detail="card mute" if mute else ""))
        return out
    finally:
        _S.SCardReleaseContext(ctx)
