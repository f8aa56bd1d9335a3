"""Faults on demand, declared as data.

A :class:`Fault` says *what goes wrong* (``kind``), *to which requests* (``mti``, ``proc_prefix``, ``stan``;
unset = any request) and *how many times* (``times``; 0 = until cleared). The first pending fault that
matches a request is consumed and applied to that request's response.

Kinds:

``no_response``      the request is processed (ledger updated) but nothing is sent back.
``drop``             the request is ignored entirely (not processed, nothing sent).
``delay``            the response is sent ``delay`` seconds late (on the simulator's scheduler).
``disconnect_mid``   half of the response frame is sent, then the connection is closed.
``disconnect``       the connection is closed without a response (request processed).
``duplicate``        the response is sent twice.
``other_stan``       the response carries a different STAN (field 11 + 1).
``corrupt_mac``      the response's MAC (64/128) has a bit flipped (a MAC is added if absent).
``wrong_rc``         the response code is replaced by ``rc``.
``wrong_amount``     the response's field 4 differs from the request.
``garbage``          an undecodable frame is sent instead of the response.

Issuer faults (sales and pre-authorisations of a card in the issuer's card file, see ``issuer.py``):

``bad_arpc``         the ARPC in the answer's 91 has a bit flipped (the card's issuer authentication fails).
``issuer_script``    the approval carries an issuer script: ``template`` 71 (before the second GENERATE AC)
                     or 72 (after, the default), ``command`` pin_unblock (default), put_data,
                     application_block or bad_mac (a PIN unblock with a wrong MAC).
``wrong_9f02``       the issuer sees 9F02 one minor unit off field 4 (as if the terminal sent a wrong amount
                     in field 55): declined 13.

Hostile hosts (the connection is left open and *stuck*: every later request on it is read and ignored; a new
connection is served normally):

``half_then_silence`` half of the response frame is sent, then nothing more.
``drip``             the response is sent one byte every ``delay`` seconds (default 1), never its last byte.
``oversized``        a frame header announcing the framing's largest length is sent, a few bytes, then nothing.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = (
    "no_response",
    "drop",
    "delay",
    "disconnect_mid",
    "disconnect",
    "duplicate",
    "other_stan",
    "corrupt_mac",
    "wrong_rc",
    "wrong_amount",
    "garbage",
    "bad_arpc",
    "issuer_script",
    "wrong_9f02",
    "half_then_silence",
    "drip",
    "oversized",
)
#: faults the issuer applies (the processor hands them over instead of the server mangling the response)
ISSUER_KINDS = ("bad_arpc", "issuer_script", "wrong_9f02")
#: faults after which the connection stays open and ignores every later request
STUCK_KINDS = ("half_then_silence", "drip", "oversized")


@dataclass
class Fault:
    kind: str
    mti: str | None = None
    proc_prefix: str | None = None
    stan: str | None = None
    times: int = 1
    delay: float = 0.0
    rc: str | None = None
    template: str | None = None  # issuer_script: "71" or "72"
    command: str | None = None  # issuer_script: pin_unblock, put_data, application_block, bad_mac

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {FAULT_KINDS}")
        if self.kind == "wrong_rc" and not self.rc:
            raise ValueError("a wrong_rc fault needs rc='..'")
        if self.template is not None and self.template not in ("71", "72"):
            raise ValueError("an issuer_script template is '71' or '72'")
        if self.times < 0:
            raise ValueError("times must be >= 0 (0 = until cleared)")

    def matches(self, mti: str, proc: str | None, stan: str | None) -> bool:
        if self.mti is not None and self.mti != mti:
            return False
        if self.proc_prefix is not None and not (proc or "").startswith(self.proc_prefix):
            return False
        return not (self.stan is not None and (stan or "").lstrip("0") != self.stan.lstrip("0"))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fault:
        return cls(**d)


class FaultPlan:
    """The ordered list of pending faults (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.applied: list[dict[str, Any]] = []  # what fired, in order (for test assertions)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, mti: str, proc: str | None, stan: str | None) -> Fault | None:
        """Consume one use of the first fault matching this request."""
        with self._lock:
            for f in self._faults:
                if f.matches(mti, proc, stan):
                    if f.times == 1:
                        self._faults.remove(f)
                    elif f.times > 1:
                        f.times -= 1
                    self.applied.append({"kind": f.kind, "mti": mti, "stan": stan})
                    return f
        return None
