"""Detectors: small configurable units that spot charges a customer or merchant will dispute.

Each detector keeps an index for its lookups and only as much memory as its window needs, and returns
:class:`Detection` values (kind, transactions, evidence, the rule that fired); the engine journals them.

* :class:`DuplicateChargeDetector` — same PAN token + amount + terminal within a window, or the same order
  reference; tells a retransmission duplicate (same STAN, or a resend after a timeout) from a possible
  genuine second purchase.
* :class:`UnsignedDetector` — signature CVM (9F34) and no signature by the deadline or at batch close,
  minus configured exemptions (UnionPay contactless <= CNY 1000).
* :class:`VoidMismatchDetector` — void chains that do not do what the customer was told.
* :class:`ReconciliationDetector` — money that has not arrived: unbalanced totals, transactions missing from
  the host's ledger, reversals/advices still pending, a batch never closed; and, given the acquirer's
  settlement report, the two-way comparison (:meth:`ReconciliationDetector.compare`): approvals the host lacks
  and host bookings the terminal does not hold as approved.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from posguard.clock import Clock
from posguard.engine.acquirer_report import ReportRow, SettlementReport
from posguard.engine.chart import CHARGE_STANDS, UNRESOLVED
from posguard.engine.journal import Journal, TxnRecord

__all__ = [
    "Detection",
    "Detectors",
    "DuplicateChargeDetector",
    "UnsignedDetector",
    "ExemptionRule",
    "DEFAULT_EXEMPTIONS",
    "VoidMismatchDetector",
    "ClaimVerdict",
    "ReconciliationDetector",
    "LedgerEntry",
    "HELD_APPROVED",
    "FINDING_RULES",
]

#: per kind, the terminal states in which the terminal holds the booking as approved money at the host (a sale
#: refunded later was still approved: its refund is a booking of its own)
HELD_APPROVED: dict[str, frozenset[str]] = {
    "sale": CHARGE_STANDS | {"refunded"},
    "completion": CHARGE_STANDS | {"refunded"},
    "preauth": CHARGE_STANDS | {"completed"},
    "refund": frozenset({"approved", "uploaded", "settled"}),
    "void": frozenset({"approved", "settled"}),
}
#: what each two-way finding means, for the merchant's list and the acquirer contact
FINDING_RULES: dict[str, str] = {
    "approval_missing_at_host": "the terminal holds it approved; the acquirer's report has no approved booking",
    "host_booked_not_approved": "the acquirer booked it approved; the terminal holds it as not approved",
    "host_booked_unknown": "the acquirer booked it approved; the terminal's journal has no such transaction",
    "amount_differs": "both hold it approved, for different amounts",
    "card_differs": "both hold it approved, on different cards",
}



@dataclass(frozen=True)
class Detection:
    kind: str
    rule: str
    txn_ids: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}[{self.rule}] {', '.join(self.txn_ids)}"


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the host's ledger (from a reconciliation report or the acquirer portal)."""

    rrn: str
    kind: str
    amount_minor: int
    response_code: str = "00"


#: the duplicate rules, strongest evidence first: a retransmission (the same STAN) and the same order reference are
#: proven duplicates; a resend after a timeout is one unless the reversal went through; the same card and amount
#: within the window may be two purchases
_STRENGTH = ("same_stan", "same_order_reference", "resend_after_timeout", "same_card_amount_terminal")


# ---------------------------------------------------------------------------------------------------
class DuplicateChargeDetector:
    """Same card token + amount + terminal within ``window`` seconds, or the same order reference within
    ``order_window`` seconds (an order reference is unique, so its window is longer)."""

    def __init__(self, clock: Clock, window: float = 600.0, order_window: float = 24 * 3600.0) -> None:
        self.clock = clock
        self.window = window
        self.order_window = order_window
        self._charges: dict[tuple[str, int, str], deque[tuple[float, str, int | None]]] = {}
        self._unknown: dict[tuple[str, int, str], deque[tuple[float, str, int | None]]] = {}
        self._orders: dict[str, deque[tuple[float, str]]] = {}
        # (at, index name, key) in time order, one per window length, for eviction
        self._timeline: deque[tuple[float, str, Any]] = deque()
        self._order_timeline: deque[tuple[float, str, Any]] = deque()

    def __len__(self) -> int:
        return len(self._timeline) + len(self._order_timeline)

    @staticmethod
    def _key(txn: TxnRecord) -> tuple[str, int, str] | None:
        if not txn.pan_token or txn.kind not in ("sale", "completion"):
            return None
        return (txn.pan_token, txn.amount_minor, txn.terminal_id)

    def _evict(self, now: float) -> None:
        for timeline, window in ((self._timeline, self.window), (self._order_timeline, self.order_window)):
            self._evict_one(timeline, now - window)

    def _evict_one(self, timeline: deque[tuple[float, str, Any]], horizon: float) -> None:
        while timeline and timeline[0][0] < horizon:
            _at, index, key = timeline.popleft()
            table: dict[Any, deque[Any]] = getattr(self, index)
            bucket = table.get(key)
            if bucket:
                bucket.popleft()
                if not bucket:
                    del table[key]

    def _add(self, index: str, key: Any, entry: tuple[Any, ...], now: float) -> None:
        table: dict[Any, deque[Any]] = getattr(self, index)
        table.setdefault(key, deque()).append(entry)
        (self._order_timeline if index == "_orders" else self._timeline).append((now, index, key))

    def unknown_outcome(self, txn: TxnRecord) -> None:
        """A request whose outcome is unknown (timeout): a resend of it would be a retransmission."""
        key = self._key(txn)
        if key is not None:
            now = self.clock.now()
            self._evict(now)
            self._add("_unknown", key, (now, txn.id, txn.stan), now)

    def observe(self, txn: TxnRecord, journal: Journal | None = None) -> list[Detection]:
        """Record an approved charge and report duplicates of it."""
        now = self.clock.now()
        self._evict(now)
        out: list[Detection] = []
        key = self._key(txn)
        if key is not None:
            for at, other_id, other_stan in self._charges.get(key, ()):
                if journal is not None and journal.get_txn(other_id).state not in CHARGE_STANDS:
                    continue  # voided, reversed or refunded since
                same_stan = other_stan is not None and other_stan == txn.stan
                rule = "same_stan" if same_stan else "same_card_amount_terminal"
                out.append(Detection("duplicate_charge", rule, (other_id, txn.id), {
                    "classification": "retransmission" if same_stan else "possible_second_purchase",
                    "seconds_apart": round(now - at, 3), "amount_minor": txn.amount_minor,
                    "pan_masked": txn.pan_masked, "window": self.window,
                    "action": "void the extra leg before settlement, refund it after" if same_stan else
                              "ask the customer whether two purchases were intended",
                }))
            for at, other_id, _stan in self._unknown.get(key, ()):
                if journal is not None and journal.get_txn(other_id).state == "reversed":
                    continue
                out.append(Detection("duplicate_charge", "resend_after_timeout", (other_id, txn.id), {
                    "classification": "retransmission", "seconds_apart": round(now - at, 3),
                    "amount_minor": txn.amount_minor, "pan_masked": txn.pan_masked,
                    "action": "make sure the reversal of the timed-out leg is acknowledged; "
                              "if it expired, refund that leg",
                }))
            self._add("_charges", key, (now, txn.id, txn.stan), now)
        if txn.order_ref and txn.kind in ("sale", "completion"):
            for at, other_id in self._orders.get(txn.order_ref, ()):
                if journal is not None and journal.get_txn(other_id).state not in CHARGE_STANDS:
                    continue
                out.append(Detection("duplicate_charge", "same_order_reference", (other_id, txn.id), {
                    "classification": "duplicate_order", "order_ref": txn.order_ref,
                    "seconds_apart": round(now - at, 3),
                    "action": "one order paid twice: void or refund one leg",
                }))
            self._add("_orders", txn.order_ref, (now, txn.id), now)
        # one finding per pair of legs: the strongest evidence wins (the same order paid twice is proven, where
        # the same card and amount alone is a question for the customer)
        seen: set[tuple[str, ...]] = set()
        unique = []
        for d in sorted(out, key=lambda d: _STRENGTH.index(d.rule)):
            if d.txn_ids not in seen:
                seen.add(d.txn_ids)
                unique.append(d)
        override = operator_override(journal, txn) if unique and journal is not None else None
        if override is not None:  # charged again on purpose: recorded as overridden, not a duplicate to correct
            return [Detection("duplicate_override", "operator_override", d.txn_ids, {
                **d.evidence, "overridden_rule": d.rule, "classification": "operator_override",
                "approved_by": override.get("by"), "action": "recorded: the operator charged it again on purpose; "
                                                          "nothing to correct"}) for d in unique]
        return unique

    def warm(self, journal: Journal) -> int:
        """Reload the window from the journal after a restart; returns how many charges were loaded."""
        now = self.clock.now()
        since = now - max(self.window, self.order_window)
        rows = journal.find_txns("approved_at >= ? AND kind IN ('sale','completion')", (since,))
        for t in sorted(rows, key=lambda r: r.approved_at or since):
            at = t.approved_at or since
            key = self._key(t)
            if key is not None and at >= now - self.window:
                self._add("_charges", key, (at, t.id, t.stan), at)
            if t.order_ref:
                self._add("_orders", t.order_ref, (at, t.id), at)
        return len(rows)


def operator_override(journal: Journal, txn: TxnRecord) -> dict[str, Any] | None:
    """The operator's override journaled for ``txn`` before it was sent (``sale ... override=yes``), or None."""
    rows = journal.query("SELECT detail FROM events WHERE kind = 'operator_override' AND "
                         "json_extract(detail, '$.txn') = ? ORDER BY id DESC LIMIT 1", (txn.id,))
    if not rows:
        return None
    detail: dict[str, Any] = json.loads(rows[0]["detail"])
    if detail.get("order_ref") not in (None, txn.order_ref) or detail.get("amount_minor") not in (None,
                                                                                                  txn.amount_minor):
        return None  # the override was for another sale (that one was refused before it was created)
    return detail


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExemptionRule:
    """A transaction matching every given criterion needs no signature."""

    name: str
    scheme: str | None = None
    entry_modes: tuple[str, ...] = ()
    currency: str | None = None
    max_minor: int | None = None

    def matches(self, txn: TxnRecord) -> bool:
        return ((self.scheme is None or txn.scheme == self.scheme)
                and (not self.entry_modes or txn.entry_mode in self.entry_modes)
                and (self.currency is None or txn.currency == self.currency)
                and (self.max_minor is None or txn.amount_minor <= self.max_minor))


DEFAULT_EXEMPTIONS = (
    ExemptionRule("unionpay_qps_contactless_up_to_cny_1000", scheme="unionpay", entry_modes=("contactless",),
                  currency="CNY", max_minor=100_000),
)


class UnsignedDetector:
    """Signatures owed: a heap of deadlines for the approved-with-signature-CVM transactions only."""

    def __init__(self, exemptions: Iterable[ExemptionRule] = DEFAULT_EXEMPTIONS) -> None:
        self.exemptions = tuple(exemptions)
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self._deadlines)

    def exemption_for(self, txn: TxnRecord) -> str | None:
        for rule in self.exemptions:
            if rule.matches(txn):
                return rule.name
        return None

    def expect(self, txn: TxnRecord, deadline: float) -> None:
        self._deadlines[txn.id] = deadline
        heapq.heappush(self._heap, (deadline, txn.id))

    def signed(self, txn_id: str) -> None:
        self._deadlines.pop(txn_id, None)

    def overdue(self, now: float) -> list[Detection]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            deadline, txn_id = heapq.heappop(self._heap)
            if self._deadlines.get(txn_id) != deadline:
                continue  # signed, or re-armed
            del self._deadlines[txn_id]
            self._reported.add(txn_id)
            out.append(Detection("unsigned", "signature_deadline", (txn_id,), {
                "deadline": deadline, "action": "ask the customer to sign; if gone, keep the sale at own risk "
                                                "or void it before settlement"}))
        return out

    def at_batch_close(self, batch_no: int, journal: Journal) -> list[Detection]:
        out = []
        for t in journal.find_txns("batch_no = ? AND state IN ('signature_pending', 'unsigned')", (batch_no,)):
            self._deadlines.pop(t.id, None)
            if t.id in self._reported and t.state == "unsigned":
                continue
            out.append(Detection("unsigned", "batch_closed_without_signature", (t.id,), {
                "batch_no": batch_no, "cvm_results": t.cvm_results, "amount_minor": t.amount_minor,
                "action": "the sale settles unsigned; keep the slip and expect a chargeback risk"}))
        return out


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimVerdict:
    original_id: str
    refunded: bool
    explanation: str
    chain: tuple[str, ...]


class VoidMismatchDetector:
    """Checks void chains against the original, the journal history and the host's ledger."""

    def check_chain(self, original_id: str, journal: Journal) -> list[Detection]:
        original = journal.get_txn(original_id)
        out: list[Detection] = []
        voids = [c for c in journal.children(original_id) if c.kind == "void"]
        standing = {c.id for c in voids if c.state in CHARGE_STANDS}
        for v in voids:
            events = [h["event"] for h in journal.history(v.id) if h["accepted"]]
            ev: dict[str, Any] = {"original": original_id, "void": v.id, "void_state": v.state,
                                  "original_state": original.state, "void_rc": v.response_code}
            # another void of the original stands: this one's lost answer or undoing was put right by it
            superseded = bool(standing - {v.id})
            if not superseded and "approve" in events and "reverse_approved" in events:
                out.append(Detection("void_mismatch", "void_undone_by_reversal", (original_id, v.id), {
                    **ev, "action": "the charge stands again: void again in this batch, or refund after settlement"}))
            elif not superseded and "approve" not in events and v.state in UNRESOLVED | {"reversed"}:
                out.append(Detection("void_mismatch", "void_response_lost", (original_id, v.id), {
                    **ev, "action": "the void's answer was lost and it is being reversed: the original charge "
                                    "stands; void again once the reversal is acknowledged"}))
            if v.amount_minor != original.amount_minor:
                out.append(Detection("void_mismatch", "void_amount_differs", (original_id, v.id), {
                    **ev, "void_amount": v.amount_minor, "original_amount": original.amount_minor}))
            sent_rrn = _sent_field(journal, v.id, "37")
            if original.rrn and sent_rrn is not None and sent_rrn != original.rrn:
                out.append(Detection("void_mismatch", "void_reference_differs", (original_id, v.id), {
                    **ev, "void_rrn": sent_rrn, "original_rrn": original.rrn}))
        return out

    def reconcile(self, journal: Journal, ledger: Iterable[LedgerEntry], batch_no: int | None = None
                  ) -> list[Detection]:
        """Voids the terminal believes approved but the host's ledger does not show."""
        on_host = {(e.rrn, e.kind) for e in ledger if e.response_code == "00"}
        where = "kind = 'void' AND state IN ('approved', 'settled')"
        params: tuple[Any, ...] = ()
        if batch_no is not None:
            where += " AND batch_no = ?"
            params = (batch_no,)
        return [
            Detection("void_mismatch", "void_missing_from_host_ledger", (v.original_id or "", v.id), {
                "void_rrn": v.rrn, "action": "the host did not record the void: void again or refund"})
            for v in journal.find_txns(where, params) if (v.rrn or "", "void") not in on_host
        ]

    def customer_claim(self, original_id: str, journal: Journal) -> ClaimVerdict:
        """A customer says "I was not refunded": answer from the chain."""
        original = journal.get_txn(original_id)
        chain = [original_id] + [c.id for c in journal.children(original_id)]
        if original.state == "voided":
            void = next(c for c in journal.children(original_id) if c.kind == "void" and c.state in CHARGE_STANDS)
            return ClaimVerdict(original_id, True, f"voided by {void.id} (RRN {void.rrn}, auth {void.auth_code}); "
                                "the issuer releases the hold, usually the same or next day", tuple(chain))
        if original.state == "refunded":
            return ClaimVerdict(original_id, True, f"refunded in full ({original.refunded_minor}); refunds post "
                                "in 1-10 clearing days", tuple(chain))
        if original.state == "reversed":
            return ClaimVerdict(original_id, True, "the charge was reversed; the issuer releases the hold",
                                tuple(chain))
        problems = self.check_chain(original_id, journal)
        why = "; ".join(d.rule for d in problems) or "no approved void or refund exists"
        part = f" (refunded {original.refunded_minor} of {original.amount_minor})" if original.refunded_minor else ""
        return ClaimVerdict(original_id, False, f"the charge stands{part}: {why}", tuple(chain))


def _sent_field(journal: Journal, txn_id: str, key: str) -> str | None:
    for row in journal.messages(txn_id):
        if row["direction"] == "out":
            value = json.loads(row["masked"]).get(key)
            return str(value) if value is not None else None
    return None


# ---------------------------------------------------------------------------------------------------
class ReconciliationDetector:
    """Money that did not arrive, or will not."""

    def __init__(self, clock: Clock, max_batch_age: float = 26 * 3600.0) -> None:
        self.clock = clock
        self.max_batch_age = max_batch_age

    def on_settlement(self, batch_no: int, totals: dict[str, int], balanced: bool, rc: str | None,
                      journal: Journal, *, flags: dict[str, str] | None = None) -> list[Detection]:
        """An unbalanced batch: one detection naming the batch (no transactions: which of them are concerned is
        known only from the acquirer's report). CUP ``flags`` say which side (domestic/foreign) disagreed."""
        if balanced:
            return []
        unbalanced = [side for side, f in (flags or {}).items() if f in ("2", "3")]
        return [Detection("unsettled", "totals_unbalanced", (), {
            "batch_no": batch_no, "terminal_totals": totals, "host_rc": rc, "flags": dict(flags or {}),
            "unbalanced_sides": unbalanced,
            "action": "details were uploaded and nothing more is sent; compare the acquirer's settlement report "
                      "with the journal (posguard reconcile --report FILE)"})]

    def check(self, journal: Journal, ledger: Iterable[LedgerEntry] | None = None) -> list[Detection]:
        now = self.clock.now()
        out: list[Detection] = []
        for item in journal.saf_items(["queued", "sent", "expired"]):
            rule = "reversal_or_advice_expired" if item.state == "expired" else "reversal_or_advice_pending"
            out.append(Detection("unsettled", rule, (item.txn_id or "",), {
                "saf_id": item.id, "kind": item.kind, "mti": item.mti, "attempts": item.attempts,
                "last": item.last_rc or item.last_error}))
        batch = journal.batch(journal.current_batch())
        first = journal.batch_opened_at()
        if batch is not None and first is not None and now - first > self.max_batch_age:
            out.append(Detection("unsettled", "batch_not_closed", (), {
                "batch_no": batch["batch_no"], "open_for_hours": round((now - first) / 3600, 1),
                "action": "run settlement: funds do not move until the batch is closed"}))
        if ledger is not None:
            on_host = {e.rrn for e in ledger if e.response_code == "00"}
            for t in journal.find_txns("kind IN ('sale','completion','refund') AND state IN "
                                       "('approved','signed','unsigned','signature_pending','settled','uploaded')"):
                if t.rrn and t.rrn not in on_host:
                    out.append(Detection("unsettled", "missing_from_host_ledger", (t.id,), {
                        "rrn": t.rrn, "amount_minor": t.amount_minor, "batch_no": t.batch_no}))
        return out


    def compare(self, journal: Journal, report: SettlementReport, *, terminal_id: str,
                batches: Iterable[int] | None = None,
                card_hash: Callable[[TxnRecord], str | None] | None = None) -> list[Detection]:
        """The acquirer's settlement report against the journal, both ways (pos-flows.md §A "Not arrived").

        Scope: the rows of ``terminal_id``; the journal's transactions of ``batches`` (default: every batch the
        report's rows name). A row without a batch (ISO dialects) is in scope when it matches a transaction in
        scope, or matches none at all (then the terminal has never seen it). Matching: by RRN and kind, else by
        STAN + batch + amount + kind. ``card_hash`` (the PAN hash of a journal transaction, from its sealed
        card) confirms the card when both sides have one; masked PANs are compared otherwise.

        Findings (rule, one transaction each): ``approval_missing_at_host``, ``host_booked_not_approved`` (the
        terminal state says which: declined, reversed, voided, timed out...), ``host_booked_unknown``,
        ``amount_differs``, ``card_differs``.
        """
        rows = [r for r in report.for_terminal(terminal_id) if r.kind in HELD_APPROVED]
        scope = set(batches) if batches is not None else {r.batch for r in rows if r.batch is not None}
        marks = ",".join("?" for _ in scope)
        txns = journal.find_txns(f"terminal_id = ? AND batch_no IN ({marks}) AND kind IN ('sale','completion',"
                                 "'preauth','refund','void')", (terminal_id, *sorted(scope))) if scope else []
        everyone = journal.find_txns("terminal_id = ? AND kind IN ('sale','completion','preauth','refund','void')",
                                     (terminal_id,))
        by_rrn = {(t.kind, t.rrn): t for t in everyone if t.rrn}
        by_key = {(t.kind, t.stan, t.batch_no, t.amount_minor): t for t in everyone if t.stan is not None}
        by_stan = {(t.kind, t.stan, t.amount_minor): t for t in everyone if t.stan is not None}
        in_scope = {t.id for t in txns}
        matched: dict[str, list[ReportRow]] = {}
        out: list[Detection] = []
        for row in rows:
            txn = (by_rrn.get((row.kind, row.rrn)) if row.rrn else None) or (
                by_key.get((row.kind, row.stan, row.batch, row.amount_minor)) if row.batch is not None
                else by_stan.get((row.kind, row.stan, row.amount_minor)))
            if txn is None:
                if row.booked and (row.batch is None or row.batch in scope):
                    out.append(Detection("unsettled", "host_booked_unknown", (), _row_evidence(row, None)))
                continue
            if txn.id not in in_scope:
                continue
            matched.setdefault(txn.id, []).append(row)
        for txn in txns:
            found = matched.get(txn.id, [])
            booked = [r for r in found if r.booked]
            held = txn.state in HELD_APPROVED.get(txn.kind, frozenset())
            if held and not booked:
                out.append(Detection("unsettled", "approval_missing_at_host", (txn.id,),
                                     _row_evidence(found[0] if found else None, txn)))
            elif booked and not held:
                out.append(Detection("unsettled", "host_booked_not_approved", (txn.id,), _row_evidence(booked[0], txn)))
            elif booked and held:
                row = booked[0]
                if row.amount_minor != txn.amount_minor:
                    out.append(Detection("unsettled", "amount_differs", (txn.id,), _row_evidence(row, txn)))
                elif _other_card(row, txn, card_hash):
                    out.append(Detection("unsettled", "card_differs", (txn.id,), _row_evidence(row, txn)))
        return out

# ---------------------------------------------------------------------------------------------------
@dataclass
class Detectors:
    duplicate: DuplicateChargeDetector
    unsigned: UnsignedDetector
    void_mismatch: VoidMismatchDetector
    reconciliation: ReconciliationDetector

    @classmethod
    def default(cls, clock: Clock, *, duplicate_window: float = 600.0, order_window: float = 24 * 3600.0,
                exemptions: Iterable[ExemptionRule] = DEFAULT_EXEMPTIONS) -> Detectors:
        return cls(DuplicateChargeDetector(clock, duplicate_window, order_window), UnsignedDetector(exemptions),
                   VoidMismatchDetector(), ReconciliationDetector(clock))

    def on_approved(self, txn: TxnRecord, journal: Journal) -> list[Detection]:
        found = self.duplicate.observe(txn, journal)
        if txn.kind == "void" and txn.original_id:
            found += self.void_mismatch.check_chain(txn.original_id, journal)
        return found


def _other_card(row: ReportRow, txn: TxnRecord, card_hash: Callable[[TxnRecord], str | None] | None) -> bool:
    ours = card_hash(txn) if card_hash is not None and row.pan_hash else None
    if ours is not None and row.pan_hash is not None:
        return ours != row.pan_hash
    return bool(row.pan_masked and txn.pan_masked and row.pan_masked != txn.pan_masked)


def _row_evidence(row: ReportRow | None, txn: TxnRecord | None) -> dict[str, Any]:
    """One finding's evidence: the transaction named as both sides know it; card data masked only."""
    ev: dict[str, Any] = {
        "txn_id": txn.id if txn else None,
        "stan": txn.stan if txn and txn.stan is not None else (row.stan if row else None),
        "rrn": (txn.rrn if txn and txn.rrn else None) or (row.rrn if row else None),
        "batch_no": txn.batch_no if txn else (row.batch if row else None),
        "pan_masked": (txn.pan_masked if txn else None) or (row.pan_masked if row else None),
        "amount_minor": txn.amount_minor if txn else (row.amount_minor if row else 0),
        "currency": txn.currency if txn else (row.currency if row else ""),
        "kind": txn.kind if txn else (row.kind if row else ""),
        "auth_code": (txn.auth_code if txn and txn.auth_code else None) or (row.auth_code if row else None),
        "at": (txn.approved_at or txn.created_at) if txn else None,
        "terminal_state": txn.state if txn else None,
        "terminal_rc": txn.response_code if txn else None,
        "host_status": row.status if row else None,
        "host_amount_minor": row.amount_minor if row else None,
        "host_time": f"{row.host_date} {row.host_time}" if row else None,
        "card_org": row.card_org if row else None,
        "report_line": row.line if row else None,
    }
    return ev
