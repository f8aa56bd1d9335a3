"""An acquirer's audit of everything a terminal sent and received in a recorded day, beyond ``wire_audit.py``.

Independent of posguard *and* of the host simulator: every ``iso`` record of a capture is decoded by pyiso8583
with the spec dicts declared below, written from ``../shared/reference/pos-flows.md`` (B) "CUP framing" and
``docs/CONTRACTS.md`` (dialect ``cup``: 11-byte TPDU + header, BCD MTI, binary bitmap, n/z fields and LL/LLL
lengths BCD, 37/38/39/41/42/49 ASCII, 52/55/62/64 binary) and, for ``iso87ascii``, pyiso8583's own
``default_ascii`` (CONTRACTS: "exactly like pyiso8583's default_ascii"). Field 55 is read by the suite's own
BER-TLV walker (``tests.firmware_sim.emv``, which trusts neither posguard nor the simulator). What a real acquirer checks (sources in each function's docstring):

* mandatory fields per message class (:data:`MANDATORY`);
* STAN (11) unique per terminal per day, except a CUP reversal, which repeats its original's STAN;
* every answer: MTI = request + 10, fields 3/4/11/41/42 echoed; every request answered or timed out, a
  reversible request that timed out reversed with its reason (CUP 39 = 98) or its original's data (ISO 90);
  nothing sent twice under one MTI without the repeat flag (MTI xx1);
* voids and reversals carry the original's data (37/38, CUP 61; ISO 90) and its PAN, amount and expiry;
* batch uploads (0320) carry what the authorisation carried (2, 4, 22, 23, 37, 38) and the card's final
  cryptogram (55: 9F27 = 40 TC, the ATC of the authorisation); the uploads are exactly the day's approvals,
  the CUP batch end counts them, and the settlement totals (CUP 48 per side, ISO 74/76/86/88) add up to them;
* card data: no clear PAN, track or PIN block in the journal;
* (acq-audit, second pass) a reversal is the saved request without 26/35/36/52/53; 52, 53 and 26 travel together,
  52 exactly when the card's CVM is online PIN; field 22 says how the card came in *for this request*: a request
  that claims a chip, contactless or stripe read has a presentation of that card in the capture since its last
  read (a void keyed from the journal is 01x), and the code matches how it was presented (a fallback 80x / CUP
  02x with 60.5 = 2); 23 only with a chip entry mode.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import iso8583
from iso8583 import specs as pyiso_specs

from tests.firmware_sim.emv import tlv_items

Doc = dict[str, Any]


# -- the specs (pos-flows.md (B) "CUP framing"; CONTRACTS.md dialects) ------------------------------------
def _n(digits: int, len_bytes: int = 0, *, right: bool = False) -> dict[str, Any]:
    """An n/z field packed BCD; variable ones with a BCD length counted in digits."""
    spec: dict[str, Any] = {"data_enc": "b", "len_enc": "bcd", "len_type": len_bytes, "max_len": digits,
                            "len_count": "nibbles", "desc": ""}
    spec["right_pad" if (right or len_bytes) else "left_pad"] = "0"
    return spec


def _a(length: int, len_bytes: int = 0) -> dict[str, Any]:
    return {"data_enc": "ascii", "len_enc": "bcd", "len_type": len_bytes, "max_len": length, "desc": ""}


def _b(length: int, len_bytes: int = 0) -> dict[str, Any]:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_bytes, "max_len": length, "desc": ""}


CUP_SPEC: dict[str, dict[str, Any]] = {
    "h": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 11, "desc": "TPDU 60+dest+src, header 6"},
    "t": _n(4),
    "p": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "bitmap"},
    "1": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "secondary bitmap"},
    "2": _n(19, 1), "3": _n(6), "4": _n(12), "11": _n(6), "12": _n(6), "13": _n(4), "14": _n(4), "15": _n(4),
    "22": _n(3, right=True), "23": _n(3, right=True), "25": _n(2), "26": _n(2), "32": _n(11, 1),
    "35": _n(37, 1), "36": _n(104, 2), "37": _a(12), "38": _a(6), "39": _a(2), "41": _a(8), "42": _a(15),
    "44": _a(25, 1), "48": _n(322, 2), "49": _a(3), "52": _b(8), "53": _n(16), "54": _a(20, 2),
    "55": _b(255, 2), "60": _n(17, 2), "61": _n(29, 2), "62": _b(512, 2), "63": _a(163, 2), "64": _b(8),
}
SPECS: dict[str, dict[str, dict[str, Any]]] = {"cup": CUP_SPEC, "iso87ascii": copy.deepcopy(pyiso_specs.default_ascii)}


def tlv(data: bytes) -> dict[str, bytes]:
    """Primitive tags of a flat field 55 (EMV Book 3 Annex B), first of each: the suite's own TLV walker
    (``tests.firmware_sim.emv``, independent of posguard and of the simulator, as wire_audit uses it)."""
    out: dict[str, bytes] = {}
    for tag, value, _constructed in tlv_items(data):
        out.setdefault(tag, value)
    return out


@dataclass
class Msg:
    line: int
    dir: str
    t: float
    doc: Doc = field(repr=False)  # card data (the capture's PANs): never in an assertion message
    removed: tuple[str, ...] = ()

    @property
    def mti(self) -> str:
        return str(self.doc["t"])

    def get(self, field: str) -> str:
        return str(self.doc.get(field, ""))

    @property
    def icc(self) -> dict[str, bytes]:
        return tlv(bytes.fromhex(self.get("55"))) if self.get("55") else {}

    def where(self) -> str:
        return f"line {self.line}: {self.dir} {self.mti} stan {self.get('11')}"


@dataclass
class Day:
    dialect: str
    messages: list[Msg]
    timeouts: list[tuple[int, str]]  # (line, detail) of the capture's link timeouts
    #: (line, test PAN, entry mode) of each card presented (the capture's ``card`` records: one per presentation)
    presentations: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def cup(self) -> bool:
        return self.dialect == "cup"

    def out(self) -> list[Msg]:
        return [m for m in self.messages if m.dir == "out"]

    def answer(self, req: Msg) -> Msg | None:
        """The first incoming message after ``req`` that answers it (MTI + 10, same STAN)."""
        want = response_mti(req.mti)
        for m in self.messages:
            if m.dir == "in" and m.line > req.line and m.mti == want and m.get("11") == req.get("11"):
                return m
        return None

    def kind(self, m: Msg) -> str:
        return kind_of(m, self.cup)


def response_mti(mti: str) -> str:
    return mti[:2] + str(int(mti[2]) + 1) + mti[3]


def read_day(capture: Path, dialect: str) -> Day:
    spec = SPECS[dialect]
    messages, timeouts, presentations = [], [], []
    for n, line in enumerate(capture.read_text().splitlines(), 1):
        rec = json.loads(line)
        if rec.get("k") == "link" and rec.get("event") == "timeout":
            timeouts.append((n, str(rec.get("detail", ""))))
        if rec.get("k") == "card":
            presentations.append((n, str(rec.get("pan", "")), str(rec.get("entry_mode", ""))))
        if rec.get("k") != "iso" or not rec.get("hex"):
            continue
        doc, _ = iso8583.decode(bytes.fromhex(str(rec["hex"])), spec)
        messages.append(Msg(n, str(rec["dir"]), float(rec["t"]), doc, tuple(rec.get("removed") or ())))
    return Day(dialect, messages, timeouts, presentations)


def kind_of(m: Msg, cup: bool) -> str:
    """The message class (pos-flows.md (B) CUP transaction table; PAX international table)."""
    mti, proc = m.mti[:3] + "0", m.get("3")
    if mti in ("0800", "0820"):
        return "network"
    if mti == "0400" or mti == "0420":
        return "reversal"
    if mti == "0500":
        return "settlement"
    if mti == "0320":
        code = m.get("60")[8:11] if cup else ""
        return "batch_end" if code in ("202", "207") else "upload"
    if cup:
        return {("0200", "22"): "sale", ("0200", "23"): "void", ("0220", "25"): "refund",
                ("0100", "10"): "preauth"}.get((mti, m.get("60")[:2]), "other")
    return {("0200", "00"): "sale", ("0200", "02"): "void", ("0200", "20"): "refund",
            ("0100", "00"): "preauth"}.get((mti, proc[:2]), "other")


# -- mandatory fields --------------------------------------------------------------------------------------
#: fields every request of a class carries: pos-flows.md (B) (CUP table: 3, 25, 60.1; 37/38 + 61 in voids and
#: refunds; 48 + 60.3 in settlement; 60.3 in network management; "Key fields" 11/41/42), ISO 8583:1987 (7
#: transmission time, 70 network code, 90 in a reversal that does not repeat the STAN; 74/76/86/88 totals).
MANDATORY: dict[str, dict[str, tuple[str, ...]]] = {
    "cup": {
        "sale": ("3", "4", "11", "22", "25", "41", "42", "49", "60"),
        "void": ("3", "4", "11", "22", "25", "37", "38", "41", "42", "49", "60", "61"),
        "refund": ("3", "4", "11", "22", "25", "37", "41", "42", "49", "60", "61"),
        "reversal": ("3", "4", "11", "22", "25", "39", "41", "42", "49", "60"),
        "settlement": ("11", "41", "42", "48", "49", "60"),
        "upload": ("2", "3", "4", "11", "22", "37", "41", "42", "60", "61"),
        "batch_end": ("11", "41", "42", "48", "60"),
        "network": ("11", "41", "42", "60"),
    },
    "iso87ascii": {
        "sale": ("3", "4", "7", "11", "12", "13", "22", "25", "41", "42", "49"),
        "void": ("3", "4", "7", "11", "12", "13", "22", "25", "37", "38", "41", "42", "49"),
        "refund": ("3", "4", "7", "11", "12", "13", "22", "25", "41", "42", "49"),
        "reversal": ("3", "4", "7", "11", "22", "25", "41", "42", "49", "90"),
        "settlement": ("3", "11", "41", "42", "49", "74", "76", "86", "88"),
        "upload": ("2", "3", "4", "11", "22", "37", "41", "42", "60"),
        "network": ("7", "11", "41", "42", "70"),
    },
}
#: a card request names the card: 2 or 35 (pos-flows.md (B) "Field 35"), and its expiry (14) with 2
CARD_KINDS = ("sale", "void", "refund", "preauth", "reversal")


def mandatory_problems(day: Day) -> list[str]:
    table = MANDATORY[day.dialect]
    problems = []
    for m in day.out():
        kind = day.kind(m)
        if kind not in table:
            problems.append(f"{m.where()}: a {kind!r} request the acquirer has no rule for")
            continue
        missing = [f for f in table[kind] if f not in m.doc]
        if kind in CARD_KINDS and "2" not in m.doc and "35" not in m.doc:
            missing.append("2|35")
        if missing:
            problems.append(f"{m.where()} ({kind}): missing field(s) {', '.join(missing)}")
        if "52" in m.removed and m.get("22")[2:3] != "1" and day.cup:
            problems.append(f"{m.where()}: PIN block sent but 22 = {m.get('22')}")
    return problems


# -- STAN and repeats --------------------------------------------------------------------------------------
def stan_problems(day: Day) -> list[str]:
    """STAN unique per terminal (41) per local day (13, else the first request's); a CUP reversal repeats its
    original's STAN (pos-flows.md (B) "11 STAN"); a message repeated under one MTI carries the repeat flag
    (MTI xx1, pos-flows.md (B) "Message types")."""
    problems = []
    seen: dict[tuple[str, str], Msg] = {}
    for m in day.out():
        key = (m.get("41"), m.get("11"))
        first = seen.get(key)
        if first is None:
            seen[key] = m
            continue
        if day.cup and day.kind(m) == "reversal" and day.kind(first) in ("sale", "void", "preauth"):
            continue  # CUP: the 0400 repeats the original's STAN
        if m.mti[3] == "1" and m.mti[:3] == first.mti[:3]:
            continue  # a repeat, flagged as one
        problems.append(f"{m.where()}: STAN {m.get('11')} already used at line {first.line} ({first.mti})")
    return problems


# -- answers ----------------------------------------------------------------------------------------------
ECHOED = ("3", "4", "11", "41", "42")


def response_problems(day: Day) -> list[str]:
    """Every answer is to a request sent before it (MTI + 10, pos-flows.md (B) "Response validation") and
    echoes 3, 4, 11, 41, 42; every request was answered or timed out; a reversible request that timed out is
    reversed (its 0400 follows)."""
    problems = []
    requests = day.out()
    for m in day.messages:
        if m.dir != "in":
            continue
        reqs = [r for r in requests if r.line < m.line and response_mti(r.mti) == m.mti and r.get("11") == m.get("11")]
        if not reqs:
            problems.append(f"{m.where()}: an answer to no request")
            continue
        req = reqs[-1]
        for f in ECHOED:
            if f in req.doc and req.get(f) != m.get(f):
                problems.append(f"{m.where()}: field {f} {m.get(f)!r} does not echo the request's {req.get(f)!r}")
    for r in requests:
        if day.answer(r) is not None:
            continue
        timed_out = [line for line, detail in day.timeouts if line > r.line and f"STAN {int(r.get('11'))} " in detail]
        if not timed_out:
            problems.append(f"{r.where()}: never answered, and no timeout recorded")
            continue
        if day.kind(r) in ("sale", "void", "preauth") and original_of_reversal(day, r) is None:
            problems.append(f"{r.where()}: timed out (line {timed_out[0]}) but never reversed")
    return problems


def original_of_reversal(day: Day, req: Msg) -> Msg | None:
    """The 0400 that reverses ``req``: CUP by the same STAN (39 = 98 for a timeout), ISO by field 90."""
    for m in day.out():
        if m.line <= req.line or day.kind(m) != "reversal":
            continue
        if day.cup and m.get("11") == req.get("11") and m.get("41") == req.get("41"):
            return m
        if not day.cup and m.get("90")[:10] == req.mti + req.get("11"):
            return m
    return None


# -- corrections -------------------------------------------------------------------------------------------
def _same_card(m: Msg, orig: Msg) -> list[str]:
    return [f"field {f} {m.get(f)!r} != the original's {orig.get(f)!r} (line {orig.line})"
            for f in ("2", "14") if orig.get(f) != m.get(f)]


def correction_problems(day: Day) -> list[str]:
    """Voids name the approved original by 37/38 (and CUP 61 = its batch + trace) and carry its PAN, expiry and
    full amount (pos-flows.md (A) wrong card, wrong amount; (D) void window); a refund of a sale of the day carries
    its PAN and expiry, at most its amount, and CUP 61 = its batch + trace + the host's MMDD; a reversal carries its original's
    PAN, amount, expiry and processing code, CUP its STAN and a reason in 39 (98 after a timeout), ISO field 90
    = original MTI + STAN + transmission time (pos-flows.md (B) "90", "39 in a CUP reversal request")."""
    problems = []
    approved: dict[str, tuple[Msg, Msg]] = {}  # RRN -> (request, answer)
    for m in day.out():
        answer = day.answer(m)
        kind = day.kind(m)
        if kind == "void":
            pair = approved.get(m.get("37"))
            if pair is None:
                problems.append(f"{m.where()}: void of RRN {m.get('37')!r}, no approved sale of the day has it")
                continue
            orig, orig_answer = pair
            problems += [f"{m.where()}: {p}" for p in _same_card(m, orig)]
            if m.get("4") != orig.get("4"):
                problems.append(f"{m.where()}: void of {m.get('4')} for a sale of {orig.get('4')} (full amount only)")
            if m.get("38") != orig_answer.get("38"):
                problems.append(f"{m.where()}: 38 {m.get('38')!r} != the original's auth code {orig_answer.get('38')!r}")
            if day.cup and m.get("61")[:12] != orig.get("60")[2:8] + orig.get("11"):
                problems.append(f"{m.where()}: 61 {m.get('61')!r} is not the original's batch + trace "
                                f"{orig.get('60')[2:8] + orig.get('11')}")
        if kind == "refund" and m.get("37") in approved:
            orig, orig_answer = approved[m.get("37")]
            problems += [f"{m.where()}: {p}" for p in _same_card(m, orig)]
            if int(m.get("4") or 0) > int(orig.get("4") or 0):
                problems.append(f"{m.where()}: refund of {m.get('4')} exceeds the sale's {orig.get('4')}")
            host_date = orig_answer.get("13") or orig_answer.get("15")
            want = orig.get("60")[2:8] + orig.get("11") + host_date
            if day.cup and m.get("61") != want:  # pos-flows.md (A) wrong card: 61 = batch + trace + MMDD;
                # emv-keys.md (F): the MMDD is the host's date of the original (its answer's 13, else 15)
                problems.append(f"{m.where()}: refund 61 {m.get('61')!r} != the original's batch + trace + host "
                                f"date {want!r}")
        if kind == "reversal":
            orig = _reversed(day, m)
            if orig is None:
                problems.append(f"{m.where()}: a reversal of no request sent before it")
                continue
            problems += [f"{m.where()}: {p}" for p in _same_card(m, orig)]
            for f in ("3", "4"):
                if m.get(f) != orig.get(f):
                    problems.append(f"{m.where()}: field {f} {m.get(f)!r} != the original's {orig.get(f)!r}")
            if day.cup and m.get("39") not in ("98", "96", "06", "A0"):
                problems.append(f"{m.where()}: reversal reason (39) {m.get('39')!r} is none of 98/96/06/A0")
            if day.cup and day.answer(orig) is None and m.get("39") != "98":
                problems.append(f"{m.where()}: the original timed out but the reason is {m.get('39')!r}, not 98")
            if not day.cup and m.get("90")[4:20] != orig.get("11") + orig.get("7"):
                problems.append(f"{m.where()}: 90 {m.get('90')!r} does not carry the original's STAN + 7")
        if answer is not None and answer.get("39") == "00" and kind in ("sale", "preauth") and answer.get("37"):
            approved[answer.get("37")] = (m, answer)
    return problems


def _reversed(day: Day, rev: Msg) -> Msg | None:
    for m in reversed([m for m in day.out() if m.line < rev.line and day.kind(m) != "reversal"]):
        if day.cup and m.get("11") == rev.get("11"):
            return m
        if not day.cup and rev.get("90")[:10] == m.mti + m.get("11"):
            return m
    return None


# -- the batch: what stands, its uploads and totals ---------------------------------------------------------
@dataclass
class Booked:
    request: Msg
    answer: Msg

    @property
    def amount(self) -> int:
        return int(self.request.get("4"))


def standing_sales(day: Day) -> list[Booked]:
    """The sales the host approved (0210 RC 00) that no approved void and no accepted reversal undid, each void
    undone by an accepted reversal of the void standing again (pos-flows.md (A) void mismatch)."""
    sales: dict[str, Booked] = {}
    voided: dict[str, str] = {}  # void request STAN -> the sale's RRN
    for m in day.out():
        answer = day.answer(m)
        kind = day.kind(m)
        if kind == "sale" and answer is not None and answer.get("39") == "00":
            sales[answer.get("37")] = Booked(m, answer)
        elif kind == "void" and answer is not None and answer.get("39") == "00":
            voided[m.get("11")] = m.get("37")
        elif kind == "reversal" and answer is not None and answer.get("39") in ("00", "12", "25"):
            orig = _reversed(day, m)
            if orig is None:
                continue
            if day.kind(orig) == "void":
                voided.pop(orig.get("11"), None)
            elif day.kind(orig) == "sale":
                for rrn, b in list(sales.items()):
                    if b.request is orig:
                        del sales[rrn]
    for rrn in voided.values():
        sales.pop(rrn, None)
    return list(sales.values())


def upload_problems(day: Day) -> list[str]:
    """Each 0320 upload names a standing sale by 37 and carries what its authorisation carried (2, 4, 22, 23,
    38: the acquirer matches the upload to the authorisation, emv-keys.md (A) 10; CONTRACTS "Uploads ... carry
    2, 22, 23 and 55"), and a chip sale's 55 is the card's final decision: 9F27 = 40 (TC) with the ATC of the
    authorisation. Each standing sale is uploaded once; the CUP batch end (60.3 202/207) counts the uploads in
    48 (pos-flows.md (A) not arrived)."""
    problems = []
    standing = {b.answer.get("37"): b for b in standing_sales(day)}
    uploads = [m for m in day.out() if day.kind(m) == "upload"]
    if not uploads:
        return problems
    seen: dict[str, Msg] = {}
    for m in uploads:
        rrn = m.get("37")
        b = standing.get(rrn)
        if b is None:
            problems.append(f"{m.where()}: upload of RRN {rrn!r}, which is no standing sale")
            continue
        first = seen.get(rrn)
        if first is not None and m.get("60")[8:11] == first.get("60")[8:11] and not (
                m.mti == "0321" and m.get("11") == first.get("11") and day.answer(first) is None):
            problems.append(f"{m.where()}: RRN {rrn} uploaded again (line {first.line}), not as its repeat (0321, "
                            f"STAN {first.get('11')}) after a lost answer")
        seen[rrn] = m
        for f in ("2", "4", "22", "23"):
            if m.get(f) != b.request.get(f):
                problems.append(f"{m.where()}: field {f} {m.get(f)!r} != the authorisation's {b.request.get(f)!r} "
                                f"(line {b.request.line})")
        if m.get("38") != b.answer.get("38"):
            problems.append(f"{m.where()}: 38 {m.get('38')!r} != the approval's {b.answer.get('38')!r}")
        auth_icc = b.request.icc
        if auth_icc:
            icc = m.icc
            if icc.get("9F27") != b"\x40":
                problems.append(f"{m.where()}: 55 9F27 {icc.get('9F27', b'').hex()} is not a TC (40)")
            if icc.get("9F36") != auth_icc.get("9F36"):
                problems.append(f"{m.where()}: 55 9F36 {icc.get('9F36', b'').hex()} != the authorisation's "
                                f"{auth_icc['9F36'].hex()}")
            if "9F02" in icc and int(icc["9F02"].hex()) != int(m.get("4")):
                problems.append(f"{m.where()}: 55 9F02 {int(icc['9F02'].hex())} != field 4 {int(m.get('4'))}")
            if icc.get("9F26") == auth_icc.get("9F26"):
                problems.append(f"{m.where()}: 55 9F26 is the ARQC, not the card's TC")
    tc_only = day.cup and {m.get("60")[8:11] for m in uploads} == {"203"}  # balanced: the chip sales' TCs
    for rrn, b in standing.items():
        if rrn not in seen and not (tc_only and b.request.get("22")[:2] not in ("05", "07")):
            problems.append(f"line {b.request.line}: standing sale RRN {rrn} was not uploaded")
    for m in day.out():
        if day.kind(m) == "batch_end" and int(m.get("48") or -1) != len(seen):
            problems.append(f"{m.where()}: batch end counts {m.get('48')!r}, {len(seen)} transactions were uploaded")
    return problems


def settlement_action_problems(day: Day) -> list[str]:
    """What follows each settlement answer (pos-flows.md (A) not arrived). CUP 0510: every 48 flag 1 (balanced)
    -> TC uploads (60.3 203) then batch end 207; a flag 2 (unbalanced) -> detail uploads (201/205) then batch end
    202. International 0510: RC 00 -> nothing more; RC 95 -> a 0320 per transaction, then 0500 with 3 = 96xxxx."""
    problems = []
    out = day.out()
    for req in [m for m in out if day.kind(m) == "settlement"]:
        answer = day.answer(req)
        if answer is None or answer.get("39") not in ("00", "95"):
            continue
        after = [m for m in out if m.line > answer.line]
        uploads: list[Msg] = []
        for m in after:
            if day.kind(m) != "upload":
                break
            uploads.append(m)
        rest = after[len(uploads):]
        nxt = rest[0] if rest else None
        if day.cup:
            flags = answer.get("48")[30::31]
            balanced = bool(flags) and set(flags) == {"1"}
            codes = {m.get("60")[8:11] for m in uploads}
            want_codes, want_end = ({"203"}, "207") if balanced else ({"201", "205"}, "202")
            if not codes <= want_codes:
                problems.append(f"{answer.where()}: flags {flags!r}, but uploads with 60.3 {sorted(codes)}")
            if nxt is None or day.kind(nxt) != "batch_end" or nxt.get("60")[8:11] != want_end:
                problems.append(f"{answer.where()}: flags {flags!r}, not followed by batch end {want_end}")
        elif answer.get("39") == "95":
            if not uploads:
                problems.append(f"{answer.where()}: RC 95 but no batch upload followed")
            if nxt is None or day.kind(nxt) != "settlement" or not nxt.get("3").startswith("96"):
                problems.append(f"{answer.where()}: RC 95, the upload not closed by a 0500 96xxxx")
        elif uploads or (nxt is not None and day.kind(nxt) == "settlement"):
            problems.append(f"{answer.where()}: balanced (RC 00), yet more was sent for the batch")
    return problems


def standing_refunds(day: Day) -> list[tuple[Booked, Booked | None]]:
    """The refunds the host approved that no accepted reversal undid, each with the sale it names (37) when that
    sale is of the day (pos-flows.md (B): CUP 0220 60.1 = 25; international 0200 / 20xxxx)."""
    sales = {}
    for m in day.out():
        a = day.answer(m)
        if day.kind(m) == "sale" and a is not None and a.get("39") == "00":
            sales[a.get("37")] = Booked(m, a)
    out = []
    for m in day.out():
        a = day.answer(m)
        if day.kind(m) != "refund" or a is None or a.get("39") != "00":
            continue
        undone = [r for r in day.out() if day.kind(r) == "reversal" and _reversed(day, r) is m
                  and (day.answer(r) or Msg(0, "in", 0.0, {})).get("39") in ("00", "12", "25")]
        if not undone:
            out.append((Booked(m, a), sales.get(m.get("37"))))
    return out


def _side(b: Booked) -> str:
    """CUP field 48's groups: domestic = UnionPay cards (the answer's 63 = CUP), foreign = the rest."""
    return "domestic" if b.answer.get("63")[:3] == "CUP" else "foreign"


def totals_problems(day: Day) -> list[str]:
    """The settlement request's totals are the standing sales (debits) and refunds (credits, on their sale's
    side): CUP 48 per side (debit amount n12, count n3, credit amount n12, count n3, flag n1 = 0 in a request),
    ISO 76/88 (debits: number, amount) and 74/86 (credits) (pos-flows.md (B) "48"; the international 0500 of
    firmware_sim/host/processor.py's table)."""
    problems = []
    standing = standing_sales(day)
    refunds = standing_refunds(day)
    for m in day.out():
        if day.kind(m) != "settlement":
            continue
        if day.cup:
            text = m.get("48")
            for i, side in enumerate(("domestic", "foreign")):
                group = text[31 * i:31 * (i + 1)]
                mine = [b for b in standing if _side(b) == side]
                back = [r for r, sale in refunds if sale is not None and _side(sale) == side]
                want = (f"{sum(b.amount for b in mine):012d}{len(mine):03d}"
                        f"{sum(r.amount for r in back):012d}{len(back):03d}0")
                if group != want:
                    problems.append(f"{m.where()}: 48 {side} group {group!r} != the day's standing sales {want!r}")
        else:
            got = (m.get("76"), m.get("88"), m.get("74"), m.get("86"))
            back = [r for r, _sale in refunds]
            want = (f"{len(standing):010d}", f"{sum(b.amount for b in standing):016d}", f"{len(back):010d}",
                    f"{sum(r.amount for r in back):016d}")
            if got != want:
                problems.append(f"{m.where()}: totals 76/88/74/86 {got} != the day's standing sales {want}")
    return problems


# -- what a reversal leaves out; PIN fields; how the card came in ------------------------------------------
#: the saved request's fields a reversal never carries: the track data and the PIN block with its control
#: fields (pos-flows.md (B) reversal mechanics: "without 35/36/52/53"; openpos ``trans.c``, where the 0400 is
#: saved, also removes 26, the PIN capture code, which means nothing without the block it describes)
REVERSAL_DROPS = ("26", "35", "36", "52", "53")


def _sent(m: Msg, f: str) -> bool:
    """Whether ``m`` carried field ``f`` on the wire (the capture removes PIN blocks and keys, naming them)."""
    return f in m.doc or f in m.removed


def reversal_copy_problems(day: Day) -> list[str]:
    """A reversal (0400/0420 and repeats) that carries a field of :data:`REVERSAL_DROPS`."""
    return [f"{m.where()}: the reversal carries field(s) {', '.join(fs)}, which the saved copy leaves out"
            for m in day.out() if day.kind(m) == "reversal"
            for fs in [[f for f in REVERSAL_DROPS if _sent(m, f)]] if fs]


#: the requests a cardholder's PIN is entered for (emv-keys.md (C): online PIN goes in the authorisation)
PIN_KINDS = ("sale", "preauth")


def pin_field_problems(day: Day) -> list[str]:
    """52 (PIN block), 53 (security control) and 26 (PIN capture code) travel together (emv-keys.md (C);
    docs/keys-and-mac.md section 3: openpos ``trans.c`` sets 26/52/53 together); an authorisation carries 52
    exactly when its card chose online PIN (9F34 byte 1, b6-b1 = 000010: EMV Book 3 C3); CUP field 22's third
    digit says 1 = PIN included, 2 = none, on the requests the terminal builds (a reversal or upload repeats
    the original's 22)."""
    problems = []
    for m in day.out():
        kind = day.kind(m)
        if kind == "network":
            continue
        pin, control, capture = _sent(m, "52"), _sent(m, "53"), _sent(m, "26")
        if control != pin or capture != pin:
            problems.append(f"{m.where()} ({kind}): 52 {'sent' if pin else 'absent'} but 53 "
                            f"{'sent' if control else 'absent'}, 26 {'sent' if capture else 'absent'}")
        cvm = m.icc.get("9F34") if kind in PIN_KINDS else None
        if cvm and (cvm[0] & 0x3F == 0x02) != pin:
            problems.append(f"{m.where()} ({kind}): 9F34 {cvm.hex()} but the PIN block was "
                            f"{'sent' if pin else 'not sent'}")
        if day.cup and kind in ("sale", "preauth", "void", "refund") and m.get("22")[2:3] != ("1" if pin else "2"):
            problems.append(f"{m.where()} ({kind}): 22 = {m.get('22')} with the PIN block "
                            f"{'sent' if pin else 'absent'}")
    return problems


#: field 22 positions 1-2 per presentation (CONTRACTS.md "How the card came in"; posguard/engine/pos_entry.py
#: with its sources): ISO 8583:1987 01 manual, 05 chip, 07 contactless, 80 fallback, 90 full stripe; CUP 01, 05,
#: 07, and 02 for a stripe read and for a fallback (60.5 = 2 then)
ENTRY_CODES = {"cup": {"chip": "05", "contactless": "07", "swipe": "02", "fallback": "02", "manual": "01"},
               "iso87ascii": {"chip": "05", "contactless": "07", "swipe": "90", "fallback": "80", "manual": "01"}}
#: the requests that read the card themselves (a reversal and an upload repeat their original's 22)
READING_KINDS = ("sale", "preauth", "void", "refund")


def _pan(m: Msg) -> str:
    return m.get("2") or m.get("35").split("D")[0].split("=")[0]


def entry_mode_problems(day: Day) -> list[str]:
    """Field 22 says how the PAN came in for *this* request (ISO 8583:1987 field 22; openpos ``trans.c`` builds
    it from the input mode of the transaction at hand, ``01`` when no card was read). A request claiming a chip,
    contactless or stripe read needs a presentation of that card (a ``card`` record of its PAN) since the card's
    last read by a request; the presentation's entry mode gives the code (:data:`ENTRY_CODES`; a CUP fallback also
    says 60.5 = 2, an ISO one 80x). Field 23 (card sequence number, 5F34) goes only with a chip entry mode."""
    codes = ENTRY_CODES[day.dialect]
    read_by = {code: mode for mode, code in codes.items() if mode != "manual"}
    problems = []
    last_read: dict[str, int] = {}  # PAN -> line of the request that last claimed a read of it
    for m in day.out():
        kind, mode = day.kind(m), m.get("22")[:2]
        if "23" in m.doc and mode not in ("05", "07"):
            problems.append(f"{m.where()} ({kind}): 23 = {m.get('23')} with 22 = {m.get('22')} (no chip read)")
        if kind not in READING_KINDS or mode not in read_by:
            continue
        pan = _pan(m)
        since = last_read.get(pan, 0)
        shown = [(line, how) for line, p, how in day.presentations if p == pan and since < line < m.line]
        last_read[pan] = m.line
        if not shown:
            problems.append(f"{m.where()} ({kind}): 22 = {m.get('22')} says the card was read, but it was not "
                            f"presented since {f'line {since}' if since else 'the start'}")
            continue
        how = shown[-1][1]
        want = codes.get(how)
        if want is not None and mode != want:
            problems.append(f"{m.where()} ({kind}): 22 = {m.get('22')} for a card presented by {how} (want {want}x)")
        if day.cup and how in ("fallback", "swipe") and m.get("60")[12:13] != ("2" if how == "fallback" else "0"):
            problems.append(f"{m.where()} ({kind}): 60.5 = {m.get('60')[12:13]!r} for a {how}")
    return problems


# -- card data in the journal -------------------------------------------------------------------------------
TRACK2 = re.compile(rb"\d{12,19}[=D]\d{4}")


def journal_card_data_problems(journal_db: Path, pans: tuple[str, ...]) -> list[str]:
    """No clear PAN (as digits, BCD or ASCII hex), no track 2 image, and no PIN block (52), track (35/36) or key
    field in a journaled message copy (the house rule: card data is masked, tokenised or sealed at the edge)."""
    problems = []
    blob = b""
    for path in sorted(journal_db.parent.glob(journal_db.name + "*")):
        blob += path.read_bytes()
    for pan in pans:
        if pan.encode() in blob or bytes.fromhex(pan) in blob or pan.encode().hex().encode() in blob.lower():
            problems.append(f"{journal_db.name}: clear PAN {pan[:6]}…{pan[-4:]}")
    if TRACK2.search(blob):
        problems.append(f"{journal_db.name}: a track 2 image")
    with sqlite3.connect(journal_db) as db:
        for mid, mti, masked in db.execute("SELECT id, mti, masked FROM messages"):
            fields = json.loads(masked)
            for f in ("35", "36"):  # masked: at most the first 6 and last 4 PAN digits stay (CONTRACTS mask_pan)
                value = str(fields.get(f, ""))
                if value and ("*" not in value or sum(c.isdigit() for c in value) > 10):
                    problems.append(f"journal message {mid} ({mti}): field {f} journaled unmasked")
            for f in ("52", "62"):  # a PIN block, working keys: only a placeholder ("<...>", "****") may stand in
                value = str(fields.get(f, ""))
                if value and not value.startswith("<") and set(value) != {"*"}:
                    problems.append(f"journal message {mid} ({mti}): field {f} journaled as a value")
    return problems


# -- the host's books (the acquirer's settlement report the capture recorded) ------------------------------
def host_report(capture: Path) -> list[dict[str, str]]:
    """The rows of the acquirer's settlement report of the day (the capture's ``reconcile`` record), if any."""
    for line in capture.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("k") == "op" and rec.get("op") == "reconcile":
            return list(rec["report"]["rows"])
    return []


def booking_differences(day: Day, rows: list[dict[str, str]]) -> dict[str, list[str]]:
    """RRNs the host books as standing sales that the wire does not show standing (``host_only``), and the other
    way round (``wire_only``): where the settlement totals and the host's books part (pos-flows.md (A) not
    arrived)."""
    host = {r["rrn"] for r in rows if r.get("kind") == "sale" and r.get("status") == "approved"}
    wire = {b.answer.get("37") for b in standing_sales(day)}
    return {"host_only": sorted(host - wire), "wire_only": sorted(wire - host)}
