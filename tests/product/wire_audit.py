"""An acquirer's audit of the authorisations a terminal sent, as an independent oracle would do it.

Every outgoing ``iso`` record of a capture is decoded with **pyiso8583** and the host simulator's dialect specs
(``firmware_sim.host.dialects``: the other side of the wire, which never imports posguard); field 55 is read by
the small BER-TLV reader below, not by posguard's. What a real issuer checks (``emv-keys.md`` (A) 1, 4, 5;
issue 11):

* the amount authorised in the cryptogram (9F02) is the amount of the request (field 4);
* an ARQC (9F26) is never sent twice, nor one card's ATC (9F36);
* a swiped sale (field 22 entry mode 02x / 90x, fallback 80x) carries its track 2 (field 35);
* (issue 12) every request the acquirer wants MACed carries a MAC (64, or 128 with a secondary bitmap) and so does
  its answer; a chip sale whose 9F34 says online PIN carried a PIN block (the capture records field 52 as removed,
  never its value), says so in the CUP field 22, and was not refused for its PIN; the local date and time of
  fields 12/13 and tag 9A are the terminal's zone at the moment the request left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import iso8583

from firmware_sim.host.dialects import get_spec
from firmware_sim.host.mac import MACED_MTIS
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
    #: the fields the capture left out of this request (the PIN block 52, 53), by name
    removed: tuple[str, ...] = field(default=())


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
                        str(doc.get("11", "")), removed=tuple(rec.get("removed") or ())))
    response = {"0100": "0110", "0200": "0210"}
    return [Auth(a.line, a.mti, a.pan, a.amount, a.entry_mode, a.icc, a.track2, a.stan,
                 answers.get((response[a.mti], a.stan), ""), a.removed) for a in out]


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


def _wire(capture: Path, dialect: str) -> list[tuple[int, dict[str, object], dict[str, str]]]:
    """Every decodable ``iso`` record: (line, record, pyiso8583 document)."""
    spec = get_spec(dialect)
    out = []
    for n, line in enumerate(capture.read_text().splitlines(), 1):
        rec = json.loads(line)
        if rec.get("k") == "iso" and rec.get("hex"):
            doc, _ = iso8583.decode(bytes.fromhex(str(rec["hex"])), spec)
            out.append((n, rec, doc))
    return out


def mac_problems(capture: Path, dialect: str) -> list[str]:
    """A request the acquirer wants MACed (``firmware_sim.host.mac.MACED_MTIS``) sent without a MAC, or the answer
    to one without its MAC."""
    problems = []
    for n, rec, doc in _wire(capture, dialect):
        mti = doc["t"]
        request_mti = mti if rec["dir"] == "out" else mti[:2] + str(int(mti[2]) - 1) + mti[3]
        if request_mti in MACED_MTIS and "64" not in doc and "128" not in doc:
            problems.append(f"line {n}: {rec['dir']} {mti} stan {doc.get('11')} without a MAC")
    return problems


#: the answers that refuse a PIN: wrong (55), tries exceeded (75), a block the host cannot decrypt (CUP 99, ISO 81)
PIN_REFUSALS = {"cup": ("55", "75", "99"), "iso": ("55", "75", "81")}


def pin_problems(auths: list[Auth], dialect: str) -> list[str]:
    """An online-PIN chip sale (9F34 byte 1, b6-b1 = 000010: EMV Book 3 C3) without its PIN block, without the CUP
    field 22 PIN digit, or refused for its PIN."""
    refusals = PIN_REFUSALS["cup" if dialect == "cup" else "iso"]
    problems = []
    for a in auths:
        cvm = a.icc.get("9F34")
        if not cvm or cvm[0] & 0x3F != 0x02:
            continue
        if "52" not in a.removed:
            problems.append(f"line {a.line}: online PIN in 9F34 but no PIN block (52) was sent")
        if dialect == "cup" and a.entry_mode[2:3] != "1":
            problems.append(f"line {a.line}: online PIN but field 22 = {a.entry_mode} (third digit 1 = PIN included)")
        if a.response_code in refusals:
            problems.append(f"line {a.line}: the host refused the PIN (rc {a.response_code})")
    return problems


def local_time_problems(capture: Path, dialect: str, zone: str, slack: float = 5.0) -> list[str]:
    """A request whose field 13 (MMDD), 12 (hhmmss) or tag 9A (YYMMDD) is not the terminal's local date/time in
    ``zone`` when it left (the capture's ``started`` + ``t``, within ``slack`` seconds)."""
    lines = capture.read_text().splitlines()
    started = datetime.fromisoformat(json.loads(lines[0])["started"])
    tz = ZoneInfo(zone)
    problems = []
    for n, rec, doc in _wire(capture, dialect):
        if rec["dir"] != "out":
            continue
        at = started + timedelta(seconds=float(str(rec["t"])))
        near = [(at + timedelta(seconds=d)).astimezone(tz) for d in (-slack, 0.0, slack)]
        if "13" in doc and doc["13"] not in {t.strftime("%m%d") for t in near}:
            problems.append(f"line {n}: {doc['t']} field 13 {doc['13']} is not the local date "
                            f"{near[1].strftime('%m%d')} ({zone})")
        if "12" in doc:
            sent = datetime.combine(near[1].date(), datetime.strptime(doc["12"], "%H%M%S").time(), tz)
            if min(abs((sent - near[1]).total_seconds()), abs((sent - near[1]).total_seconds() - 86400),
                   abs((sent - near[1]).total_seconds() + 86400)) > slack:
                problems.append(f"line {n}: {doc['t']} field 12 {doc['12']} is not the local time "
                                f"{near[1].strftime('%H%M%S')} ({zone})")
        icc = ber_tlv(bytes.fromhex(doc["55"])) if doc.get("55") else {}
        if "9A" in icc and icc["9A"].hex() not in {t.strftime("%y%m%d") for t in near}:
            problems.append(f"line {n}: {doc['t']} 9A {icc['9A'].hex()} is not the local date ({zone})")
    return problems
