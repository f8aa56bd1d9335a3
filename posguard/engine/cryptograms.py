"""Chip card data checked before the wire: a cryptogram is sent once, and only with the amount it was made for.

EMV Book 2 A1.3 and Book 3 §10 (``emv-keys.md`` (A) 1 and 4): the ARQC (9F26) is a MAC over CDOL1 data that
includes the amount authorised (9F02); the card's ATC (9F36) increases at every GENERATE AC, so an AC is
single-use. A terminal that sends the same ARQC twice, or an ARQC with a 9F02 other than field 4, is sending
what no real issuer accepts. :class:`CryptogramLedger` refuses both before anything is journaled, and keeps
the cryptograms sent in the journal (``events`` of kind :data:`EVENT`), so the check holds across restarts.

**The check is on the cryptogram, not on the ATC.** An ATC that a card reuses with a *new* ARQC (a cloned or
faulty card) is the issuer's to refuse: the issuer keeps the last ATC per card and declines one that is not
greater (EMV Book 2 §8.1 and Book 3 §10.6.3: the terminal reads 9F36/9F13 only for its velocity checks
against the card's own data; it keeps no history of a card's ATCs). So such a request goes on the wire and
comes back declined (the simulated issuer: ``firmware_sim/host/issuer.py``, RC 05 "ATC not greater than the
last one seen"); ``tests/integration/test_emv_matrix.py`` proves it per card and dialect.

The journal keeps no cryptogram in clear: a keyed digest of 9F26 (the ATC beside it, for the operator).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from posguard.card import CardData
from posguard.engine.errors import CardAmountMismatch, CryptogramReused
from posguard.engine.journal import Journal
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import find_tag, parse_tlv

__all__ = ["ChipFacts", "CryptogramLedger", "EVENT", "chip_facts"]

#: the journal event that records a cryptogram put on the wire
EVENT = "cryptogram_sent"
#: 9F27 (Cryptogram Information Data) bits 8-7: 00 AAC, 01 TC, 10 ARQC (EMV Book 3 Table 14)
CID_ARQC = 0x80


@dataclass(frozen=True)
class ChipFacts:
    """What field 55 says about the card's cryptogram (tags absent from field 55 are None)."""

    cryptogram: bytes | None  # 9F26
    cid: int | None  # 9F27
    atc: int | None  # 9F36
    amount: int | None  # 9F02, minor units

    @property
    def is_arqc(self) -> bool:
        return self.cid is not None and self.cid & 0xC0 == CID_ARQC


def chip_facts(field55: bytes) -> ChipFacts:
    """9F26, 9F27, 9F36 and 9F02 out of field 55; a field 55 that does not parse says nothing (None)."""
    try:
        items = parse_tlv(field55)
    except TLVError:
        return ChipFacts(None, None, None, None)

    def value(tag: str) -> bytes | None:
        t = find_tag(items, tag)
        return t.value if t is not None else None

    cid, atc, amount = value("9F27"), value("9F36"), value("9F02")
    amount_minor = int(amount.hex()) if amount and amount.hex().isdigit() else None
    return ChipFacts(value("9F26"), cid[0] if cid else None, int.from_bytes(atc, "big") if atc else None,
                     amount_minor)


class CryptogramLedger:
    """The single-use and amount checks, over the engine's journal. ``key`` keys the digests (the terminal's
    token key: a digest cannot be recomputed without it)."""

    def __init__(self, journal: Journal, key: bytes) -> None:
        self.journal = journal
        self._key = key

    def _digest(self, *parts: object) -> str:
        msg = "|".join(p.hex() if isinstance(p, bytes) else str(p) for p in parts).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def check(self, card: CardData | None, amount: int, kind: str) -> ChipFacts | None:
        """Refuse ``card`` for a ``kind`` request of ``amount`` (raises :class:`CardAmountMismatch`,
        :class:`CryptogramReused`); the chip facts when it carries a cryptogram, else None."""
        if card is None or not card.field55:
            return None
        facts = chip_facts(card.field55)
        if facts.cryptogram is None:
            return None
        if facts.amount is not None and facts.amount != amount:
            raise CardAmountMismatch(
                f"{kind} refused before sending: the card's field 55 holds amount authorised 9F02 = {facts.amount} "
                f"but the request's field 4 would be {amount}; the cryptogram was made for another amount. Read "
                "the card again for this amount (nothing was journaled or sent)", card_amount=facts.amount,
                amount=amount)
        used = self.used_by(card, facts)
        if used is not None:
            raise CryptogramReused(
                f"{kind} refused before sending: this card read's cryptogram (9F26"
                f"{f', ATC {facts.atc}' if facts.atc is not None else ''}) was already "
                f"sent in {used}; a cryptogram is single-use — present the card again for a new one (nothing was "
                "journaled or sent)", used_by=used)
        return facts

    def used_by(self, card: CardData, facts: ChipFacts) -> str | None:
        """The transaction that already sent this cryptogram (9F26), or None. ``card`` is the card read the
        cryptogram came with (its ATC is not checked here: see the module docstring)."""
        ac = self._digest("ac", facts.cryptogram)
        for row in self.journal.query("SELECT txn_id, detail FROM events WHERE kind = ? ORDER BY id", (EVENT,)):
            detail = json.loads(row["detail"] or "{}")
            if detail.get("ac") == ac:
                return str(row["txn_id"])
        return None

    def record(self, txn_id: str, card: CardData, facts: ChipFacts) -> None:
        """Journal that ``txn_id`` sends this cryptogram (inside the request's write-ahead commit)."""
        detail: dict[str, object] = {"ac": self._digest("ac", facts.cryptogram), "atc": facts.atc}
        self.journal.record_event(EVENT, txn_id=txn_id, detail=detail)
