"""The seam between the till and the card: a card is presented per transaction.

A chip card read is good for one transaction only (EMV Book 3 §10; ``emv-keys.md`` (A)): the terminal knows
the amount and type *before* it reads the card, the card computes its ARQC over them, and the same session
later gives the card the host's answer (second GENERATE AC -> TC or AAC). So the till never keeps a card
read: for every charge it asks a :class:`CardPresenter` for a :class:`Presentation` with the transaction's
:class:`CardRequest`, sends the presentation's :class:`~posguard.card.CardData`, then hands the host's
:class:`HostAnswer` back to the same presentation (:meth:`Presentation.complete`).

Presenters: the EMV session on a reader (:class:`posguard.emv.presenter.EmvPresenter`, used by the service
and the demo), a card record of a capture (:mod:`posguard.capture.replay`) and a stored card with no chip
session (a swipe, a test's :class:`~posguard.card.CardData`: :class:`StoredCard`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from posguard.card import CardData

__all__ = ["CardNotPresented", "CardOutcome", "CardPresenter", "CardRequest", "HostAnswer", "Presentation",
           "StoredCard", "UNABLE_TO_GO_ONLINE"]

#: 8A when the host could not be reached (EMV Book 4 §6.3.6 / ``emv-keys.md`` (A) 8: Y3/Z3)
UNABLE_TO_GO_ONLINE = "Z3"


class CardNotPresented(Exception):
    """No card was presented for the request (nothing read, nothing sent): the message says why."""


@dataclass(frozen=True)
class CardRequest:
    """What the terminal knows when it asks for the card: the card reference the operator named (``c1``), the
    amount (minor units) and the transaction type (9C: ``sale`` = 00 goods and services)."""

    ref: str
    amount: int
    kind: str = "sale"


@dataclass(frozen=True)
class HostAnswer:
    """The host's answer as the card hears it: field 39 (8A, two ASCII characters; ``Z3`` when the host could
    not be reached) and the answer's field 55 (issuer authentication data 91, scripts 71/72)."""

    response_code: str
    icc: bytes = b""

    @property
    def approved(self) -> bool:
        return self.response_code == "00"


@dataclass(frozen=True)
class CardOutcome:
    """The card's final word (second GENERATE AC)."""

    cryptogram_type: str  # "TC" | "AAC"
    atc: int | None
    field55: bytes  # the final tag set: TC (or AAC), 95, 9F5B — what the TC upload carries
    script_results: bytes = b""  # 9F5B
    declined_by_card: bool = False  # the host approved, the card said AAC: the sale must be reversed
    notes: tuple[str, ...] = ()  # issuer authentication / script outcomes, for the operator


class Presentation(Protocol):
    """One card presented for one transaction."""

    card: CardData
    #: what a capture's ``card`` record keeps besides the card data (``source``, ``label``, ``aid``...)
    evidence: dict[str, Any]

    def complete(self, answer: HostAnswer) -> CardOutcome | None:
        """Give the card the host's answer (second GENERATE AC); None when the card has no such step."""
        ...

    def close(self) -> None:
        """The card leaves (power off); without :meth:`complete` the card's session is abandoned."""
        ...


class CardPresenter(Protocol):
    def present(self, request: CardRequest) -> Presentation:
        """Read the card presented for ``request`` at its amount; raises :class:`CardNotPresented`."""
        ...


@dataclass
class StoredCard:
    """A card with no chip session to complete: a swipe, a keyed card, a test's :class:`CardData`."""

    card: CardData
    evidence: dict[str, Any] = field(default_factory=dict)

    def complete(self, answer: HostAnswer) -> CardOutcome | None:
        return None

    def close(self) -> None:
        return None
