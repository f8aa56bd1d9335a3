"""The simulated acquirer's own ledger (in memory, dumpable as JSON).

Card data stays out: an entry keeps the masked PAN and a SHA-256 of the PAN (to detect a void on another
card), never the PAN itself.

Entry ``status`` values: ``approved``, ``declined``, ``voided`` (a sale a void undid), ``reversed`` (undone
by a reversal), ``settled`` is a separate flag (``batch_closed``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any


def mask_pan(pan: str | None) -> str | None:
    if not pan:
        return None
    if len(pan) < 11:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


#: card organisation codes (field 63 of a CUP 0210/0510) by the PAN's leading digits; CUP is domestic, the rest
#: foreign (pos-flows.md §B: field 63 card-organisation code, field 48 domestic then foreign totals)
CARD_ORGS = (("62", "CUP"), ("4", "VIS"), ("51", "MCC"), ("52", "MCC"), ("53", "MCC"), ("54", "MCC"), ("55", "MCC"),
             ("2", "MCC"), ("35", "JCB"), ("34", "AMX"), ("37", "AMX"))


def card_org(pan: str | None) -> str | None:
    """The card organisation of ``pan`` (``CUP``, ``VIS``, ``MCC``, ``JCB``, ``AMX``, else ``OTH``)."""
    if not pan:
        return None
    for prefix, org in sorted(CARD_ORGS, key=lambda po: -len(po[0])):
        if pan.startswith(prefix):
            return org
    return "OTH"


#: the codes a CUP upload's field 63 may name (a NEWPOS UnionPay terminal's ``SelectCardUnit`` offers CUP, VIS, MCC,
#: MAE, JCB, DCC, AMX; OTH for any other organisation)
UPLOAD_ORGS = ("CUP", "VIS", "MCC", "MAE", "JCB", "DCC", "AMX", "OTH")


def detail_booking(req: dict[str, Any], dialect: str) -> tuple[dict[str, Any], str | None]:
    """What the host needs to book a transaction it learns of only from a detail upload (0320): the card
    organisation (CUP: field 63 as the terminal kept it from the 0210, else the PAN's) and the currency (49).
    Returns the booking's extra fields and, when it cannot be booked, why (the upload is declined 30)."""
    org: str | None = None
    if dialect == "cup" and req.get("63"):
        org = str(req["63"])[:3].strip().upper()
        if org not in UPLOAD_ORGS:
            return {}, f"field 63 card organisation {org!r} is not one of {', '.join(UPLOAD_ORGS)}"
    currency = str(req.get("49") or "")
    if not (len(currency) == 3 and currency.isdigit()):
        return {}, (f"field 49 (currency) {currency!r} is not ISO 4217 numeric: a detail the host must book needs "
                    "its currency")
    pan = req.get("2")
    if org is None and not pan:
        return {}, "neither field 63 (card organisation) nor field 2: the booking's side of the totals is unknown"
    return {"card_org": org or card_org(pan), "currency": str(req["49"])}, None


def pan_hash(pan: str | None) -> str | None:
    if not pan:
        return None
    return hashlib.sha256(pan.encode()).hexdigest()[:32]


@dataclass
class Entry:
    id: int
    kind: str  # sale, void, refund, preauth, balance, advice, reversal, batch_upload, settlement, signon
    status: str  # approved, declined, voided, reversed
    mti: str
    rc: str
    stan: str | None = None
    tid: str | None = None
    mid: str | None = None
    proc: str | None = None
    amount: int | None = None
    currency: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    batch: str | None = None
    pan_masked: str | None = None
    pan_hash: str | None = None
    original_id: int | None = None  # void/refund/reversal -> the entry it refers to
    refunded: int = 0  # running total of approved refunds against this entry
    batch_closed: bool = False
    time: float = 0.0
    note: str = ""
    card_org: str | None = None  # CUP (domestic) or VIS/MCC/JCB/AMX/OTH (foreign)
    pos_entry: str | None = None  # field 22 as the request carried it: an upload must repeat the authorisation's

    @property
    def side(self) -> str:
        return "domestic" if self.card_org in (None, "CUP") else "foreign"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Totals:
    sale_count: int = 0
    sale_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0

    def count(self, entry: Entry) -> None:
        """Add an approved booking: a sale to the debits, a refund to the credits (anything else is not totalled)."""
        if entry.kind == "sale":
            self.sale_count += 1
            self.sale_amount += entry.amount or 0
        elif entry.kind == "refund":
            self.refund_count += 1
            self.refund_amount += entry.amount or 0


@dataclass
class Ledger:
    entries: list[Entry] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _seen: set[tuple[str, str, str, int]] = field(default_factory=set, repr=False)

    # -- writing -----------------------------------------------------------------------------------
    def add(self, **kw: Any) -> Entry:
        with self._lock:
            pan = kw.pop("pan", None)
            entry = Entry(id=len(self.entries) + 1, pan_masked=mask_pan(pan), pan_hash=pan_hash(pan),
                          card_org=kw.pop("card_org", None) or card_org(pan), **kw)
            self.entries.append(entry)
            return entry

    def seen_before(self, mti: str, stan: str, tid: str, amount: int) -> bool:
        """Record a financial request key; True if the same key was already received (duplicate)."""
        key = (mti, stan, tid, amount)
        with self._lock:
            if key in self._seen:
                return True
            self._seen.add(key)
            return False

    def reset(self) -> None:
        with self._lock:
            self.entries.clear()
            self._seen.clear()

    # -- queries -----------------------------------------------------------------------------------
    def get(self, entry_id: int) -> Entry:
        return self.entries[entry_id - 1]

    def find(self, **where: Any) -> list[Entry]:
        with self._lock:
            return [e for e in self.entries if all(getattr(e, k) == v for k, v in where.items())]

    def by_rrn(self, rrn: str, tid: str | None = None) -> Entry | None:
        with self._lock:
            for e in reversed(self.entries):
                if e.rrn == rrn and e.kind in ("sale", "preauth") and (tid is None or e.tid == tid):
                    return e
        return None

    def reversible(self, *, tid: str | None, stan: str, mti: str | None = None) -> Entry | None:
        """The latest approved financial entry of this terminal with this STAN (and original MTI)."""
        with self._lock:
            for e in reversed(self.entries):
                if e.kind not in ("sale", "void", "refund", "preauth") or e.tid != tid:
                    continue
                if e.stan is None or int(e.stan) != int(stan):
                    continue
                if mti is not None and e.mti != mti:
                    continue
                return e
        return None

    def booked(self, *, mti: str, stan: str, tid: str | None) -> Entry | None:
        """The entry a request with this MTI, STAN and TID already booked (to answer a repeat from the books)."""
        with self._lock:
            for e in reversed(self.entries):
                if e.mti == mti and e.tid == tid and e.stan is not None and int(e.stan) == int(stan):
                    return e
        return None

    def totals(self, tid: str | None, *, open_only: bool = True) -> Totals:
        t = Totals()
        for e in self._approved(tid, open_only):
            t.count(e)
        return t

    def totals_by_side(self, tid: str | None, *, open_only: bool = True) -> dict[str, Totals]:
        """:meth:`totals` split by card side: ``domestic`` (CUP cards) and ``foreign`` (every other organisation)."""
        out = {"domestic": Totals(), "foreign": Totals()}
        for e in self._approved(tid, open_only):
            out[e.side].count(e)
        return out

    def _approved(self, tid: str | None, open_only: bool) -> list[Entry]:
        """The terminal's approved bookings (of its open batch with ``open_only``), a snapshot under the lock."""
        with self._lock:
            return [e for e in self.entries
                    if e.tid == tid and e.status == "approved" and not (open_only and e.batch_closed)]

    def close_batch(self, tid: str | None) -> int:
        n = 0
        with self._lock:
            for e in self.entries:
                if e.tid == tid and not e.batch_closed and e.kind in ("sale", "void", "refund", "preauth"):
                    e.batch_closed = True
                    n += 1
        return n

    # -- export ------------------------------------------------------------------------------------
    def to_entries(self) -> list[Entry]:
        with self._lock:
            return list(self.entries)

    def to_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_dict() for e in self.entries]

    def dump_json(self, path: str | None = None) -> str:
        text = json.dumps(self.to_list(), indent=2, sort_keys=True)
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text
