"""A technician's read of a chip card that burns nothing: ``posguard card read``.

:func:`inspect_card` runs selection -> GPO -> READ RECORD (AFL) and reads the CVM list (8E) and the ATC (GET
DATA 9F36, EMV Book 3 §6.5.7), then stops: no GENERATE AC, so the card's ATC does not move and no cryptogram is
made that a later sale could not use (an AC is single-use, ``emv-keys.md`` A.4). Only with ``generate_ac=True``
(``card read --amount MINOR``) does it run the first GENERATE AC at the transaction's amount, and report what an
ARQC request would carry: the CDOL1 data (9F02 = the amount, 9F37 ...), the CVM decision at that amount (EMV
Book 3 §10.5: the X/Y amount conditions compare with 9F02) and the card's answer.

It shares the steps of :mod:`posguard.emv.session` (the same helpers), so it reads a card exactly as a sale
does; it never performs a CVM (no PIN is asked: offline PIN counts as "PIN pad not present").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posguard.drivers.reader import Reader
from posguard.emv import apdu, cvm
from posguard.emv.channel import CardChannel
from posguard.emv.dol import build_dol_data, parse_dol
from posguard.emv.errors import CardDataError, CardDeclined
from posguard.emv.session import (
    CID_TYPES,
    SCHEMES,
    SENSITIVE_TAGS,
    SW_OK,
    _card_identity,
    _cardholder_verification,
    _initiate,
    _parse_gac,
    _require,
    _yymm,
)
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.sensitive import pan_token

__all__ = ["CardInspection", "inspect_card", "get_atc"]

GET_DATA_ATC = bytes.fromhex("80CA9F3600")


@dataclass(frozen=True, repr=False)
class CardInspection:
    """What a technician's read found. Safe to print: masked PAN, token, no track data."""

    masked_pan: str
    pan_token: str
    expiry: str
    pan_sequence: str | None
    service_code: str | None
    aid: str
    label: str
    selection_method: str
    aip: str
    cvm_list: dict[str, Any] | None
    cvm_required: str
    cvm_results: bytes
    cvm_trace: tuple[str, ...]
    atc: int | None  # GET DATA 9F36 before any GENERATE AC of this read
    amount: int
    generate_ac: dict[str, Any] | None
    atr: bytes
    apdu_count: int

    @property
    def scheme(self) -> str | None:
        return SCHEMES.get(self.aid[:10])

    @property
    def signature_required(self) -> bool:
        return self.cvm_results[0] & 0x3F in (0x03, 0x05, 0x1E)

    def __repr__(self) -> str:
        gac = "no GENERATE AC" if self.generate_ac is None else f"{self.generate_ac['cryptogram_type']} at {self.amount}"
        return f"CardInspection(pan={self.masked_pan!r}, aid={self.aid}, atc={self.atc}, {gac})"

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        return {
            "masked_pan": self.masked_pan, "pan_token": self.pan_token, "expiry": self.expiry,
            "pan_sequence": self.pan_sequence, "service_code": self.service_code, "aid": self.aid,
            "label": self.label, "scheme": self.scheme, "selection_method": self.selection_method, "aip": self.aip,
            "cvm_list": self.cvm_list, "amount": self.amount, "cvm_required": self.cvm_required,
            "signature_required": self.signature_required, "cvm_results": self.cvm_results.hex().upper(),
            "atc": self.atc, "generate_ac": self.generate_ac, "atr": self.atr.hex().upper(),
            "apdu_count": self.apdu_count,
        }


def get_atc(ch: CardChannel) -> int | None:
    """The card's ATC by GET DATA 9F36, or None when the card does not answer it."""
    r = ch.send(GET_DATA_ATC, "GET DATA 9F36")
    if r.sw != SW_OK:
        return None
    data = r.data
    if data[:2] == b"\x9f\x36" and len(data) >= 5:
        data = data[3:3 + data[2]]
    return int.from_bytes(data[:2], "big") if len(data) == 2 else None


def _cvm_list(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    parsed = cvm.parse_cvm_list(raw)
    return {"x": parsed.x, "y": parsed.y,
            "rules": [{"code": f"{r.code:02X}{r.condition:02X}",
                       "method": cvm.METHODS[r.method].name if r.method in cvm.METHODS else f"{r.method:02X}",
                       "condition": f"{r.condition:02X}", "apply_next": r.apply_next} for r in parsed.rules]}


def inspect_card(reader: Reader, terminal: EmvTerminal, txn: Transaction, *, generate_ac: bool = False,
                 atr: bytes | None = None) -> CardInspection:
    """Read the card without spending it (see the module docstring); ``generate_ac``: run the first GENERATE AC
    at ``txn.amount`` and report the ARQC request data."""
    started = _initiate(reader, terminal, txn, atr)
    atr, ch, sel, app, aip, term, card = (started.atr, started.channel, started.selector, started.app, started.aip,
                                          started.terminal, started.card)
    pan, track2 = _card_identity(card)
    atc = get_atc(ch)
    outcome = _cardholder_verification(ch, card, terminal, txn, None)  # decided, never performed: no PIN asked
    gac: dict[str, Any] | None = None
    if generate_ac:
        gac = _first_generate_ac(ch, card, term, outcome, txn)
    return CardInspection(
        masked_pan=pan.masked, pan_token=pan_token(pan.reveal(), terminal.pan_token_key), expiry=_yymm(card["5F24"]),
        pan_sequence=card["5F34"].hex() if "5F34" in card else None,
        service_code=track2.service_code if track2 else None, aid=app.aid.hex().upper(), label=app.label,
        selection_method=sel.method, aip=aip.hex().upper(), cvm_list=_cvm_list(card.get("8E")),
        cvm_required=outcome.method, cvm_results=outcome.results, cvm_trace=outcome.trace, atc=atc,
        amount=txn.amount, generate_ac=gac, atr=atr, apdu_count=ch.commands)


def _first_generate_ac(ch: CardChannel, card: dict[str, bytes], term: dict[str, bytes], outcome: cvm.CvmOutcome,
                       txn: Transaction) -> dict[str, Any]:
    """GENERATE AC 1 (ARQC requested) with CDOL1 built from this transaction; the request data and the answer."""
    if "8C" not in card:
        raise CardDataError("mandatory tag 8C (CDOL1) missing from the records", stage="READ RECORD", path="8C")
    tvr = bytearray(5)
    tvr[0] |= 0x80 | outcome.tvr1  # offline data authentication not performed (as the sale's read)
    tvr[2] |= outcome.tvr3
    term = {**term, "95": bytes(tvr), "9F34": outcome.results}
    public_card = {k: v for k, v in card.items() if k not in SENSITIVE_TAGS}
    cdol1 = parse_dol(card["8C"], name="CDOL1 8C")
    sources = {**public_card, **term}
    data = build_dol_data(cdol1, sources)
    request: dict[str, str] = {}
    pos = 0
    for entry in cdol1:
        request[entry.tag] = data[pos:pos + entry.length].hex().upper()
        pos += entry.length
    stage = "GENERATE AC 1"
    r = ch.send(apdu.generate_ac(apdu.AC_ARQC, data), stage)
    _require(r.sw, stage)
    cid, atc, ac, iad = _parse_gac(r.data, stage)
    if cid & 0xC0 == 0x00:
        raise CardDeclined(f"the card declined offline (AAC, ATC {atc}) at GENERATE AC 1", stage=stage)
    return {"requested": "ARQC", "amount": txn.amount, "cdol1": request,
            "cvm": outcome.method, "cvm_results": outcome.results.hex().upper(),
            "cryptogram_type": CID_TYPES.get(cid & 0xC0, "RFU"), "cid": f"{cid:02X}", "atc": atc,
            "ac": ac.hex().upper(), "iad": iad.hex().upper() if iad else None}
