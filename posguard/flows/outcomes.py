"""The words a correction ends in, declared once.

Every flow returns one :class:`Outcome`; a dry run returns the outcome's :attr:`Outcome.would` word instead
(``voided`` -> ``would_void``), so no caller builds a word by cutting another. :data:`LEAVES_OPEN` are the
outcomes after which someone still has to act (the incident stays open).

>>> Outcome.VOIDED.would
<Outcome.WOULD_VOID: 'would_void'>
>>> Outcome.VOIDED == "voided"
True
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["Outcome", "LEAVES_OPEN", "unfinished"]


class Outcome(StrEnum):
    VOIDED = "voided"
    REFUNDED = "refunded"
    REVERSED = "reversed"
    CORRECTED = "corrected"
    SETTLED = "settled"
    SETTLED_AFTER_UPLOAD = "settled_after_upload"
    SIGNED = "signed"
    SIGNED_LATER = "signed_later"  # guide 004: the customer came back (or was reached) and signed afterwards (补签)
    FOLLOW_UP = "follow_up"  # guide 004: the customer left unsigned; contact them by the deadline
    KEPT_AT_MERCHANT_RISK = "kept_at_merchant_risk"
    VOID_STANDS = "void_stands"
    NOTHING_TO_DO = "nothing_to_do"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    PENDING = "pending"
    FAILED = "failed"
    REFUSED = "refused"
    DECLINED_BY_OPERATOR = "declined_by_operator"  # the operator found nothing to correct (e.g. a genuine purchase)
    RESOLVED_BY_OPERATOR = "resolved_by_operator"  # the operator corrected it by hand (a void or refund)
    ACQUIRER_CONTACT_NEEDED = "acquirer_contact_needed"  # unsettled: the merchant takes the list to the acquirer
    RECONCILED = "reconciled"  # unsettled: the acquirer's report and the journal agree both ways
    # what a dry run says instead
    WOULD_VOID = "would_void"
    WOULD_REFUND = "would_refund"
    WOULD_REVERSE = "would_reverse"
    WOULD_SETTLE = "would_settle"
    WOULD_CORRECT = "would_correct"

    @property
    def would(self) -> Outcome:
        """The word a dry run of a flow that would end in this outcome returns."""
        try:
            return _WOULD[self]
        except KeyError:
            raise ValueError(f"{self.value!r} is not an outcome a dry run can announce") from None


_WOULD: Final[dict[Outcome, Outcome]] = {
    Outcome.VOIDED: Outcome.WOULD_VOID,
    Outcome.REFUNDED: Outcome.WOULD_REFUND,
    Outcome.REVERSED: Outcome.WOULD_REVERSE,
    Outcome.SETTLED: Outcome.WOULD_SETTLE,
    Outcome.CORRECTED: Outcome.WOULD_CORRECT,
}

#: outcomes after which someone still has to act: the incident stays open
LEAVES_OPEN: Final = frozenset({Outcome.PENDING, Outcome.AWAITING_CONFIRMATION, Outcome.FAILED, Outcome.FOLLOW_UP,
                               Outcome.ACQUIRER_CONTACT_NEEDED})


def unfinished(status: str, detail: str) -> tuple[Outcome, str]:
    """The outcome of a flow whose last online step did not finish: still pending, or failed."""
    return (Outcome.PENDING if status == "pending" else Outcome.FAILED), detail
