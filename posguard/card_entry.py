"""Card entry policy: a chip card is read by its chip; its stripe is accepted only as fallback.

The first digit of a magnetic stripe's service code (ISO 7813) says whether the card carries a chip: 2 (an
international chip card) or 6 (a national one). A terminal with a chip reader must read such a card by its
chip: a swiped chip card is refused with "insert the card". Only when a chip read *just failed* (the chip or
the chip reader did not work) may the stripe be used, and the sale then goes with the fallback entry mode
(ISO field 22 = 80x; CUP 02x with 60.5 = 2: :mod:`posguard.engine.pos_entry`). EMV leaves fallback to the
payment systems; their rules agree on this much: UnionPay's (chip cards carry service code 2xx/6xx on the
stripe; the terminal tries the chip first and falls back only when the chip or the chip reader does not work)
and Visa's/Mastercard's technical fallback (a failed chip read at this terminal, then the stripe of the same
card, flagged as fallback in field 22).

:class:`FallbackWindow` remembers the failed chip read: for :attr:`FallbackPolicy.window_s` seconds (on the
engine's clock) after it, the next swipe of a chip card is a fallback; the window is used once, and a chip read
that succeeds closes it. When the failed read learnt the card's token, only that card may fall back.
"""

from __future__ import annotations

from dataclasses import dataclass

from posguard.clock import Clock
from posguard.drivers.errors import SwipeError

__all__ = ["FallbackPolicy", "FallbackWindow", "InsertChipCard", "is_chip_card"]


def is_chip_card(service_code: str) -> bool:
    """Service code 2xx/6xx (ISO 7813 digit 1: interchange and technology): the card has a chip."""
    return service_code[:1] in ("2", "6")


class InsertChipCard(SwipeError):
    """A chip card was swiped while its chip could still be read: insert the card instead."""

    default_hint = "insert the card in the chip reader; the stripe is used only if the chip read fails"

    def __init__(self, service_code: str, *, why: str = "") -> None:
        self.service_code = service_code
        extra = f" ({why})" if why else ""
        super().__init__(f"chip card swiped (service code {service_code[:1]}xx){extra}: insert the card")


@dataclass(frozen=True)
class FallbackPolicy:
    """``window_s``: how long after a failed chip read the stripe of a chip card is accepted."""

    window_s: float = 120.0


@dataclass(frozen=True)
class _Failure:
    at: float
    why: str
    pan_token: str | None


class FallbackWindow:
    """The terminal's memory of the last failed chip read (see the module docstring)."""

    def __init__(self, clock: Clock, policy: FallbackPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or FallbackPolicy()
        self._failure: _Failure | None = None

    def chip_failed(self, why: str, *, pan_token: str | None = None) -> None:
        """A chip read failed (the chip or the reader did not work): open the fallback window."""
        self._failure = _Failure(self.clock.monotonic(), why, pan_token)

    def chip_read(self) -> None:
        """A chip read succeeded: no fallback is owed any more."""
        self._failure = None

    @property
    def open(self) -> bool:
        f = self._failure
        return f is not None and self.clock.monotonic() - f.at <= self.policy.window_s

    @property
    def last_failure(self) -> str | None:
        return self._failure.why if self._failure is not None else None

    def entry_mode(self, service_code: str, pan_token: str) -> str:
        """``swipe`` for a stripe-only card; ``fallback`` for a chip card inside the window (used up); else
        :class:`InsertChipCard`."""
        if not is_chip_card(service_code):
            return "swipe"
        f = self._failure
        if f is None:
            raise InsertChipCard(service_code, why="no chip read of this card failed")
        if not self.open:
            self._failure = None
            raise InsertChipCard(service_code, why=f"the failed chip read was more than "
                                                   f"{self.policy.window_s:g} s ago")
        if f.pan_token is not None and f.pan_token != pan_token:
            raise InsertChipCard(service_code, why="the chip read that failed was another card's")
        self._failure = None
        return "fallback"
