"""What the simulated acquirer does with one decoded request: classify, apply rules, book, answer.

Requests and responses are pyiso8583 decoded dicts (``{"t": "0200", "3": "000000", ...}``, binary fields as
upper-case hex text). The routing tables below are the documented behaviour:

CUP (UnionPay) — by MTI, 60.1 (message type code) and 60.3 (network management code)::

    0800/0820  60.3 001|003|004 sign-on (0810 carries fresh working keys in 62, see keys.py), 002 sign-off,
               301 echo
    0200       60.1 22 sale, 23 void (original by 37 RRN), 01 balance
    0220       60.1 25 refund (original by 37 RRN), anything else: advice (offline sale books a sale)
    0100       pre-authorisation
    0400/0401  reversal, original = same STAN + TID (CUP reuses the original STAN)
    0420/0421  reversal advice, same matching
    0320       batch/TC upload; 60.3 202 or 207 = batch end (closes the batch); an upload must repeat the
               authorisation of its RRN (2, 4, 22) else 22; a second 0320 of an acknowledged one is 94 (repeat: 0321)
    0500       settlement: totals in 48 (see SETTLEMENT_48); response 48 carries the flag
               1 balanced / 2 unbalanced, RC 00 either way

ISO dialects (iso87ascii, iso87, iso87bcd) — by MTI, processing code (3) and field 70::

    0800       70 001 sign-on (0810 carries fresh working keys in 48, see keys.py), 002 sign-off, 301 echo
               (or 3 = 990000 echo, PAX)
    0200       3 = 00xxxx sale, 02xxxx void (original by 37 RRN), 20xxxx refund, 31xxxx balance
    0100       pre-authorisation
    0220/0221  advice (3 = 00xxxx books an offline sale)
    0400/0401  reversal, original by field 90 (original MTI n4 + STAN n6 + ...) + TID
    0420/0421  reversal advice, same matching
    0320       batch upload
    0500       settlement 3 = 92xxxx: totals in 74 (credits = refunds, number), 76 (debits = sales,
               number), 86 (credits amount), 88 (debits amount); RC 00 balanced (batch closed) or
               95 unbalanced (batch stays open); 3 = 96xxxx (after batch upload) closes with RC 00

Repeats (0201, 0221, 0321) of a request already booked (same MTI family, STAN and TID) are answered from the
books with the first answer's RC, RRN and auth code and are not booked again; reversal repeats (0401/0421)
find the original already reversed and change nothing.

Response codes used: 00 approved, 12 invalid transaction / original not approved, 13 invalid amount,
14 invalid card (void/refund on another PAN), 22 related transaction in a wrong state (already voided),
25 original not found, 30 format error, 94 duplicate transmission, 95 reconcile error, A0 MAC error, plus
whatever the approval rules return.

Sales and pre-authorisations are first put to the card issuer (:mod:`.issuer`, when the simulator has one): for a
card in its card file it may decline (its RC, its reason in the ledger note); otherwise the rules decide, and the
answer carries the issuer's field 55 (91 ARPC || ARC, issuer scripts 71/72).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .faults import ISSUER_KINDS
from .issuer import Issuer
from .keys import IssuedKeys, KeyStore
from .ledger import Entry, Ledger, detail_booking, pan_hash
from .pin import (
    DATED_KINDS,
    PIN_KINDS,
    PinChecker,
    Refusal,
    check_local_date,
    check_pin_fields,
    local_now,
    terminal_zone,
)
from .rules import DEFAULT_RULES, RuleSet

Doc = dict[str, str]

#: CUP field 48 in 0500/0510: two groups (domestic cards, then foreign cards) of
#: debit (sale) amount n12, debit count n3, credit (refund) amount n12, credit count n3, flag n1.
SETTLEMENT_48 = (("debit_amount", 12), ("debit_count", 3), ("credit_amount", 12), ("credit_count", 3),
                 ("flag", 1))

ECHO_FIELDS = ("3", "4", "11", "22", "24", "25", "32", "41", "42", "49", "60", "61", "70", "90")


def response_mti(mti: str) -> str:
    """0200 -> 0210, 0401 -> 0410 (a repeat is answered with the plain response MTI)."""
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def pan_of(req: Doc) -> str | None:
    if req.get("2"):
        return req["2"]
    t2 = req.get("35")
    if t2:
        for sep in ("D", "d", "="):
            if sep in t2:
                return t2.split(sep, 1)[0]
    return None


def upload_mismatch(req: Doc, original: Entry) -> str | None:
    """Why a 0320 (TC or detail upload) does not repeat the authorisation the host holds under its RRN, or None.

    The acquirer matches an upload to the authorisation (``emv-keys.md`` A.10: the TC upload carries 2, 22, 23 of
    the sale): a different PAN, amount or POS entry mode (22, with CUP's PIN digit) is another transaction's data.
    The reason names the field, never the card data."""
    pan = pan_of(req)
    if pan is not None and original.pan_hash is not None and pan_hash(pan) != original.pan_hash:
        return "field 2 is not the authorised card"
    if req.get("4") and original.amount is not None and int(req["4"]) != original.amount:
        return f"field 4 {int(req['4'])} is not the authorised amount {original.amount}"
    if req.get("22") and original.pos_entry and req["22"] != original.pos_entry:
        return f"field 22 {req['22']} is not the authorisation's {original.pos_entry}"
    return None


def parse_48(text: str) -> list[dict[str, int]]:
    groups = []
    pos = 0
    while pos + 31 <= len(text):
        g: dict[str, int] = {}
        for name, width in SETTLEMENT_48:
            g[name] = int(text[pos : pos + width])
            pos += width
        groups.append(g)
    return groups


def build_48(groups: list[dict[str, int]]) -> str:
    return "".join(f"{g[name]:0{width}d}" for g in groups for name, width in SETTLEMENT_48)


@dataclass
class Outcome:
    """The processor's answer: the response doc (None = say nothing) and the ledger entry it booked."""

    response: Doc | None
    entry: Entry | None = None
    kind: str = ""


@dataclass
class Processor:
    dialect: str
    ledger: Ledger = field(default_factory=Ledger)
    rules: RuleSet = field(default_factory=lambda: RuleSet.from_dict(DEFAULT_RULES.to_dict()))
    now: Callable[[], float] = time.time
    working_keys_62: str = ""  # hex of field 62 sent in a CUP sign-on response
    acquirer_id: str = "00000001"
    #: Demand a new sign-on until one arrives: "rc" answers every other request RC 77 without processing it;
    #: "header" (CUP) processes requests but sets the response header's processing requirement to 3.
    sign_on_demand: str | None = None
    #: The card issuer (``issuer.py``): asked before a sale/pre-auth is booked; None = approval rules only.
    issuer: Issuer | None = None
    _issuer_fault: Any = None
    #: online PIN verification (firmware_sim.host.pin); None: field 52 is not looked at
    pin: PinChecker | None = None
    #: the terminal's zone (IANA; "" = Asia/Shanghai for CUP, else UTC): the answer's 12/13/15 are local there
    terminal_timezone: str = ""
    #: refuse a request whose local date/time (13 + 12) is more than this many seconds from the host's own
    date_window: float | None = None
    #: the working keys it issues at sign-on (:mod:`.keys`); None = no keys in the sign-on answer
    keys: KeyStore | None = None
    _seq: int = 0

    # -- classification ----------------------------------------------------------------------------
    def classify(self, req: Doc) -> str:
        mti = req.get("t", "")
        proc = req.get("3", "")
        cup = self.dialect == "cup"
        f60 = req.get("60", "")
        m60_1, m60_3 = f60[0:2], f60[8:11]
        if mti in ("0800", "0820"):
            code = m60_3 if cup else req.get("70", "")
            if proc.startswith("99"):
                return "echo"
            return {"001": "signon", "003": "signon", "004": "signon", "002": "signoff", "301": "echo"}.get(code,
                                                                                                          "netmgmt")
        if mti in ("0400", "0401", "0420", "0421"):
            return "reversal"
        if mti == "0500":
            return "settlement"
        if mti in ("0320", "0321"):
            return "batch_upload"
        if mti == "0100":
            return "preauth"
        if cup:
            if mti == "0200":
                return {"22": "sale", "23": "void", "01": "balance"}.get(m60_1, "sale" if proc[:2] == "00"
                                                                         else "unknown")
            if mti in ("0220", "0221"):
                return "refund" if m60_1 == "25" else "advice"
        else:
            if mti == "0200":
                return {"00": "sale", "02": "void", "20": "refund", "31": "balance"}.get(proc[:2], "unknown")
            if mti in ("0220", "0221"):
                return "advice"
        return "unknown"

    # -- entry point -------------------------------------------------------------------------------
    def handle(self, req: Doc, *, mac_ok: bool | None = None, fault: Any = None) -> Outcome:
        kind = self.classify(req)
        self._issuer_fault = fault if getattr(fault, "kind", None) in ISSUER_KINDS else None
        if mac_ok is False:
            return Outcome(self._respond(req, "A0"), kind=kind)
        network = kind in ("signon", "signoff", "echo", "netmgmt")
        if self.sign_on_demand == "rc" and not network:
            return Outcome(self._respond(req, "77"), kind=kind)  # not processed: sign on first
        repeat = self._answer_repeat(req)
        if repeat is not None:
            repeat.kind = kind
            return repeat
        handler: Callable[[Doc], Outcome] = getattr(self, f"_do_{kind}", self._do_unknown)
        refusal = self._security_refusal(kind, req)
        out = self._refuse(req, kind, refusal) if refusal is not None else handler(req)
        out.kind = kind
        if kind == "signon":
            self.sign_on_demand = None
        elif self.sign_on_demand == "header" and out.response is not None and "h" in out.response:
            h = out.response["h"]  # TPDU (10) + header (12): processing requirement is header digit 6
            out.response["h"] = h[:15] + "3" + h[16:]
        return out

    def refuse(self, req: Doc, rc: str) -> Outcome:
        """An answer without processing (the security gate of the server: A0 bad MAC, 77 sign on first)."""
        return Outcome(self._respond(req, rc), kind=self.classify(req))

    # -- repeats -----------------------------------------------------------------------------------
    def _answer_repeat(self, req: Doc) -> Outcome | None:
        """A repeat (0201/0221/0321) of a request already booked is answered from the books, not booked again.

        A terminal repeats an advice it never saw acknowledged (e.g. after a crash); the host must book it once.
        Reversal repeats (0401/0421) are idempotent in :meth:`_do_reversal` and are not handled here.
        """
        mti = req.get("t", "")
        if mti not in ("0201", "0221", "0321"):
            return None
        first = self.ledger.booked(mti=mti[:3] + "0", stan=req.get("11") or "0", tid=req.get("41"))
        if first is None:
            return None
        extra: Doc = {}
        if first.rrn:
            extra["37"] = first.rrn
        if first.auth_code:
            extra["38"] = first.auth_code
        return Outcome(self._respond(req, first.rc, **extra))

    # -- helpers -----------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _rrn(self, seq: int) -> str:
        t = time.gmtime(self.now())
        return f"{t.tm_yday:03d}{t.tm_hour:02d}{seq:07d}"[-12:]

    @staticmethod
    def _auth_code(seq: int) -> str:
        return f"{(seq * 7919 + 100003) % 1_000_000:06d}"

    def _respond(self, req: Doc, rc: str, **extra: str) -> Doc:
        t = self._local_now().timetuple()  # 12/13: local time in the terminal's zone
        resp: Doc = {"t": response_mti(req["t"])}
        if self.dialect == "cup" and "h" in req:
            h = req["h"]
            # TPDU: 60 + destination + source; the response swaps destination and source.
            resp["h"] = h[0:2] + h[6:10] + h[2:6] + h[10:]
        for f in ECHO_FIELDS:
            if f in req:
                resp[f] = req[f]
        resp["12"] = time.strftime("%H%M%S", t)
        resp["13"] = time.strftime("%m%d", t)
        resp["39"] = rc
        resp.update(extra)
        return resp

    def _base(self, req: Doc, kind: str, rc: str, **kw: Any) -> dict[str, Any]:
        amount = int(req["4"]) if req.get("4") else None
        if self.dialect == "cup":
            batch = req.get("60", "")[2:8] or None
        else:
            batch = req.get("60") or None
        return dict(kind=kind, status="approved" if rc == "00" else "declined", mti=req["t"], rc=rc,
                    stan=req.get("11"), tid=req.get("41"), mid=req.get("42"), proc=req.get("3"),
                    amount=amount, currency=req.get("49"), batch=batch, pan=pan_of(req),
                    pos_entry=req.get("22"), time=self.now(), **kw)

    def _is_duplicate(self, req: Doc) -> bool:
        if not self.rules.duplicate_check:
            return False
        amount = int(req.get("4") or 0)
        return self.ledger.seen_before(req["t"], req.get("11", ""), req.get("41", ""), amount)

    def _approve_fields(self, rc: str, auth: str | None = None) -> tuple[Doc, str | None, str | None]:
        seq = self._next_seq()
        rrn = self._rrn(seq)
        extra: Doc = {"37": rrn}
        code = None
        if rc == "00":
            code = auth or self._auth_code(seq)
            extra["38"] = code
        if self.dialect == "cup":
            extra["15"] = self._local_now().strftime("%m%d")  # settlement date: the host's local date
        return extra, rrn, code

    # -- network management ------------------------------------------------------------------------
    def working_keys(self, tid: str | None = None) -> IssuedKeys | None:
        """The keys (clear, host side: ``.pin_key``, ``.mac_key``) of ``tid``'s last sign-on; None if signed off."""
        return self.keys.current(tid) if self.keys is not None else None

    def _issue_keys(self, req: Doc, extra: Doc) -> None:
        """Fresh working keys under the terminal's TMK (:mod:`.keys`): CUP in 62 with the host's batch in 60.2,
        ISO in 48 as hex text."""
        assert self.keys is not None
        tid = req.get("41", "")
        if self.dialect == "cup":
            f60 = req.get("60", "")
            code = f60[8:11]
            block: bytes | None
            if self.working_keys_62:  # a fixed key block from the configuration: the host learns its keys
                fixed = bytes.fromhex(self.working_keys_62)
                self.keys.adopt(tid, fixed)
                block = fixed
            else:
                block = self.keys.issue(tid, key_length=8 if code == "001" else 16, track=code == "004",
                                        single_mac=code != "001")  # 003/004: the MAC key is single DES
            if block is not None:
                extra["62"] = block.hex().upper()
            if len(f60) >= 8 and f60[2:8].isdigit():
                extra["60"] = f60[:2] + f"{self.keys.batch_for(tid, int(f60[2:8])):06d}" + f60[8:]
        else:
            block = self.keys.issue(tid)
            if block is not None:
                extra["48"] = block.hex().upper()

    def _do_signon(self, req: Doc) -> Outcome:
        extra: Doc = {}
        if self.keys is not None:
            self._issue_keys(req, extra)
        elif self.dialect == "cup" and self.working_keys_62:
            extra["62"] = self.working_keys_62
        entry = self.ledger.add(**self._base(req, "signon", "00"))
        seq = self._next_seq()
        extra["37"] = self._rrn(seq)
        return Outcome(self._respond(req, "00", **extra), entry)

    def _do_signoff(self, req: Doc) -> Outcome:
        if self.keys is not None:
            self.keys.sign_off(req.get("41", ""))
        return Outcome(self._respond(req, "00"))

    def _do_echo(self, req: Doc) -> Outcome:
        return Outcome(self._respond(req, "00"))

    def _do_netmgmt(self, req: Doc) -> Outcome:
        return Outcome(self._respond(req, "00"))

    def _do_unknown(self, req: Doc) -> Outcome:
        return Outcome(self._respond(req, "12"))

    # -- authorising transactions ------------------------------------------------------------------
    def _authorise(self, req: Doc, kind: str) -> Outcome:
        if self._is_duplicate(req):
            return Outcome(self._respond(req, "94"))
        amount = int(req["4"]) if req.get("4") else None
        verdict = self.issuer.authorise(req, pan_of(req), fault=self._issuer_fault) if self.issuer else None
        if verdict is not None and verdict.rc is not None:
            rc, rule = verdict.rc, verdict.reason  # the issuer declined, and says why (ledger note)
        else:
            rc, rule = self.rules.decide(kind=kind, pan=pan_of(req), amount=amount, tid=req.get("41"))
            if verdict is not None and verdict.reason:
                rule = f"{verdict.reason}; {rule}" if rule else verdict.reason
        extra, rrn, code = self._approve_fields(rc)
        entry = self.ledger.add(**self._base(req, kind, rc, rrn=rrn, auth_code=code, note=rule))
        if self.dialect == "cup" and rc == "00":
            extra["63"] = entry.card_org or "CUP"  # the card organisation code
        icc = self.issuer.response_55(verdict, rc) if self.issuer and verdict is not None else None
        if icc:
            extra["55"] = icc  # 91 (ARPC || ARC) and issuer scripts 71/72
        return Outcome(self._respond(req, rc, **extra), entry)

    def _do_sale(self, req: Doc) -> Outcome:
        return self._authorise(req, "sale")

    def _do_preauth(self, req: Doc) -> Outcome:
        return self._authorise(req, "preauth")

    def _do_balance(self, req: Doc) -> Outcome:
        rc, _ = self.rules.decide(kind="balance", pan=pan_of(req), amount=None, tid=req.get("41"))
        extra, _rrn, _code = self._approve_fields(rc)
        if rc == "00":
            extra["54"] = "1002156C000000100000"
        return Outcome(self._respond(req, rc, **extra))

    # -- corrections -------------------------------------------------------------------------------
    def _original_by_rrn(self, req: Doc) -> Entry | None:
        rrn = req.get("37")
        return self.ledger.by_rrn(rrn, req.get("41")) if rrn else None

    def _check_same_card(self, req: Doc, original: Entry) -> bool:
        pan = pan_of(req)
        return pan is None or original.pan_hash is None or original.pan_hash == pan_hash(pan)

    def _do_void(self, req: Doc) -> Outcome:
        if self._is_duplicate(req):
            return Outcome(self._respond(req, "94"))
        original = self._original_by_rrn(req)
        amount = int(req.get("4") or 0)
        if original is None:
            rc = "25"
        elif not self._check_same_card(req, original):
            rc = "14"
        elif original.status == "voided":
            rc = "22"
        elif original.status != "approved" or original.batch_closed:
            rc = "12"
        elif original.amount != amount or original.refunded:
            rc = "13"
        else:
            rc = "00"
        extra, rrn, code = self._approve_fields(rc, auth=original.auth_code if original else None)
        entry = self.ledger.add(**self._base(req, "void", rc, rrn=rrn, auth_code=code,
                                             original_id=original.id if original else None))
        if rc == "00" and original is not None:
            original.status = "voided"
        return Outcome(self._respond(req, rc, **extra), entry)

    def _do_refund(self, req: Doc) -> Outcome:
        if self._is_duplicate(req):
            return Outcome(self._respond(req, "94"))
        original = self._original_by_rrn(req)
        amount = int(req.get("4") or 0)
        if original is None:
            # CUP refunds must name the original; ISO refunds may stand alone.
            rc = "25" if (self.dialect == "cup" or req.get("37")) else "00"
        elif not self._check_same_card(req, original):
            rc = "14"
        elif original.status not in ("approved",) and not original.batch_closed:
            rc = "12"
        elif amount <= 0 or amount + original.refunded > (original.amount or 0):
            rc = "13"
        else:
            rc = "00"
        if rc == "00":
            rc, _rule = self.rules.decide(kind="refund", pan=pan_of(req), amount=amount, tid=req.get("41"))
        extra, rrn, code = self._approve_fields(rc)
        entry = self.ledger.add(**self._base(req, "refund", rc, rrn=rrn, auth_code=code,
                                             original_id=original.id if original else None))
        if rc == "00" and original is not None:
            original.refunded += amount
        return Outcome(self._respond(req, rc, **extra), entry)

    def _do_reversal(self, req: Doc) -> Outcome:
        tid = req.get("41")
        if self.dialect == "cup":
            original = self.ledger.reversible(tid=tid, stan=req.get("11") or "0")
        else:
            f90 = req.get("90", "")
            if len(f90) < 10 or not f90[:10].isdigit():
                return Outcome(self._respond(req, "30"))
            original = self.ledger.reversible(tid=tid, stan=f90[4:10], mti=f90[0:4])
        mismatch = self._reversal_mismatch(req, original) if original is not None else None
        if original is None:
            rc = "25"
        elif original.status == "declined":
            rc = "12"
        elif mismatch is not None:
            rc = mismatch[0]  # the original stands: this reversal is not of it as it was booked
        else:
            rc = "00"
            self._undo(original)
        note = self.issuer.read_reversal(req, pan_of(req)) if self.issuer else ""  # never declines a reversal
        if mismatch is not None:
            note = f"{mismatch[1]}; {note}" if note else mismatch[1]
        entry = self.ledger.add(**self._base(req, "reversal", rc, original_id=original.id if original else None,
                                             note=note))
        return Outcome(self._respond(req, rc), entry)

    def _reversal_mismatch(self, req: Doc, original: Entry) -> tuple[str, str] | None:
        """A reversal carries its original's data (pos-flows.md (B): the saved copy of the request): one whose PAN
        is not the original's is refused 14, one whose amount (4) is not the original's 13 (a full reversal; ISO
        8583:1987 field 39 "invalid card number" / "invalid amount"), and nothing is undone."""
        if not self._check_same_card(req, original):
            return "14", "the reversal's PAN is not the PAN of the transaction it reverses"
        amount = req.get("4")
        if amount and original.amount is not None and int(amount) != original.amount:
            return "13", f"the reversal's amount {int(amount)} is not the original's {original.amount}"
        return None

    def _undo(self, original: Entry) -> None:
        if original.status == "reversed":
            return  # a repeat (0401/0421) of a reversal already applied
        if original.kind == "void" and original.status == "approved" and original.original_id:
            sale = self.ledger.get(original.original_id)
            if sale.status == "voided":
                sale.status = "approved"  # reversing the void re-instates the sale
        if original.kind == "refund" and original.status == "approved" and original.original_id:
            sale = self.ledger.get(original.original_id)
            sale.refunded -= original.amount or 0  # reversing a refund takes it off the original
        original.status = "reversed"

    # -- store and forward, settlement -------------------------------------------------------------
    def _do_advice(self, req: Doc) -> Outcome:
        if self._is_duplicate(req):
            return Outcome(self._respond(req, "00"))  # advices are idempotent: acknowledge, do not re-book
        kind = "sale" if req.get("3", "").startswith("00") else "advice"
        extra, rrn, code = self._approve_fields("00")
        entry = self.ledger.add(**self._base(req, kind, "00", rrn=req.get("37") or rrn,
                                             auth_code=req.get("38") or code, note="advice"))
        return Outcome(self._respond(req, "00", **extra), entry)

    def _do_batch_upload(self, req: Doc) -> Outcome:
        """0320: CUP batch end (60.3 202/207) closes the batch; a TC upload (203) is recorded; a detail
        (CUP 201/205, international any other 0320) is matched by RRN: RC 00 when the host holds the
        transaction approved, RC 25 when it did not — the detail is then booked as approved."""
        tid = req.get("41")
        code = req.get("60", "")[8:11] if self.dialect == "cup" else ""
        if code in ("202", "207"):
            self.ledger.close_batch(tid)
            return Outcome(self._respond(req, "00"), self.ledger.add(**self._base(req, "batch_end", "00")))
        rrn = req.get("37")
        upload_type = code or req.get("3", "")[:2]  # CUP 60.3 (203 TC, 201/205 detail); international: 3 (94 TC)
        again = next((e for e in self.ledger.find(tid=tid, kind="batch_upload", rrn=rrn, proc=req.get("3"))
                      if e.rc in ("00", "25") and e.note.startswith(f"type {upload_type}:")), None) if rrn else None
        if again is not None and req.get("t") == "0320":  # not flagged as a repeat (0321): a second upload
            return Outcome(self._respond(req, "94"), self.ledger.add(**self._base(
                req, "batch_upload", "94", note=f"duplicate transmission: RRN {rrn} was uploaded under STAN "
                                                f"{again.stan}; a repeat is 0321 with that STAN")))
        held = [e for e in self.ledger.find(tid=tid, rrn=rrn) if e.kind in ("sale", "refund", "preauth")] if rrn else []
        mismatch = next((why for e in held if e.status in ("approved", "voided")
                         for why in [upload_mismatch(req, e)] if why), None)
        if mismatch is not None:  # the upload must repeat what was authorised (emv-keys.md A.10): 22 abnormal
            return Outcome(self._respond(req, "22"), self.ledger.add(**self._base(
                req, "batch_upload", "22", note=f"upload refused: {mismatch}")))
        if code == "203" or (self.dialect != "cup" and req.get("3", "").startswith("94")):
            return Outcome(self._respond(req, "00"), self.ledger.add(**self._base(req, "batch_upload", "00", rrn=rrn,
                                                                                      note=f"type {upload_type}: tc")))
        if any(e.status in ("approved", "voided") for e in held):
            rc = "00"
        else:
            booking, why = detail_booking(req, self.dialect)  # card organisation (CUP 63) and currency (49)
            if why is not None:
                return Outcome(self._respond(req, "30"), self.ledger.add(**self._base(req, "batch_upload", "30",
                                                                                      note=f"detail refused: {why}")))
            rc = "25"
            if held:  # booked declined (or reversed) here, approved on the terminal: the detail wins
                held[-1].status = "approved"
                held[-1].note = "approved by batch upload"
            else:
                self._book_from_detail(req, tid, **booking)
        entry = self.ledger.add(**self._base(req, "batch_upload", "00", rrn=rrn, note=f"type {upload_type}: detail rc={rc}"))
        entry.rc = rc  # a repeat (0321) of this upload is answered from the books with this very code
        return Outcome(self._respond(req, rc), entry)

    def _book_from_detail(self, req: Doc, tid: str | None, **booking: Any) -> None:
        if self.dialect == "cup":
            kind = {"22": "sale", "25": "refund", "10": "preauth"}.get(req.get("60", "")[0:2], "sale")
            stan = req.get("61", "")[6:12] or req.get("11")
        else:
            kind = {"00": "sale", "20": "refund", "03": "preauth"}.get(req.get("3", "")[:2], "sale")
            stan = req.get("60", "")[4:10] or req.get("11")
        base = self._base(req, kind, "00", rrn=req.get("37"), auth_code=req.get("38"), note="booked from batch upload")
        base.update(stan=stan, mti=req["t"], **booking)
        self.ledger.add(**base)

    def _settle_sides(self, groups: list[dict[str, int]], tid: str | None) -> tuple[list[dict[str, int]], bool]:
        """CUP 48: each group (domestic = CUP cards, then foreign = every other organisation) against the books'
        totals of that side; each answered with its own flag (1 balanced, 2 unbalanced). A missing foreign group
        counts as zero."""
        books = self.ledger.totals_by_side(tid)
        out = []
        for side, g in zip(("domestic", "foreign"), groups + [dict.fromkeys(groups[0], 0)] * (2 - len(groups)),
                           strict=False):
            t = books[side]
            agrees = (g["debit_amount"], g["debit_count"], g["credit_amount"], g["credit_count"]) == (
                t.sale_amount, t.sale_count, t.refund_amount, t.refund_count)
            out.append(dict(g, flag=1 if agrees else 2))
        return out, all(g["flag"] == 1 for g in out)

    def _do_settlement(self, req: Doc) -> Outcome:
        tid = req.get("41")
        totals = self.ledger.totals(tid)
        if self.dialect == "cup":
            groups = parse_48(req.get("48", ""))
            if not groups:
                return Outcome(self._respond(req, "30"))
            out_groups, balanced = self._settle_sides(groups, tid)
            rc = "00"
            extra = {"48": build_48(out_groups)}
            why = ", ".join(side for side, g in zip(("domestic", "foreign"), out_groups, strict=False) if g["flag"] != 1)
        else:
            if req.get("3", "").startswith("96"):
                self.ledger.close_batch(tid)
                entry = self.ledger.add(**self._base(req, "settlement", "00", note="closed after upload"))
                return Outcome(self._respond(req, "00"), entry)
            got = tuple(int(req.get(f) or 0) for f in ("76", "88", "74", "86"))
            balanced = got == (totals.sale_count, totals.sale_amount, totals.refund_count, totals.refund_amount)
            rc = "00" if balanced else "95"
            extra = {}
            why = "totals"
        if balanced:
            self.ledger.close_batch(tid)
        entry = self.ledger.add(**self._base(req, "settlement", rc,
                                             note="balanced" if balanced else f"unbalanced: {why} differ from the books"))
        seq = self._next_seq()
        extra["37"] = self._rrn(seq)
        return Outcome(self._respond(req, rc, **extra), entry)

    # -- security checks (PIN, local date): firmware_sim.host.pin ---------------------------------------
    def _local_now(self) -> datetime:
        return local_now(self.now(), terminal_zone(self.dialect, self.terminal_timezone))

    def _security_refusal(self, kind: str, req: Doc) -> Refusal | None:
        """Why the host refuses this request before authorising it: PIN fields without their block, its local
        date, then its PIN."""
        pin_fields = None if kind in ("signon", "signoff", "echo", "netmgmt") else check_pin_fields(req)
        if pin_fields is not None:
            return pin_fields
        if self.date_window is not None and kind in DATED_KINDS:
            refusal = check_local_date(req, now=self.now(), zone=terminal_zone(self.dialect, self.terminal_timezone),
                                       dialect=self.dialect, window=timedelta(seconds=self.date_window))
            if refusal is not None:
                return refusal
        if self.pin is not None and kind in PIN_KINDS:
            return self.pin.check(req, pan_of(req))
        return None

    def _refuse(self, req: Doc, kind: str, refusal: Refusal) -> Outcome:
        """Decline with ``refusal.rc``; the booking's note says why (no PIN, block or key in it)."""
        extra, rrn, _code = self._approve_fields(refusal.rc)
        entry = self.ledger.add(**self._base(req, kind, refusal.rc, rrn=rrn, note=refusal.reason))
        return Outcome(self._respond(req, refusal.rc, **extra), entry)
