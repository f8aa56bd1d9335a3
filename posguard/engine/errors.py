"""Typed engine errors. Each message says what happened and what the operator or integrator should do."""

from __future__ import annotations

from posguard.engine.chart import IllegalTransition

__all__ = [
    "EngineError",
    "IllegalTransition",
    "TransactionsBlocked",
    "SettlementBlocked",
    "SignOnFailed",
    "CorrectionRefused",
    "RefundExceedsOriginal",
    "WrongCard",
    "RequestRefused",
    "JournalUnavailable",
    "CardDataRefused",
    "CryptogramReused",
    "CardAmountMismatch",
]


class EngineError(Exception):
    """Base of the engine's refusals."""


class TransactionsBlocked(EngineError):
    """A reversal or advice is still unacknowledged and the policy blocks new transactions until it is."""

    def __init__(self, message: str, *, pending_ids: tuple[int, ...], retry_in: float | None) -> None:
        super().__init__(message)
        self.pending_ids = pending_ids
        self.retry_in = retry_in


class SettlementBlocked(TransactionsBlocked):
    """Settlement must wait: reversals/advices go to the host before the batch is closed."""


class SignOnFailed(TransactionsBlocked):
    """The host demands a sign-on (at start, RC 77, CUP header) and the 0800 was not answered 00."""


class CorrectionRefused(EngineError):
    """A void/refund/completion was refused before anything was sent (window, amount, state)."""


class RefundExceedsOriginal(CorrectionRefused):
    """Refunds for one original may not total more than the original amount."""


class WrongCard(CorrectionRefused):
    """The card presented for a correction is not the card of the original transaction."""


class RequestRefused(EngineError):
    """The request cannot be put on the wire as the dialect defines it (an amount too long for field 4, a
    value of the wrong class...). Refused before anything was journaled or armed; ``field`` names it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JournalUnavailable(EngineError):
    """The journal could not be written after a request was sent (disk full, I/O error). The answer is not
    acted on: the transaction is reversed as soon as the journal can be written again."""

    def __init__(self, message: str, *, txn_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.txn_ids = txn_ids


class CardDataRefused(EngineError):
    """The card data handed to the engine cannot be sent: a chip cryptogram already used, or a field 55 made
    for another amount. Refused before anything was journaled or sent; present the card again."""


class CryptogramReused(CardDataRefused):
    """The card's cryptogram (9F26, or the card's (token, ATC) pair) was already sent in ``used_by``: an
    application cryptogram is single-use (EMV Book 2 A1.3, ``emv-keys.md`` (A) 4)."""

    def __init__(self, message: str, *, used_by: str) -> None:
        super().__init__(message)
        self.used_by = used_by


class CardAmountMismatch(CardDataRefused):
    """Field 55's amount authorised (9F02) is not the amount the request carries in field 4: the ARQC was
    computed over another amount and a real issuer declines it (``emv-keys.md`` (A) 1, 4)."""

    def __init__(self, message: str, *, card_amount: int, amount: int) -> None:
        super().__init__(message)
        self.card_amount = card_amount
        self.amount = amount
