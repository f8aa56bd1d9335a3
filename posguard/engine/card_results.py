"""The card's final decision per transaction, kept (sealed) for the settlement uploads.

After the host answered, the terminal runs the second GENERATE AC (``emv-keys.md`` section A.8-10): the card
answers a TC (9F26 with 9F27 = 40) or an AAC, and reports the issuer scripts it ran (9F5B). The TC upload
(CUP 0320, 60.3 = 203) and the batch-upload details carry that field 55 — with fields 2, 22 and 23 — because
it is what the acquirer matches the transaction on (``emv-keys.md`` A.10, ``pos-flows.md`` section A
"Not arrived").

The journal keeps it as one ``card_result`` event per answer: the clear detail says only which cryptogram
(``TC``/``AAC``/``ARQC``) and how many script results; field 55 and the script results are sealed under the
terminal's data key, bound to the transaction (AAD ``card_result:<txn id>``), as the PAN is
(:mod:`posguard.engine.sealing`). The latest event of a transaction is the one the uploads read.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posguard.engine.errors import EngineError
from posguard.engine.pos_entry import CHIP_MODES
from posguard.iso8583.errors import Iso8583Error
from posguard.iso8583.tlv import TLV, build_tlv, parse_tlv

if TYPE_CHECKING:
    from posguard.engine.journal import Journal, TxnRecord
    from posguard.engine.sealing import Sealer

__all__ = ["CardResult", "CardResultRefused", "record_card_result", "card_result", "EVENT", "CARD_KINDS"]

#: the journal event that holds a card result
EVENT = "card_result"
#: transaction kinds a card decides on with a second GENERATE AC
CARD_KINDS = frozenset({"sale", "preauth", "completion"})
#: 9F27 bits 8-7 (EMV Book 3 Table 14): 00 AAC, 01 TC, 10 ARQC
CRYPTOGRAMS = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}
SCRIPT_RESULT_LEN = 5  # 9F5B: per script, 1 byte result + 4 bytes script identifier (EMV Book 4 A5)


class CardResultRefused(EngineError):
    """The card result cannot be kept: wrong transaction, or field 55 without a cryptogram."""


@dataclass(frozen=True, repr=False)
class CardResult:
    """One kept card result. ``field55`` is the final sale tag set; ``script_results`` the 9F5B value."""

    txn_id: str
    cryptogram: str  # TC | AAC | ARQC
    field55: bytes
    script_results: bytes | None

    def upload_icc(self) -> bytes:
        """Field 55 of an upload: the final tag set, with 9F5B appended when the card ran scripts and the tag set
        does not already carry it."""
        if not self.script_results or any(t.tag == "9F5B" for t in parse_tlv(self.field55)):
            return self.field55
        return self.field55 + build_tlv([TLV("9F5B", self.script_results)])

    def __repr__(self) -> str:
        scripts = len(self.script_results or b"") // SCRIPT_RESULT_LEN
        return f"CardResult({self.txn_id}, {self.cryptogram}, field55={len(self.field55)} bytes, scripts={scripts})"


def _refuse(txn: TxnRecord, why: str) -> CardResultRefused:
    return CardResultRefused(f"card result for {txn.id} ({txn.kind}, {txn.entry_mode or 'no card'}) not kept: {why}")


def _check(txn: TxnRecord, field55: bytes, script_results: bytes | None) -> str:
    """The cryptogram type of ``field55``, once everything the upload relies on is there."""
    if txn.kind not in CARD_KINDS:
        raise _refuse(txn, f"only {', '.join(sorted(CARD_KINDS))} have a second GENERATE AC")
    if txn.entry_mode not in CHIP_MODES:
        raise _refuse(txn, "the card was not read by its chip")
    try:
        tags = {t.tag: t.value for t in parse_tlv(field55)}
    except Iso8583Error as exc:
        raise _refuse(txn, f"field 55 is not BER-TLV ({exc.reason} at byte {exc.offset})") from None
    for tag, size in (("9F26", 8), ("9F27", 1)):
        if tag not in tags:
            raise _refuse(txn, f"field 55.{tag} missing")
        if len(tags[tag]) != size:
            raise _refuse(txn, f"field 55.{tag} has {len(tags[tag])} bytes, expected {size}")
    if script_results is not None and (not script_results or len(script_results) % SCRIPT_RESULT_LEN):
        raise _refuse(txn, f"9F5B (issuer script results) has {len(script_results)} bytes, expected a multiple "
                           f"of {SCRIPT_RESULT_LEN}")
    return CRYPTOGRAMS.get(tags["9F27"][0] & 0xC0, "RFU")


def record_card_result(journal: Journal, sealer: Sealer, txn: TxnRecord, field55: bytes,
                       script_results: bytes | None = None) -> CardResult:
    """Journal (sealed) the card's final field 55 and script results for ``txn``; call inside a commit."""
    kind = _check(txn, field55, script_results)
    if kind not in ("TC", "AAC"):
        raise _refuse(txn, f"9F27 says {kind}: the second GENERATE AC answers TC or AAC")
    sealed = sealer.seal({"field55": field55.hex(), "scripts": script_results.hex() if script_results else None},
                         f"{EVENT}:{txn.id}")
    journal.record_event(EVENT, txn_id=txn.id, detail={
        "cryptogram": kind, "scripts": len(script_results or b"") // SCRIPT_RESULT_LEN,
        "sealed": base64.b64encode(sealed).decode("ascii")})
    return CardResult(txn.id, kind, field55, script_results)


def card_result(journal: Journal, sealer: Sealer, txn_id: str) -> CardResult | None:
    """The latest card result kept for ``txn_id``, opened; None when the card never gave one."""
    rows = journal.query("SELECT detail FROM events WHERE kind = ? AND txn_id = ? ORDER BY id DESC LIMIT 1",
                         (EVENT, txn_id))
    if not rows:
        return None
    detail = json.loads(rows[0]["detail"])
    data = sealer.open(base64.b64decode(detail["sealed"]), f"{EVENT}:{txn_id}")
    scripts = data.get("scripts")
    return CardResult(txn_id, str(detail["cryptogram"]), bytes.fromhex(data["field55"]),
                      bytes.fromhex(scripts) if scripts else None)
