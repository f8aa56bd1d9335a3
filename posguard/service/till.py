"""The till: operator actions in, transactions through the engine, incidents and their corrections out.

The same :class:`Till` runs a live day (``posguard demo``/``posguard run``, on the real host link) and a
replayed one (``posguard replay``, on a :class:`~posguard.capture.replay.ReplayLink` and a virtual clock),
so a replay finds the incidents the live run found by construction. Every operator action is one
:class:`Op`; every capture records it as an ``op`` record, which is what a replay feeds back in.

Corrections go through :mod:`posguard.flows` (``FLOWS[kind]().run(ctx, request)``). A kind whose flow is not
installed is corrected by the minimal engine procedure in :data:`_FALLBACK` so the till keeps working.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from posguard.card import CardData
from posguard.engine.detectors import Detection
from posguard.engine.engine import TransactionEngine, TxnResult
from posguard.engine.errors import CorrectionRefused, TransactionsBlocked
from posguard.engine.ports import HostError
from posguard.iso8583.message import Message
from posguard.sensitive import mask_digits_in_text

if TYPE_CHECKING:
    from posguard.capture.format import CaptureWriter

__all__ = ["Op", "Incident", "Till", "WireLog", "OPS", "safe_hex"]

#: operator actions the till understands (the ``op`` of an ``op`` record) and their arguments
OPS: dict[str, str] = {
    "sale": "card, amount[, order]",
    "sign": "txn",
    "signature_refused": "txn",
    "void": "txn",
    "refund": "txn, amount",
    "wrong_card": "txn, card (the card the customer meant)",
    "wrong_amount": "txn, amount (the order total that should have been charged)",
    "dispute": "txn (the customer says the void/refund never arrived)",
    "flush": "",
    "settle": "",
}
_WIRE_REDACTED = ("2", "14", "35", "36", "45", "52", "53", "55", "62", "96")


def safe_hex(msg: Message) -> str:
    """A wire image without card data or keys (the fields a flow's messages also drop)."""
    copy = msg.copy()
    for f in _WIRE_REDACTED:
        if f in copy:
            del copy[f]
    try:
        return copy.encode().hex().upper()
    except Exception:  # noqa: BLE001 - a dialect may insist on a removed field: say so, show nothing
        return ""


@dataclass(frozen=True)
class Op:
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Incident:
    kind: str
    rule: str
    transactions: list[str]
    flow: str | None
    messages: list[str]
    outcome: str
    detail: str = ""
    mtis: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"incident": self.kind, "rule": self.rule, "transactions": self.transactions, "flow": self.flow,
                "messages": self.messages, "outcome": self.outcome, "detail": mask_digits_in_text(self.detail)}

    def line(self) -> str:
        msgs = " ".join(self.mtis) or f"{len(self.messages)}" if self.messages else "none"
        return (f"INCIDENT {self.kind} [{self.rule}] txns {', '.join(self.transactions) or '-'} -> "
                f"flow {self.flow or '-'}: {self.outcome} (messages: {msgs})"
                + (f" — {mask_digits_in_text(self.detail)}" if self.detail else ""))


class WireLog:
    """A host link wrapper that remembers every exchange and hands it to a capture writer.

    Exceptions are recorded as ``link`` records (``timeout``, ``link_error``, ``invalid_response``) so a replay
    can raise the same failure at the same point.
    """

    def __init__(self, inner: Any, writer: CaptureWriter | None = None) -> None:
        self.inner = inner
        self.writer = writer
        self.sent: list[Message] = []

    def exchange(self, request: Message, *, timeout: float) -> Message:
        self.sent.append(request)
        if self.writer is not None:
            self.writer.iso("out", request.encode())
        try:
            response: Message = self.inner.exchange(request, timeout=timeout)
        except HostError as exc:
            if self.writer is not None:
                self.writer.record("link", event=_error_kind(exc), maybe_sent=exc.maybe_sent,
                                   detail=mask_digits_in_text(str(exc))[:200])
            raise
        if self.writer is not None:
            self.writer.iso("in", response.encode())
        return response

    def __getattr__(self, name: str) -> Any:  # sign_on, echo, close, stats... of the real link
        return getattr(self.inner, name)


def _error_kind(exc: HostError) -> str:
    from posguard.engine.ports import HostLinkError, HostTimeout, InvalidResponse

    if isinstance(exc, HostTimeout):
        return "timeout"
    if isinstance(exc, InvalidResponse):
        return "invalid_response"
    if isinstance(exc, HostLinkError):
        return "link_error"
    return "error"


def _flows() -> Any:
    try:
        return importlib.import_module("posguard.flows")
    except ImportError:
        return None


class Till:
    """Runs :class:`Op` s. ``cards`` maps a card reference (``c1``) to the :class:`CardData` read for it."""

    def __init__(self, engine: TransactionEngine, *, dialect: str, say: Callable[[str], None] | None = None,
                 writer: CaptureWriter | None = None, dry_run_flows: bool = False) -> None:
        self.engine = engine
        self.dialect = dialect
        self.say = say or (lambda _line: None)
        self.writer = writer
        self.dry_run_flows = dry_run_flows
        self.cards: dict[str, CardData] = {}
        self.txn_cards: dict[str, str] = {}  # transaction id -> card reference it was charged to
        self.incidents: list[Incident] = []
        self.results: list[TxnResult] = []
        self.wire = WireLog(engine.link, writer)
        engine.link = self.wire
        self._seen: set[tuple[str, tuple[str, ...]]] = set()

    # -- cards ---------------------------------------------------------------------------------------
    def add_card(self, ref: str, card: CardData, **evidence: Any) -> None:
        self.cards[ref] = card
        if self.writer is not None:
            test_pan = self.writer.learn_pan(card.pan.reveal())
            self.writer.record("card", ref=ref, pan=test_pan, expiry=card.expiry, entry_mode=card.entry_mode,
                               scheme=card.scheme, cvm_results=card.cvm_results.hex().upper()
                               if card.cvm_results else None, field55=card.field55.hex().upper(),
                               **({"cvm_required": True} if card.cvm_required else {}), **evidence)

    # -- operator actions ----------------------------------------------------------------------------
    def do(self, op: str, **args: Any) -> Any:
        if op not in OPS:
            raise ValueError(f"unknown operator action {op!r}; known: {', '.join(OPS)}")
        if self.writer is not None:
            self.writer.record("op", op=op, **args)
        handler: Callable[..., Any] = getattr(self, f"_op_{op}")
        try:
            return handler(**args)
        except (CorrectionRefused, TransactionsBlocked) as exc:
            self.say(f"refused: {mask_digits_in_text(str(exc))}")
            return None

    def _note(self, result: TxnResult, what: str) -> TxnResult:
        self.results.append(result)
        rc = f" rc {result.response_code}" if result.response_code else ""
        self.say(f"{what}: {result.txn_id} {result.state}{rc} stan {result.stan} rrn {result.rrn or '-'}")
        self._handle(result.detections)
        return result

    def _op_sale(self, card: str, amount: int, order: str | None = None) -> TxnResult:
        result = self.engine.sale(self.cards[card], int(amount), order_ref=order)
        self.txn_cards[result.txn_id] = card
        self._note(result, f"sale {amount / 100:.2f} on {self.cards[card].pan_masked}")
        if result.state == "reversed":
            self._record_auto("reversal", "outcome_unknown", [result.txn_id],
                              "no valid answer in time: the engine reversed the sale (0400 acknowledged)")
        return result

    def _op_sign(self, txn: str) -> TxnResult:
        return self._note(self.engine.sign(txn), "signature captured")

    def _op_signature_refused(self, txn: str) -> None:
        self.say(f"customer left without signing {txn}")
        self._correct("unsigned", "signature_refused", (txn,), customer_present=False)

    def _op_void(self, txn: str) -> TxnResult:
        result = self._note(self.engine.void(txn), f"void of {txn}")
        if result.state in ("reversed", "reversal_pending", "timed_out"):
            self.say(f"the void of {txn} got no answer: the engine reverses the void, the charge stands")
        return result

    def _op_refund(self, txn: str, amount: int) -> TxnResult:
        return self._note(self.engine.refund(txn, int(amount)), f"refund {amount / 100:.2f} of {txn}")

    def _op_wrong_card(self, txn: str, card: str) -> None:
        self.say(f"customer: {txn} went on the wrong card, meant {self.cards[card].pan_masked}")
        self._correct("wrong_card", "customer_claim", (txn,), right_card=self.cards[card],
                      original_card=self._card_of(txn), operator_confirmed=True)

    def _op_wrong_amount(self, txn: str, amount: int) -> None:
        self.say(f"customer: {txn} should have been {int(amount) / 100:.2f}")
        card = self._card_of(txn)
        self._correct("wrong_amount", "customer_claim", (txn,), intended_amount=int(amount), right_card=card,
                      original_card=card, operator_confirmed=True)

    def _op_dispute(self, txn: str) -> None:
        self.say(f"customer: the void of {txn} never arrived")
        verdict = self.engine.detectors.void_mismatch.customer_claim(txn, self.engine.journal)
        self.say(f"journal says: {verdict.explanation}")
        found = self.engine.detectors.void_mismatch.check_chain(txn, self.engine.journal)
        rule = found[0].rule if found else ("proof" if verdict.refunded else "no_void")
        ids = found[0].txn_ids if found else (txn,)
        self._correct("void_mismatch", rule, tuple(ids), claim="money did not come back",
                      original_card=self._card_of(txn), operator_confirmed=True)

    def _card_of(self, txn: str) -> CardData | None:
        ref = self.txn_cards.get(txn)
        return self.cards.get(ref) if ref is not None else None

    def _op_flush(self) -> None:
        left = self.engine.flush(wait=True)
        self.say(f"queue sent; {len(left)} still pending")

    def _op_settle(self) -> None:
        result = self.engine.settle()
        t = result.totals
        self.say(f"settlement batch {result.batch_no}: {t['debit_count']} sale(s) {t['debit_minor'] / 100:.2f}, "
                 f"{t['credit_count']} refund(s) {t['credit_minor'] / 100:.2f}, "
                 f"{'balanced' if result.balanced else 'UNBALANCED rc ' + str(result.response_code)}; "
                 f"{result.uploaded} detail(s) uploaded")
        self._handle(result.detections)

    # -- incidents ------------------------------------------------------------------------------------
    def _handle(self, detections: tuple[Detection, ...]) -> None:
        for d in detections:
            key = (d.kind, tuple(d.txn_ids))
            if key in self._seen:
                continue
            self._seen.add(key)
            self.say(f"DETECTED {d.kind} [{d.rule}] {', '.join(d.txn_ids)}: "
                     f"{mask_digits_in_text(str(d.evidence.get('action', '')))}")
            self._correct(d.kind, d.rule, tuple(t for t in d.txn_ids if t),
                          cause="network" if d.rule == "resend_after_timeout" else None)

    def _record_auto(self, kind: str, rule: str, txn_ids: list[str], detail: str) -> None:
        sent = [m for m in self.wire.sent[-3:] if m.is_reversal]
        inc = Incident(kind, rule, txn_ids, "engine", [safe_hex(m) for m in sent], "reversed", detail,
                       [m.mti for m in sent])
        self.incidents.append(inc)
        self.say(inc.line())

    @contextmanager
    def _collect(self) -> Iterator[list[Message]]:
        start = len(self.wire.sent)
        out: list[Message] = []
        yield out
        out.extend(self.wire.sent[start:])

    def _correct(self, kind: str, rule: str, txn_ids: tuple[str, ...], **request: Any) -> Incident:
        flows = _flows()
        if self.writer is not None:
            self.writer.record("link", event="flow", kind=kind, rule=rule, txn_ids=list(txn_ids))
        if flows is not None and kind in flows.FLOWS:
            ctx = flows.FlowContext(self.engine, self.engine.journal, self.dialect, clock=self.engine.clock)
            req = flows.FlowRequest(kind, txn_ids, **request)
            with self._collect() as sent:
                outcome = flows.FLOWS[kind]().run(ctx, req, dry_run=self.dry_run_flows)
            messages = list(outcome.messages) if self.dry_run_flows else [safe_hex(m) for m in sent]
            inc = Incident(kind, rule, list(txn_ids), kind, messages, outcome.outcome, outcome.reason,
                           [m.mti for m in sent])
        else:
            with self._collect() as sent:
                result, detail = _FALLBACK.get(kind, _report_only)(self, txn_ids, request)
            inc = Incident(kind, rule, list(txn_ids), f"builtin:{kind}", [safe_hex(m) for m in sent], result,
                           detail, [m.mti for m in sent])
        self.incidents.append(inc)
        self.say(inc.line())
        return inc


# -- minimal corrections while a flow is not installed ----------------------------------------------------
Fallback = Callable[[Till, tuple[str, ...], dict[str, Any]], tuple[str, str]]


def _report_only(till: Till, txn_ids: tuple[str, ...], request: dict[str, Any]) -> tuple[str, str]:
    return "recorded", "no correction flow installed for this kind"


def _void_or_refund(till: Till, txn_id: str) -> tuple[str, str]:
    txn = till.engine.journal.get_txn(txn_id)
    if txn.state in ("voided", "reversed", "refunded"):
        return "nothing_to_do", f"{txn_id} is already {txn.state}"
    try:
        result = till.engine.void(txn_id)
        return ("voided" if result.approved else "failed"), f"void {result.txn_id} rc {result.response_code}"
    except CorrectionRefused:
        result = till.engine.refund(txn_id, txn.amount_minor - txn.refunded_minor)
        return ("refunded" if result.approved else "failed"), f"refund {result.txn_id} rc {result.response_code}"


def _fb_unsigned(till: Till, txn_ids: tuple[str, ...], request: dict[str, Any]) -> tuple[str, str]:
    return _void_or_refund(till, txn_ids[0])


def _fb_void_mismatch(till: Till, txn_ids: tuple[str, ...], request: dict[str, Any]) -> tuple[str, str]:
    verdict = till.engine.detectors.void_mismatch.customer_claim(txn_ids[0], till.engine.journal)
    if verdict.refunded:
        return "proof", verdict.explanation
    till.engine.flush(wait=True)
    return _void_or_refund(till, txn_ids[0])


def _fb_unsettled(till: Till, txn_ids: tuple[str, ...], request: dict[str, Any]) -> tuple[str, str]:
    left = till.engine.flush(wait=True)
    return ("uploaded" if not left else "pending"), f"{len(left)} queued item(s) still pending"


_FALLBACK: dict[str, Fallback] = {
    "unsigned": _fb_unsigned,
    "void_mismatch": _fb_void_mismatch,
    "unsettled": _fb_unsettled,
}
