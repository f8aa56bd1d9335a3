"""What every correction flow shares: the request, the context, the outcome and the write-ahead step runner.

A flow is a short procedure over the transaction engine's public operations (``void``, ``refund``, ``sale``,
``reverse``, ``sign``, ``flush``, ``settle``). It never talks to a socket. Its steps are journaled
*write-ahead* in the engine's journal (``events`` rows of kind ``flow_step``) so that a flow interrupted by a
crash can be resumed on the same journal file: a finished step is never repeated, and a step that was started
but not confirmed is first looked up in the journal (did the engine create the void? what did the host say?)
before anything is sent again.

The incident itself is one ``incidents`` row (kind ``flow:<incident kind>``) whose ``detail`` holds the
request (masked); the steps and the outcome are ``events`` rows pointing at it. ``posguard.incidents``
assembles them into the record operators read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from posguard.card import CardData
from posguard.clock import Clock
from posguard.engine.acquirer_report import SettlementReport
from posguard.engine.chart import CHARGE_STANDS, IN_DOUBT
from posguard.engine.detectors import LedgerEntry
from posguard.engine.errors import CorrectionRefused, TransactionsBlocked
from posguard.engine.journal import Journal, JournalError, TxnRecord
from posguard.flows.outcomes import Outcome
from posguard.iso8583.redaction import evidence_image
from posguard.notices import Notice, notice_for
from posguard.notices.outbox import FileOutbox
from posguard.sensitive import mask_contact, scrub

if TYPE_CHECKING:
    from posguard.engine.engine import TransactionEngine, TxnResult

__all__ = [
    "INCIDENT_KINDS",
    "CAUSES",
    "FlowPolicies",
    "FlowContext",
    "FlowRequest",
    "FlowOutcome",
    "Step",
    "Flow",
    "FlowRefused",
    "FlowCrash",
    "StepRunner",
]

INCIDENT_KINDS = ("duplicate_charge", "unsigned", "void_mismatch", "unsettled", "wrong_card", "wrong_amount",
                  "reversal")
#: where an error came from (the incident's ``cause``)
CAUSES = ("operator_input", "device_fault", "network", "host", "card", "customer_claim", "unknown")
#: what an online step's transaction may end in for the step to be done: the charge it made stands, or the
#: void/refund it asked for went through
_STEP_DONE = CHARGE_STANDS | {"voided", "refunded"}
#: a transaction a crashed step created that left nothing standing at the host: the step is sent again
_SEND_AGAIN = frozenset({"reversed", "cancelled", "not_sent", "reversal_failed"})

KillHook = Callable[[str], None]


class FlowRefused(Exception):
    """The flow refused before sending anything; the message says why and what to do instead."""


class FlowCrash(Exception):
    """Raised by test kill hooks to simulate a crash (never raised by production code)."""


@dataclass(frozen=True)
class FlowPolicies:
    """Which corrections run on their own and which wait for an operator's confirmation.

    ``automatic`` lists the (kind, situation) pairs a flow may execute without ``operator_confirmed``;
    everything else stops at ``awaiting_confirmation`` with nothing sent.
    """

    automatic: frozenset[str] = frozenset({
        "reversal", "duplicate_charge:retransmission", "unsettled", "void_mismatch:proof", "void_mismatch:redo",
        "unsigned:capture",
    })
    #: guide 004, customer gone: follow_up (contact them to sign afterwards, 补签) | keep (merchant's risk at once)
    unsigned_customer_gone: str = "follow_up"
    #: how long a follow-up waits for its outcome (engine clock); past it the sale is kept at the merchant's risk.
    #: One clearing day: a void is possible only until the batch settles (pos-flows.md A "Not signed", D "Void
    #: window: same clearing day").
    follow_up_deadline: float = 24 * 3600.0
    #: a UnionPay void of the wrong card needs that card's data (PAN, expiry): from a presentation, or the till's own
    #: record of the charged card, sent as keyed (22 = 01x; openpos with ``ucUnSaleSwipe`` off). Without either the
    #: flow refuses and says to present the card or refund after settlement. A swipe is not asked for: the till
    #: always holds its record of a card it charged.
    cup_void_needs_card: bool = True
    signature_dir: str | None = None  # where e-signature images are stored (None: hash only in the journal)
    outbox: str | None = None  # notices go nowhere unless the merchant configured an outbox
    printer_columns: int = 32
    languages: tuple[str, ...] = ("zh", "en")
    timezone: str | None = None  # terminal.timezone (IANA); None: the box's local zone. The journal stays UTC.

    def __post_init__(self) -> None:
        if self.unsigned_customer_gone not in ("follow_up", "keep"):
            raise ValueError(f"unsigned_customer_gone {self.unsigned_customer_gone!r}: follow_up or keep (a void "
                             "needs the customer's consent: follow_up='voided_with_consent')")
        if self.follow_up_deadline <= 0:
            raise ValueError("follow_up_deadline: seconds, more than 0")

    def is_automatic(self, key: str) -> bool:
        return key in self.automatic or key.split(":")[0] in self.automatic


@dataclass
class FlowContext:
    """What a flow works with. ``clock`` is the engine's clock unless a test gives another."""

    engine: TransactionEngine
    journal: Journal
    dialect: str
    policies: FlowPolicies = field(default_factory=FlowPolicies)
    clock: Clock | None = None
    kill_points: KillHook | None = None

    def now(self) -> float:
        return (self.clock or self.engine.clock).now()

    def kill(self, point: str) -> None:
        if self.kill_points is not None:
            self.kill_points(point)


@dataclass(frozen=True, repr=False)
class FlowRequest:
    """What the operator (or a detector) asks for. Cards are :class:`CardData`, which masks itself."""

    kind: str
    txn_ids: tuple[str, ...] = ()
    intended_amount: int | None = None  # wrong_amount: the order total that should have been charged
    right_card: CardData | None = None  # wrong_card: the card the customer meant; wrong_amount: card for re-sale
    original_card: CardData | None = None  # the card of the original, presented again (CUP voids)
    customer_present: bool | None = None
    operator_confirmed: bool = False
    claim: str | None = None  # the customer's words, e.g. "money did not come back"
    reason: str | None = None  # reversal: timeout | invalid_response | bad_mac | card_decline | power_loss
    signature: bytes | None = None  # unsigned: e-signature image from the pad
    signature_source: str | None = None  # pad | paper
    operator: str | None = None
    cause: str | None = None
    contact: str | None = None  # customer contact (masked wherever shown)
    incident_id: int | None = None  # set to resume an incident
    host_ledger: tuple[LedgerEntry, ...] | None = None  # unsettled: the acquirer's report, when the merchant has it
    #: unsigned, guide 004: signed_later | kept_at_risk | voided_with_consent | escalate | contacted | deadline
    follow_up: str | None = None
    batch_no: int | None = None  # unsettled: the batch to reconcile (default: the open batch)
    settlement_report: SettlementReport | None = None  # unsettled: the acquirer's settlement report (imported)

    def describe(self) -> dict[str, Any]:
        """The request as journaled: masked, JSON-safe, enough to resume."""
        return {
            "kind": self.kind, "txn_ids": list(self.txn_ids), "intended_amount": self.intended_amount,
            "right_card": self.right_card.pan_masked if self.right_card else None,
            "original_card": self.original_card.pan_masked if self.original_card else None,
            "customer_present": self.customer_present, "operator_confirmed": self.operator_confirmed,
            "claim": scrub(self.claim) if self.claim else None, "reason": self.reason,
            "signature_source": self.signature_source, "operator": self.operator, "cause": self.cause,
            "contact": mask_contact(self.contact) if self.contact else None,
            **({"follow_up": self.follow_up} if self.follow_up else {}),
            **({"batch_no": self.batch_no} if self.batch_no is not None else {}),
            **({"report": {"path": self.settlement_report.source, "sha256": self.settlement_report.digest}}
               if self.settlement_report is not None else {}),
        }

    def __repr__(self) -> str:
        return f"FlowRequest({self.describe()!r})"


@dataclass
class Step:
    """One step of a flow as it happened (or, in a dry run, would happen)."""

    name: str
    status: str  # done | skipped | refused | pending | would_send | failed
    detail: str = ""
    txn_id: str | None = None
    response_code: str | None = None
    mti: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": scrub(self.detail),
                "txn_id": self.txn_id, "response_code": self.response_code, "mti": self.mti}


@dataclass
class FlowOutcome:
    """``messages`` are hex wire images of what was sent, card data removed as the dialect declares
    (:func:`~posguard.iso8583.redaction.evidence_image`); ``outcome`` is one :class:`Outcome` word."""

    incident_id: int | None
    kind: str
    steps: list[Step]
    messages: list[str]
    outcome: Outcome
    notice: Notice | None = None
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.outcome == Outcome.REFUSED

    def to_dict(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "kind": self.kind, "outcome": self.outcome,
                "reason": scrub(self.reason), "steps": [s.to_dict() for s in self.steps],
                "messages": list(self.messages), "notice": self.notice.to_dict() if self.notice else None}


class StepRunner:
    """Runs a flow's steps write-ahead in the journal; skips what a previous run already finished.

    For each step: ``flow_step`` event *started* (with the journal's transaction counter, so a resumed run can
    find a transaction the engine created for this step), then the action, then ``flow_step`` *done* with the
    result. A started step without *done* is probed before it is repeated.
    """

    def __init__(self, ctx: FlowContext, incident_id: int | None, dry_run: bool) -> None:
        self.ctx = ctx
        self.incident_id = incident_id
        self.dry_run = dry_run
        self.steps: list[Step] = []
        self.planned: list[str] = []  # dry run: the messages that would be sent
        self._history = self._load() if incident_id is not None else {}

    # -- journal ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        assert self.incident_id is not None
        rows = self.ctx.journal.flow_events(self.incident_id, outcome=False)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            d = json.loads(r["detail"])
            out.setdefault(d["step"], {}).update(d)
        return out

    def _event(self, step: str, **detail: Any) -> None:
        if self.dry_run or self.incident_id is None:
            return
        with self.ctx.journal.atomic(f"flow_step:{step}"):
            self.ctx.journal.record_event("flow_step", txn_id=detail.get("txn_id"),
                                          detail={"incident": self.incident_id, "step": step, **detail})
        self._history.setdefault(step, {}).update(detail)

    def fresh_name(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... for a step that may happen more than once on one incident."""
        if base not in self._history:
            return base
        n = 2
        while f"{base}_{n}" in self._history:
            n += 1
        return f"{base}_{n}"

    def done_before(self, name: str) -> dict[str, Any] | None:
        h = self._history.get(name)
        return h if h and h.get("status") in ("done", "skipped", "refused", "failed") else None

    # -- steps -----------------------------------------------------------------------------------
    def note(self, name: str, detail: str, *, status: str = "done", txn_id: str | None = None,
             response_code: str | None = None, **extra: Any) -> Step:
        """A step that sends nothing (a check, a record): journaled once."""
        prev = self.done_before(name)
        if prev is not None:
            step = Step(name, prev["status"], prev.get("detail", ""), prev.get("txn_id"), prev.get("rc"))
        else:
            step = Step(name, status, detail, txn_id, response_code)
            self.ctx.kill(f"flow.before:{name}")
            self._event(name, status=status, detail=scrub(detail), txn_id=txn_id, rc=response_code,
                        **extra)
            self.ctx.kill(f"flow.after:{name}")
        self.steps.append(step)
        return step

    def online(self, name: str, *, kind: str, mti: str, would: str, action: Callable[[], TxnResult],
               match: Callable[[TxnRecord], bool], planned: Callable[[], str | None] | None = None) -> Step:
        """A step that asks the engine to send ``kind``; ``match`` recognises its transaction after a crash."""
        prev = self.done_before(name)
        if prev is not None:
            step = Step(name, prev["status"], prev.get("detail", ""), prev.get("txn_id"), prev.get("rc"), mti)
            self.steps.append(step)
            return step
        if self.dry_run:
            image = planned() if planned is not None else None
            if image:
                self.planned.append(image)
            step = Step(name, "would_send", would, None, None, mti)
            self.steps.append(step)
            return step
        started = self._history.get(name)
        found: TxnRecord | None = None
        if started is not None:  # a previous run started this step: what did the engine do?
            counter = int(started.get("txn_counter", 0))
            for t in self.ctx.journal.find_txns("kind = ?", (kind,)):
                if _txn_number(t.id) > counter and match(t):
                    found = t
            if found is not None and found.state in IN_DOUBT:
                self.ctx.engine.flush()
                found = self.ctx.journal.get_txn(found.id)
                if found.state in IN_DOUBT:
                    step = Step(name, "pending", f"{kind} {found.id} is still {found.state}: its outcome is not "
                                "known yet; resume this incident once the host acknowledges the reversal/advice",
                                found.id, found.response_code, mti)
                    self.steps.append(step)
                    return step
            if found is not None and found.state in _SEND_AGAIN:
                found = None  # nothing stands: send again
        if found is None:
            self.ctx.kill(f"flow.before:{name}")
            self._event(name, status="started", txn_counter=self.ctx.journal.peek_counter("txn"))
            try:
                result = action()
            except (CorrectionRefused, TransactionsBlocked) as exc:
                step = Step(name, "refused", str(exc), None, None, mti)
                self._event(name, status="refused", detail=scrub(str(exc)))
                self.steps.append(step)
                raise FlowRefused(str(exc)) from exc
            found = self.ctx.journal.get_txn(result.txn_id)
        status = "done" if found.state in _STEP_DONE else ("pending" if found.state in IN_DOUBT else "failed")
        detail = (f"{kind} {found.id}: {found.state}, RC {found.response_code}, RRN {found.rrn}, "
                  f"auth {found.auth_code}, amount {found.amount_minor}")
        step = Step(name, status, detail, found.id, found.response_code, mti)
        if status != "pending":
            self._event(name, status=status, detail=detail, txn_id=found.id, rc=found.response_code)
        self.ctx.kill(f"flow.after:{name}")
        self.steps.append(step)
        return step


def _txn_number(txn_id: str) -> int:
    try:
        return int(txn_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


class Flow:
    """Base of the correction flows. Subclasses implement :meth:`procedure` top to bottom."""

    kind: ClassVar[str] = ""
    #: default cause when the request names none
    default_cause: ClassVar[str] = "unknown"

    def run(self, ctx: FlowContext, request: FlowRequest, *, dry_run: bool = False) -> FlowOutcome:
        """Run (or resume, when ``request.incident_id`` is set) the flow. ``dry_run`` sends and writes nothing."""
        if request.kind != self.kind:
            raise ValueError(f"{type(self).__name__} handles {self.kind!r}, not {request.kind!r}")
        incident_id = request.incident_id
        if incident_id is None and not dry_run:
            incident_id = self._open_incident(ctx, request)
        runner = StepRunner(ctx, incident_id, dry_run)
        with ctx.engine.recording() as sent:
            try:
                outcome, reason = self.procedure(ctx, request, runner)
            except FlowRefused as exc:
                outcome, reason = Outcome.REFUSED, str(exc)
            except JournalError as exc:
                outcome, reason = Outcome.REFUSED, f"original not found: {exc}"
                runner.note("check_original", reason, status="refused")
        result = FlowOutcome(incident_id, self.kind, runner.steps,
                             runner.planned if dry_run else [evidence_image(m) for m in sent], outcome, None, reason)
        if not dry_run and incident_id is not None:
            result.notice = notice_for(ctx, result, request)
            self._close(ctx, runner, result, by=request.operator)
        return result

    def resume(self, ctx: FlowContext, incident_id: int, request: FlowRequest | None = None) -> FlowOutcome:
        """Continue an interrupted incident. Cards are not journaled in clear: pass them again in ``request``."""
        row = ctx.journal.incident(incident_id)
        if row is None:
            raise FlowRefused(f"no incident {incident_id} in {ctx.journal.path}; list them with `posguard incidents`")
        stored = json.loads(row["detail"])["request"]
        base = request or FlowRequest(self.kind)
        merged = replace(base, kind=self.kind, incident_id=incident_id,
                         txn_ids=base.txn_ids or tuple(stored["txn_ids"]),
                         intended_amount=base.intended_amount if base.intended_amount is not None
                         else stored.get("intended_amount"),
                         customer_present=base.customer_present if base.customer_present is not None
                         else stored.get("customer_present"),
                         operator_confirmed=base.operator_confirmed or bool(stored.get("operator_confirmed")),
                         reason=base.reason or stored.get("reason"), claim=base.claim or stored.get("claim"),
                         signature_source=base.signature_source or stored.get("signature_source"),
                         operator=base.operator or stored.get("operator"), cause=base.cause or stored.get("cause"),
                         follow_up=base.follow_up or stored.get("follow_up"),
                         batch_no=base.batch_no if base.batch_no is not None else stored.get("batch_no"))
        return self.run(ctx, merged)

    # -- the procedure ---------------------------------------------------------------------------
    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        """The flow's steps; returns ``(outcome, reason)``. Raise :class:`FlowRefused` to refuse."""
        raise NotImplementedError

    # -- helpers for subclasses ------------------------------------------------------------------
    @staticmethod
    def original(ctx: FlowContext, request: FlowRequest, index: int = 0) -> TxnRecord:
        if len(request.txn_ids) <= index:
            raise FlowRefused(f"{request.kind}: name the transaction (txn id {index + 1}) to correct")
        return ctx.journal.get_txn(request.txn_ids[index])

    @staticmethod
    def settled(ctx: FlowContext, txn: TxnRecord) -> bool:
        """After settlement only a refund is possible (the terminal's void list is cleared)."""
        return txn.state == "settled" or txn.settled_at is not None or txn.batch_no != ctx.journal.current_batch()

    @staticmethod
    def standing(txn: TxnRecord) -> int:
        """What of ``txn`` still stands at the host: the original less approved refunds (a void or a reversal
        leaves nothing). Every correction gives back, and charges again, this amount, never the original's."""
        return txn.amount_minor - txn.refunded_minor if txn.state in CHARGE_STANDS else 0

    @staticmethod
    def can_void(ctx: FlowContext, txn: TxnRecord) -> bool:
        """A void is for the full amount of an untouched charge of the open batch; once part of it was
        refunded (or the batch settled) only a refund gives the rest back."""
        return not Flow.settled(ctx, txn) and txn.refunded_minor == 0

    def give_back(self, ctx: FlowContext, steps: StepRunner, txn: TxnRecord, *, void_step: str, refund_step: str,
                  card: CardData | None = None, again: bool = False) -> tuple[Outcome, Step]:
        """Give back what stands of ``txn``: a full void while it can be voided, else a refund of what stands
        (pos-flows.md A: a void before settlement, a refund after). Returns the outcome it aims at (the dry-run
        word in a dry run) and the online step, whose status says whether it got there."""
        engine = ctx.engine
        if self.can_void(ctx, txn):
            step = steps.online(void_step, kind="void", mti=engine.profile.spec("void").mti,
                                would=f"void {txn.id}{' again' if again else ''} for {txn.amount_minor}",
                                action=lambda: engine.void(txn.id, card), match=lambda t: t.original_id == txn.id,
                                planned=lambda: self.planned_message(ctx, "void", txn, txn.amount_minor))
            outcome = Outcome.VOIDED
        else:
            left = self.standing(txn)
            step = steps.online(refund_step, kind="refund", mti=engine.profile.spec("refund").mti,
                                would=f"refund {left} of {txn.id}", action=lambda: engine.refund(txn.id, left),
                                match=lambda t: t.original_id == txn.id,
                                planned=lambda: self.planned_message(ctx, "refund", txn, left))
            outcome = Outcome.REFUNDED
        return (outcome.would if steps.dry_run else outcome), step

    @staticmethod
    def planned_message(ctx: FlowContext, kind: str, original: TxnRecord | None, amount: int,
                        card: CardData | None = None) -> str:
        """The wire image (card data removed) of the request the engine would send now."""
        return evidence_image(ctx.engine.preview(kind, amount, original=original, card=card))

    # -- incident bookkeeping ----------------------------------------------------------------------
    def _open_incident(self, ctx: FlowContext, request: FlowRequest) -> int:
        ctx.kill("flow.before:open_incident")
        cause = request.cause or self.default_cause
        with ctx.journal.atomic("flow_incident"):
            iid = ctx.journal.record_incident(
                f"flow:{self.kind}", f"{self.kind} correction opened for {', '.join(request.txn_ids) or '-'}",
                severity="warning", txn_id=request.txn_ids[0] if request.txn_ids else None,
                detail={"flow": self.kind, "cause": cause, "request": request.describe(), "status": "open"})
        ctx.kill("flow.after:open_incident")
        return iid

    def _close(self, ctx: FlowContext, runner: StepRunner, result: FlowOutcome, *, by: str | None = None) -> None:
        notice = result.notice.to_dict() if result.notice else None
        ctx.kill("flow.before:close_incident")
        with ctx.journal.atomic("flow_outcome"):
            ctx.journal.record_event("flow_outcome", txn_id=None, detail={
                "incident": result.incident_id, "outcome": result.outcome,
                "reason": scrub(result.reason), "messages": len(result.messages),
                "notice": notice, **({"by": by} if by else {})})
        ctx.kill("flow.after:close_incident")
        if notice is not None and ctx.policies.outbox and result.notice is not None:
            FileOutbox(ctx.policies.outbox).deliver(result.incident_id or 0, result.notice)
