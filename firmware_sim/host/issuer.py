"""The card issuer behind the simulated acquirer: checks each financial request against its card file.

Independent of the card simulator's code (it never imports ``firmware_sim.card``): the EMV cryptography is
**pyemv** (``kd.derive_icc_mk_a``, ``kd.derive_common_sk``, ``ac.generate_ac``, ``ac.generate_arpc_1``,
``sm.generate_command_mac``), the card data is the card file ``cardfile.json`` — per PAN the PAN sequence
number, the issuer master key it was personalised under, the service code, the PIN (for online PIN checks)
and an optional issuer script — plus, in memory, the last ATC seen per card.

**Why a card file and not the card profiles.** The issuer and the card are two parties that share only what
personalisation gave both; the issuer reading ``firmware_sim.card.profiles`` would let a card bug and an issuer
bug agree. So the issuer loads its own JSON (the card's PAN, PSN, service code, PIN; the issuer master key
name) and derives the key itself; ``tests/firmware_sim/test_issuer.py`` checks the two records agree.

**Keys.** The issuer holds issuer master keys only and derives each card's ICC master key with EMV Option A
(EMV Book 2 A1.4.1: 3DES of PAN||PSN and its complement); the card profiles carry the same derived keys
(a test checks the two agree). Session key: EMV common session key (Book 2 A1.3.1, R = ATC || 00*6).

**The cryptogram method** (the simulator's CVN, the same for every test card; see
``firmware_sim/card/crypto.py``): ARQC = ISO 9797-1 MAC algorithm 3, padding method 2, over the EMV Book 2
Table 26 data (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37) || AIP (82) || ATC (9F36) || CVR (the last 4 bytes of the
IAD 9F10), all taken from field 55. ARPC method 1 (Book 2 8.2.1) with ARC = the response code (field 39,
two ASCII characters); field 55 of the answer carries ``91`` = ARPC || ARC for cards whose AIP supports
issuer authentication, and any issuer script as template 71 (before the second GENERATE AC) or 72 (after),
each ``9F18`` script id + ``86`` commands with a secure-messaging MAC (Book 2 9.2: session key from the ICC
MK with R = ARQC, MAC over header || ATC || ARQC || data — one ICC MK stands in for the SMI key).

**Declines** (for a sale or pre-authorisation of a card in the card file; voids, refunds, reversals and
advices are not authorised by ARQC and are never checked here; a reversal's field 55 is *read* —
:meth:`Issuer.read_reversal`: which answer of the card it carries, the ATC, issuer authentication, script
results — into the reversal's ledger note, and never declined for it). In order:

===========================================  ======  ======  =================================================
reason                                       CUP     ISO     source
===========================================  ======  ======  =================================================
chip entry (22 = 05x/07x) without field 55   30      30      format error [RC-ISO] (pos-flows.md §B)
field 55 unreadable or lacks an ARQC tag     30      30      format error
9F02 differs from field 4                    13      13      invalid amount [RC-ISO], [RC-CUP]
the ARQC does not verify                     05      05      do not honor; [RC-CUP] 05: "CVN verification
                                                             failed" (CVN验证失败)
ATC not greater than the last one seen       05      05      do not honor (a replayed cryptogram)
swiped (22 = 02x/90x/80x) without field 35   30      30      format error
chip card (service code 2xx/6xx in 35)       45      12      CUP 45 "insert the card" (请插卡交易, UnionPay
swiped without fallback                                      answer-code table); ISO has no code: 12 invalid
                                                             transaction [RC-ISO]
===========================================  ======  ======  =================================================

Fallback entry: 22 = 80x (ISO, CUP), or for CUP 22 = 02x with 60.5 (IC condition code) = 2 "previous IC
transaction failed". A declined request's reason is the ledger entry's ``note`` (``issuer: ...``) and is
kept in :attr:`Issuer.log`. Cards not in the card file are left to the approval rules (today's behaviour),
unless ``strict_unknown`` is set: then a sale/pre-auth on an unknown PAN is declined 14 (invalid card
number, [RC-CUP]).
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyemv import ac as emv_ac
from pyemv import kd as emv_kd
from pyemv import sm as emv_sm
from pyemv import tlv as emv_tlv

Doc = dict[str, str]

CARD_FILE = Path(__file__).with_name("cardfile.json")

#: EMV Book 2 8.1.1 Table 26, the terminal data of the cryptogram, with their lengths.
TABLE_26 = (("9F02", 6), ("9F03", 6), ("9F1A", 2), ("95", 5), ("5F2A", 2), ("9A", 3), ("9C", 1), ("9F37", 4))
ARQC_TAGS = ("9F26", "9F27", "9F36", "9F10", "82", *(tag for tag, _ in TABLE_26))
CVR_LENGTH = 4

#: Response code of each decline reason, per dialect family (see the table in the module docstring).
DECLINE_RC: dict[str, dict[str, str]] = {
    "cup": {"icc_missing": "30", "icc_malformed": "30", "amount_mismatch": "13", "arqc_failed": "05",
            "atc_replay": "05", "track2_missing": "30", "chip_swiped": "45", "unknown_card": "14"},
    "iso": {"icc_missing": "30", "icc_malformed": "30", "amount_mismatch": "13", "arqc_failed": "05",
            "atc_replay": "05", "track2_missing": "30", "chip_swiped": "12", "unknown_card": "14"},
}
CHIP_ENTRY = ("05", "07")
SWIPE_ENTRY = ("02", "90", "80")
FALLBACK_ENTRY = "80"
CHIP_SERVICE_CODES = ("2", "6")  # ISO 7813 service code first digit: 2/6 = integrated circuit card

#: Issuer script commands the issuer knows how to send (header, data): EMV Book 3 6.5.
SCRIPT_COMMANDS: dict[str, tuple[bytes, bytes]] = {
    "pin_unblock": (bytes.fromhex("84240000"), b""),
    "put_data": (bytes.fromhex("84DA9F58"), bytes.fromhex("03")),  # lower consecutive offline limit
    "application_block": (bytes.fromhex("841E0000"), b""),
    "bad_mac": (bytes.fromhex("84240000"), b""),  # a PIN unblock whose MAC is wrong (the card answers 6988)
}
SM_MAC_LENGTH = 8


class CardFileError(ValueError):
    """The card file is malformed or inconsistent."""


@dataclass
class CardRecord:
    pan: str
    psn: str
    icc_mk: bytes = field(repr=False)
    service_code: str
    pin: str = field(repr=False)
    issuer_auth: bool = True
    script: dict[str, str] | None = None
    last_atc: int | None = None

    def __repr__(self) -> str:  # never the PAN, the PIN or the key in a repr
        return f"CardRecord(pan=…{self.pan[-4:]}, psn={self.psn}, last_atc={self.last_atc})"


@dataclass
class Verdict:
    """What the issuer says about one request: ``rc`` None = no objection (the approval rules decide)."""

    rc: str | None = None
    reason: str = ""
    card: CardRecord | None = None
    icc: dict[str, bytes] = field(default_factory=dict, repr=False)
    script: dict[str, str] | None = None  # an issuer script to send with the answer
    bad_arpc: bool = False  # fault: send an ARPC with one bit flipped


def _tlv(tag: str, value: bytes) -> bytes:
    if len(value) < 0x80:
        length = bytes([len(value)])
    elif len(value) < 0x100:
        length = bytes([0x81, len(value)])
    else:
        length = bytes([0x82]) + len(value).to_bytes(2, "big")
    return bytes.fromhex(tag) + length + value


def field55_bytes(text: str) -> bytes:
    """Field 55 of a decoded request: hex text in every dialect the simulator speaks (raw text otherwise)."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode("latin-1")


class Issuer:
    """The issuer host: verifies ARQCs, checks the request against the card file, answers ARPC and scripts."""

    def __init__(self, dialect: str, *, card_file: str | Path | None = None, strict_unknown: bool = False) -> None:
        self.family = "cup" if dialect == "cup" else "iso"
        self.strict_unknown = strict_unknown
        self.cards = load_card_file(card_file or CARD_FILE)
        self.log: list[str] = []  # one line per decision on a known card (masked PAN, never card data)
        self._lock = threading.Lock()

    def pin_of(self, pan: str) -> str | None:
        """The card's PIN as the issuer knows it (for an online PIN check), or None for an unknown card."""
        card = self.cards.get(pan)
        return card.pin if card else None

    # -- the request -------------------------------------------------------------------------------
    def authorise(self, req: Doc, pan: str | None, *, fault: Any = None) -> Verdict:
        """Check a sale/pre-authorisation request. ``fault`` is a host fault of an issuer kind (or None)."""
        with self._lock:
            card = self.cards.get(pan or "")
            if card is None:
                if self.strict_unknown and pan:
                    return self._decline("unknown_card", "PAN not in the issuer's card file", None)
                return Verdict()
            verdict = self._check(req, card, fault)
            if verdict.rc is None:
                verdict.reason = "issuer: checks passed"
                kind = getattr(fault, "kind", None)
                verdict.bad_arpc = kind == "bad_arpc"
                if kind == "issuer_script":
                    verdict.script = {"template": getattr(fault, "template", None) or "72",
                                      "command": getattr(fault, "command", None) or "pin_unblock"}
                else:
                    verdict.script = card.script
            self.log.append(f"{_masked(card.pan)} {verdict.rc or 'ok'} {verdict.reason}")
            return verdict

    def _check(self, req: Doc, card: CardRecord, fault: Any) -> Verdict:
        entry = (req.get("22") or "")[:2]
        if entry in SWIPE_ENTRY:
            return self._check_swipe(req, card, entry)
        icc_text = req.get("55")
        if not icc_text:
            if entry in CHIP_ENTRY:
                return self._decline("icc_missing", f"chip entry (22={req.get('22')}) without field 55", card)
            return Verdict(card=card, reason="issuer: no chip data to check")
        try:
            icc = {k.upper(): v for k, v in emv_tlv.decode(field55_bytes(icc_text), flatten=True).items()
                   if isinstance(v, (bytes, bytearray))}
        except (emv_tlv.DecodeError, ValueError) as exc:
            return self._decline("icc_malformed", f"field 55 is not BER-TLV: {exc}", card)
        missing = [tag for tag in ARQC_TAGS if tag not in icc]
        if missing:
            return self._decline("icc_malformed", f"field 55 lacks {', '.join('55.' + t for t in missing)}", card)
        if getattr(fault, "kind", None) == "wrong_9f02":  # fault: 9F02 altered on the way (or by a bad terminal)
            icc["9F02"] = bytes.fromhex(f"{(int(icc['9F02'].hex()) + 1) % 10**12:012d}")
        amount = req.get("4") or ""
        if not amount.isdigit() or icc["9F02"].hex() != f"{int(amount):012d}":
            return self._decline("amount_mismatch",
                                 f"field 55.9F02 = {icc['9F02'].hex()} differs from field 4 = {amount}", card)
        atc = int.from_bytes(icc["9F36"], "big")
        if not self._arqc_ok(card, icc):
            return self._decline("arqc_failed", f"the ARQC (55.9F26) does not verify at ATC {atc}", card)
        if card.last_atc is not None and atc <= card.last_atc:
            return self._decline("atc_replay", f"ATC {atc} is not greater than the last one seen ({card.last_atc})",
                                 card)
        card.last_atc = atc
        return Verdict(card=card, icc=icc)

    def _check_swipe(self, req: Doc, card: CardRecord, entry: str) -> Verdict:
        track2 = req.get("35")
        if not track2:
            return self._decline("track2_missing", f"swiped entry (22={req.get('22')}) without field 35", card)
        _pan, sep, rest = track2.upper().replace("=", "D").partition("D")
        service_code = rest[4:7] if sep else ""
        fallback = entry == FALLBACK_ENTRY or (
            self.family == "cup" and entry == "02" and (req.get("60") or "")[12:13] == "2")
        if service_code[:1] in CHIP_SERVICE_CODES and not fallback:
            return self._decline("chip_swiped", f"chip card (service code {service_code}) swiped "
                                 f"without the fallback entry mode (22={req.get('22')}): insert the card", card)
        return Verdict(card=card, reason="issuer: swiped card checked")

    # -- the reversal -------------------------------------------------------------------------------
    def read_reversal(self, req: Doc, pan: str | None) -> str:
        """What a reversal's field 55 says, as the ledger note of the reversal (a reversal is never declined
        for its field 55: the acquirer must undo the charge whatever the chip data says).

        After a card decline the 0400 carries the card's answer to the second GENERATE AC (``pos-flows.md`` §B:
        95, 9F10, 9F1E, 9F36, DF31): the CVR in 9F10 (its last 4 bytes, byte 1 bits 8-7: 00 AAC, 01 TC, 10
        second GENERATE AC not requested — the layout of the Visa CVR, VIS 1.5 Appendix A) says which answer
        the terminal sent; the ATC is compared with the last one this issuer authorised for the card; CVR
        byte 3 says whether issuer authentication failed; DF31 holds the script results."""
        with self._lock:
            card = self.cards.get(pan or "")
            text = req.get("55")
            if not text:
                note = "issuer: reversal without field 55"
            else:
                try:
                    icc = {k.upper(): v for k, v in emv_tlv.decode(field55_bytes(text), flatten=True).items()
                           if isinstance(v, (bytes, bytearray))}
                except (emv_tlv.DecodeError, ValueError) as exc:
                    note = f"issuer: reversal field 55 is not BER-TLV ({exc}); reversed all the same"
                else:
                    note = ("issuer: reversal 55: " + "; ".join(_reversal_facts(icc, card)) if icc
                            else "issuer: reversal 55 holds no tag")
            if card is not None:
                self.log.append(f"{_masked(card.pan)} reversal {note}")
            return note

    def _decline(self, key: str, why: str, card: CardRecord | None) -> Verdict:
        rc = DECLINE_RC[self.family][key]
        return Verdict(rc=rc, reason=f"issuer: {why}", card=card)

    # -- cryptography (pyemv) ----------------------------------------------------------------------
    @staticmethod
    def _session_key(card: CardRecord, r: bytes) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return emv_kd.derive_common_sk(card.icc_mk, r)

    def _arqc_ok(self, card: CardRecord, icc: dict[str, bytes]) -> bool:
        data = b"".join(icc[tag].rjust(length, b"\x00")[-length:] for tag, length in TABLE_26)
        data += icc["82"] + icc["9F36"] + icc["9F10"][-CVR_LENGTH:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = emv_ac.generate_ac(self._session_key(card, icc["9F36"] + bytes(6)), data)
        return bool(expected == icc["9F26"])

    def response_55(self, verdict: Verdict, rc: str) -> str | None:
        """Field 55 of the answer (hex text) for a request that passed the checks, or None."""
        card = verdict.card
        if card is None or not verdict.icc:
            return None
        arqc, atc = verdict.icc["9F26"], verdict.icc["9F36"]
        out = b""
        if card.issuer_auth:
            arc = rc.encode("ascii")[:2].ljust(2, b"0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arpc = emv_ac.generate_arpc_1(self._session_key(card, atc + bytes(6)), arqc, arc)
            if verdict.bad_arpc:
                arpc = bytes([arpc[0] ^ 0x01]) + arpc[1:]
            out += _tlv("91", arpc + arc)
        if verdict.script and rc == "00":
            out += self._script(card, verdict.script, arqc, atc)
        return out.hex().upper() or None

    def _script(self, card: CardRecord, script: dict[str, str], arqc: bytes, atc: bytes) -> bytes:
        template, command = script.get("template", "72"), script.get("command", "pin_unblock")
        if template not in ("71", "72") or command not in SCRIPT_COMMANDS:
            raise CardFileError(f"issuer script {script!r}: template 71|72, command one of {sorted(SCRIPT_COMMANDS)}")
        header, data = SCRIPT_COMMANDS[command]
        lc = bytes([len(data) + SM_MAC_LENGTH])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mac = emv_sm.generate_command_mac(self._session_key(card, arqc), header + lc + atc + arqc + data)
        if command == "bad_mac":
            mac = bytes([mac[0] ^ 0xFF]) + mac[1:]
        apdu = header + lc + data + mac
        script_id = bytes.fromhex("00000001") if template == "71" else bytes.fromhex("00000002")
        return _tlv(template, _tlv("9F18", script_id) + _tlv("86", apdu))


#: CVR byte 1 bits 8-7: the card's answer to the second GENERATE AC (VIS 1.5 Appendix A)
CVR_SECOND_GAC = {0b00: "AAC", 0b01: "TC", 0b10: "not requested", 0b11: "RFU"}
CVR3_ISSUER_AUTH_FAILED = 0x80


def _reversal_facts(icc: dict[str, bytes], card: CardRecord | None) -> list[str]:
    """The facts of a reversal's field 55, each a short phrase (no card data: the ATC and flags only)."""
    facts = []
    iad = icc.get("9F10", b"")
    if len(iad) >= CVR_LENGTH:
        cvr = iad[-CVR_LENGTH:]
        second = CVR_SECOND_GAC[cvr[0] >> 6]
        facts.append(f"card answer at GENERATE AC 2: {second}" if second != "not requested"
                     else "GENERATE AC 2 not requested (the first GENERATE AC's data)")
        if cvr[2] & CVR3_ISSUER_AUTH_FAILED:
            facts.append("issuer authentication failed")
    else:
        facts.append("no 9F10")
    if "9F36" in icc:
        atc = int.from_bytes(icc["9F36"], "big")
        if card is not None and card.last_atc is not None:
            facts.append(f"ATC {atc} {'=' if atc == card.last_atc else '!='} the last authorised ({card.last_atc})")
        else:
            facts.append(f"ATC {atc}")
    if "DF31" in icc:
        facts.append(f"script results DF31 {icc['DF31'].hex().upper()}")
    return facts


def _masked(pan: str) -> str:
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:] if len(pan) > 10 else "*" * len(pan)


def load_card_file(path: str | Path) -> dict[str, CardRecord]:
    """The cards of a card file, with each ICC master key derived (Option A) from its issuer master key."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        imks = {name: bytes.fromhex(key) for name, key in raw["issuer_master_keys"].items()}
        cards: dict[str, CardRecord] = {}
        for pan, entry in raw["cards"].items():
            if entry["imk"] not in imks:
                raise CardFileError(f"card …{pan[-4:]}: unknown issuer master key {entry['imk']!r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                icc_mk = emv_kd.derive_icc_mk_a(imks[entry["imk"]], pan, entry["psn"])
            cards[pan] = CardRecord(pan=pan, psn=entry["psn"], icc_mk=icc_mk, service_code=entry["service_code"],
                                    pin=entry["pin"], issuer_auth=bool(entry.get("issuer_auth", True)),
                                    script=entry.get("script"))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, CardFileError):
            raise
        raise CardFileError(f"card file {path}: {type(exc).__name__}: {exc}") from None
    return cards
