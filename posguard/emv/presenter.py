"""A chip card presented for one transaction: the EMV session at this transaction's amount, kept open until
the card has the host's answer (:mod:`posguard.presenting`).

:func:`present_chip` runs :func:`~posguard.emv.session.read_card` with the request's amount and type (GPO with
this transaction's PDOL data, CVM at the real amount, first GENERATE AC -> ARQC) and returns an
:class:`EmvPresentation` whose card data awaits the second GENERATE AC. :meth:`EmvPresentation.complete` reads
91/71/72 out of the host answer's field 55 (:mod:`posguard.emv.issuer`) and runs the second GENERATE AC with
8A = field 39 (``Z3`` when the host was not reached): TC or AAC, with the scripts' results (9F5B).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from typing import Any

from posguard.drivers.reader import Reader
from posguard.emv.engine_card import card_data
from posguard.emv.issuer import parse_issuer_data
from posguard.emv.online_pin import OnlinePin
from posguard.emv.session import CardSession, PinEntry, complete, read_card
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.presenting import CardOutcome, CardRequest, HostAnswer

__all__ = ["EmvPresentation", "TRANSACTION_TYPES", "present_chip"]

#: 9C transaction type per request kind (ISO 8583 processing code, first two digits; EMV Book 3 Annex A)
TRANSACTION_TYPES = {"sale": 0x00, "preauth": 0x00, "cash": 0x01, "refund": 0x20}


class EmvPresentation:
    """One chip card session, from the ARQC to the card's final answer. ``after_complete`` is told when the
    second GENERATE AC is done (a capture writes that session's APDUs then)."""

    def __init__(self, reader: Reader, session: CardSession, *, entry_mode: str = "chip",
                 evidence: dict[str, Any] | None = None,
                 after_complete: Callable[[], None] | None = None) -> None:
        self.reader = reader
        self.session = session
        self.card = replace(card_data(session, entry_mode=entry_mode), second_gac=True)
        self.evidence: dict[str, Any] = {"aid": session.aid, "label": session.label, **(evidence or {})}
        self.outcome: CardOutcome | None = None
        self._after_complete = after_complete
        self._closed = False

    def complete(self, answer: HostAnswer) -> CardOutcome:
        """Issuer data to the card, then the second GENERATE AC (TC asked when the host approved)."""
        issuer = parse_issuer_data(answer.icc)
        final = complete(self.reader, self.session, host_approved=answer.approved,
                         response_code=answer.response_code, issuer_auth_data=issuer.auth_data,
                         scripts=issuer.scripts)
        notes = []
        if final.issuer_authenticated is False:
            notes.append("issuer authentication failed (EXTERNAL AUTHENTICATE)")
        if issuer.scripts:
            notes.append(f"{len(issuer.scripts)} issuer script(s) delivered, results {final.script_results.hex().upper()}")
        self.outcome = CardOutcome(final.cryptogram_type, final.atc, final.field55, final.script_results,
                                   final.declined_by_card, tuple(notes))
        if self._after_complete is not None:
            self._after_complete()
        return self.outcome

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with suppress(Exception):  # the card may be gone already; nothing to undo
            self.reader.power_off()


def present_chip(reader: Reader, terminal: EmvTerminal, request: CardRequest, *, atr: bytes | None = None,
                 pin_entry: PinEntry | None = None, online_pin: OnlinePin | None = None,
                 when: datetime | None = None, **kw: Any) -> EmvPresentation:
    """Read the inserted card for ``request`` (its amount, its type); ``online_pin`` (the PIN pad) enciphers the
    PIN when the card asks for online PIN; ``kw`` goes to :class:`EmvPresentation`."""
    txn = Transaction(amount=request.amount, type=TRANSACTION_TYPES.get(request.kind, 0x00), when=when)
    session = read_card(reader, terminal, txn, pin_entry=pin_entry, atr=atr, online_pin=online_pin)
    return EmvPresentation(reader, session, **kw)
