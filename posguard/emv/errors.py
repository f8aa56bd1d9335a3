"""Errors that end a card session. Reader errors (CardRemoved, CardMute, ReaderUnplugged...) are raised
unchanged from :mod:`posguard.drivers.errors` with a note naming the EMV step they interrupted.

No error text carries card data: only status words, tags, SFI/record numbers and offsets.
"""

from __future__ import annotations


class CardSessionError(Exception):
    """Base of EMV session errors. ``stage`` names the step (``"READ RECORD SFI 2 record 1"``)."""

    default_hint = "remove and re-insert the card, then retry; if it fails again use another card"

    def __init__(self, message: str, *, stage: str = "", hint: str | None = None) -> None:
        self.message = message
        self.stage = stage
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" during {self.stage}" if self.stage else ""
        return f"{self.message}{where} — {self.hint}"


class NoSupportedApplication(CardSessionError):
    """The card has no application the terminal accepts (or all were refused at GPO)."""

    default_hint = "this card has no payment application we accept: ask for another card"


class CardStatusError(CardSessionError):
    """The card answered a command with a status word the flow does not allow."""

    def __init__(self, sw: int, *, stage: str, hint: str | None = None) -> None:
        self.sw = sw
        super().__init__(f"card answered SW {sw:04X}", stage=stage, hint=hint)


class CardDataError(CardSessionError):
    """Card data is malformed (corrupt TLV, bad AFL, missing mandatory tag)."""

    def __init__(self, message: str, *, stage: str, path: str | None = None, offset: int | None = None,
                 hint: str | None = None) -> None:
        self.path = path
        self.offset = offset
        loc = []
        if path:
            loc.append(f"at {path}")
        if offset is not None:
            loc.append(f"byte {offset}")
        super().__init__(message + (f" ({' '.join(loc)})" if loc else ""), stage=stage, hint=hint)


class CardDeclined(CardSessionError):
    """The card itself declined (AAC) at the first GENERATE AC."""

    default_hint = "the card declined the transaction offline: ask for another payment method"
