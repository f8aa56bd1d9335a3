"""An acquirer's audit of the authorisations a terminal sent, as an independent oracle would do it.

Every outgoing ``iso`` record of a capture is decoded with **pyiso8583** and the host simulator's dialect specs
(``firmware_sim.host.dialects``: the other side of the wire, which never imports posguard); field 55 is read by
the small BER-TLV reader below, not by posguard's. What a real issuer checks (``emv-keys.md`` (A) 1, 4, 5;
issue 11):

* the amount authorised in the cryptogram (9F02) is the amount of the request (field 4);
* an ARQC (9F26) is never sent twice, nor one card's ATC (9F36);
* a swiped sale (field 22 entry mode 02x / 90x, fallback 80x) carries its track 2 (field 35).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import iso8583

from firmware_sim.host.dialects import get_spec
from tests.firmware_sim.emv import tlv_items

#: authorisation requests: financial (0200) and authorisation (0100) messages of a purchase (processing code 00)
AUTH_MTIS = ("0100", "0200")
SWIPED_ENTRY = ("02", "90", "80")


@dataclass(frozen=True)
class Auth:
    line: int
    mti: str
    pan: str
    amount: int
    entry_mode: str
    icc: dict[str, bytes]
    track2: str | None
    stan: str = ""
    #: the host's field 39 for this request ("" when no answer was recorded)
    response_code: str = ""


def ber_tlv(data: bytes) -> dict[str, bytes]:
    """Primitive tags of a flat field 55 (EMV Book 3 Annex B), first occurrence of each."""
    out: dict[str, bytes] = {}
    for tag, value, _constructed in tlv_items(data):
        out.setdefault(tag, value)
    return out


def authorisations(capture: Path, dialect: str) -> list[Auth]:
    """The purchase authorisations the terminal sent, decoded by pyiso8583."""
    spec = get_spec(dialect)
    out = []
    answers: dict[tuple[str, str], str] = {}
    for n, line in enumerate(capture.read_text().splitlines(), 1):
        rec = json.loads(line)
        if rec.get("k") != "iso" or not rec.get("hex"):
            continue
        doc, _ = iso8583.decode(bytes.fromhex(rec["hex"]), spec)
        if rec.get("dir") == "in":
            answers[(doc["t"], str(doc.get("11", "")))] = str(doc.get("39", ""))
            continue
        if doc["t"] not in AUTH_MTIS or not str(doc.get("3", "")).startswith("00"):
            continue
        icc = ber_tlv(bytes.fromhex(doc["55"])) if doc.get("55") else {}
        out.append(Auth(n, doc["t"], doc.get("2", ""), int(doc["4"]), str(doc.get("22", "")), icc, doc.get("35"),
                        str(doc.get("11", ""))))
    response = {"0100": "0110", "0200": "0210"}
    return [Auth(a.line, a.mti, a.pan, a.amount, a.entry_mode, a.icc, a.track2, a.stan,
                 answers.get((response[a.mti], a.stan), "")) for a in out]


def amount_problems(auths: list[Auth]) -> list[str]:
    """Every chip authorisation whose 9F02 is not its field 4."""
    return [f"line {a.line}: 9F02 {int(a.icc['9F02'].hex())} != field 4 {a.amount}" for a in auths
            if "9F02" in a.icc and int(a.icc["9F02"].hex()) != a.amount]


def replay_problems(auths: list[Auth]) -> list[str]:
    """An ARQC, or a card's ATC, sent in more than one authorisation."""
    problems = []
    seen_ac: dict[bytes, int] = {}
    seen_atc: dict[tuple[str, bytes], int] = {}
    for a in auths:
        ac, atc = a.icc.get("9F26"), a.icc.get("9F36")
        if ac is not None:
            if ac in seen_ac:
                problems.append(f"line {a.line}: ARQC of line {seen_ac[ac]} sent again")
            seen_ac[ac] = a.line
        if atc is not None:
            key = (a.pan, atc)
            if key in seen_atc:
                problems.append(f"line {a.line}: card {a.pan[:6]}… ATC {int(atc.hex(), 16)} of line "
                                f"{seen_atc[key]} sent again")
            seen_atc[key] = a.line
    return problems


def swipe_problems(auths: list[Auth]) -> list[str]:
    """A swiped sale without its track 2 (field 35)."""
    return [f"line {a.line}: swiped sale (22 = {a.entry_mode}) without field 35" for a in auths
            if a.entry_mode[:2] in SWIPED_ENTRY and not a.track2]
