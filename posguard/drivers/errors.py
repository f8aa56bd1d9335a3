"""Typed reader errors.

Every error says what went wrong and what a person at the terminal should check (``hint``). No error
text ever carries card data (PAN, track data, APDU payloads): only status words, codes and offsets.
"""

from __future__ import annotations


class ReaderError(Exception):
    """Base of every card-reader error.

    ``reader`` names the reader, ``code`` is the transport's own error code (a PC/SC ``SCARD_*`` value or a
    CCID ``bError``) when there is one, ``hint`` is the advice for a person.
    """

    default_hint = "check the reader cable and power, then retry"

    def __init__(
        self,
        message: str,
        *,
        reader: str | None = None,
        code: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.reader = reader
        self.code = code
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" [reader {self.reader!r}]" if self.reader else ""
        code = f" (code 0x{self.code:08X})" if self.code is not None else ""
        return f"{self.message}{where}{code} — {self.hint}"


class ServiceUnavailable(ReaderError):
    """The PC/SC daemon (pcscd) is not running or stopped while we used it."""

    default_hint = "is pcscd running? start it (pcscd) or check /run/pcscd/pcscd.comm"


class NoReader(ReaderError):
    """No reader (or not the named one) is connected."""

    default_hint = "is the reader plugged in? list readers with `posguard readers`"


class ReaderUnplugged(ReaderError):
    """The reader disappeared while in use (unplugged, power lost, serial line closed)."""

    default_hint = "check the reader's USB/serial cable and power; it will be reopened when it returns"


class WaitCancelled(ReaderError):
    """The wait for a card was cancelled (the operator's ``cancel``, or the service stopping)."""

    default_hint = "start the sale again when the customer is ready"


class ReaderBusy(ReaderError):
    """Another program holds the reader exclusively."""

    default_hint = "close other programs using the reader (pcsc_scan, another POS app) and retry"


class NoCard(ReaderError):
    """No card was inserted before the timeout."""

    default_hint = "insert the card chip first, face up, fully into the slot"


class CardStillPresent(ReaderError):
    """The card was not removed before the timeout."""

    default_hint = "ask the customer to remove the card"


class CardRemoved(ReaderError):
    """The card was removed (or lost contact) during the session."""

    default_hint = "the card was pulled out too early: ask the customer to leave it in until told, and restart"


class CardMute(ReaderError):
    """The card is powered but does not answer (mute, dirty contacts, unsupported card)."""

    default_hint = "clean the chip, re-insert the card; if it stays mute fall back to magstripe per scheme rules"


class CardReset(ReaderError):
    """Another application reset the card in the middle of our session."""

    default_hint = "another program reset the card; close it and restart the transaction"


class TransportError(ReaderError):
    """The link to the reader failed (bad frames, no answer, protocol violation)."""

    default_hint = "check the serial/USB cable and line settings (115200 8N2 for GemPC Twin), then retry"


class ReaderTimeout(TransportError):
    """The reader did not answer a command in time."""

    default_hint = "the reader stopped answering: check its cable and power, unplug and replug it"


class SwipeError(ReaderError):
    """A magnetic stripe swipe could not be read completely and correctly."""

    default_hint = "swipe again: one smooth, steady stroke, stripe facing the reader head"


class PartialSwipe(SwipeError):
    """Only part of the swipe data arrived (missing sentinel or track)."""


class SwipeChecksumError(SwipeError):
    """A track LRC or the frame BCC did not match (misread)."""


class InvalidCardNumber(SwipeError):
    """The PAN read from the stripe fails the Luhn check or has a bad length."""

    default_hint = "swipe again; if it fails again the card is damaged — use the chip or ask for another card"
