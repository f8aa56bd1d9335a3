"""The till: operator actions in, transactions through the engine, incidents and their corrections out.

The same :class:`Till` runs a live day (``posguard demo``/``posguard run``, on the real host link) and a
replayed one (``posguard replay``, on a :class:`~posguard.capture.replay.ReplayLink` and a virtual clock),
so a replay finds the incidents the live run found by construction. Every operator action is one
:class:`Op`; every capture records it as an ``op`` record, which is what a replay feeds back in.

Every incident, detected or claimed by the customer, is corrected by its flow in :mod:`posguard.flows`; the
till only watches the engine (an exchange listener) and never stands in its host link's place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from posguard.capture.ops import OPERATOR_ACTIONS
from posguard.capture.sanitize import blank_names
from posguard.card import CardData
from posguard.card_entry import FallbackWindow
from posguard.engine.acquirer_report import ReportError, SettlementReport, load_report
from posguard.engine.chart import CHARGE_STANDS, CHART
from posguard.engine.detectors import Detection
from posguard.engine.engine import TransactionEngine, TxnResult
from posguard.engine.errors import CorrectionRefused, EngineError, IllegalTransition
from posguard.engine.journal import JournalError
from posguard.engine.observe import Exchange
from posguard.engine.ports import HostTimeout, InvalidResponse
from posguard.flows import FLOWS, FlowContext, FlowPolicies, FlowRequest, Outcome, run_flow
from posguard.flows.base import Flow
from posguard.flows.unsettled import reconcilable_batches, reconciliation_incident
from posguard.flows.unsigned_follow_up import (
    ContactError,
    SignatureFileError,
    incident_for_sale,
    overdue,
    parse_contact,
    read_signature_file,
    store_signature,
)
from posguard.incidents import IncidentReport, close_incident, get_incident, resolve_by_hand
from posguard.iso8583.message import Message
from posguard.iso8583.redaction import evidence_image
from posguard.logs import event
from posguard.notices import Notice, reversal_notice
from posguard.notices.outbox import FileOutbox
from posguard.presenting import (
    UNABLE_TO_GO_ONLINE,
    CardNotPresented,
    CardOutcome,
    CardPresenter,
    CardRequest,
    HostAnswer,
    Presentation,
    StoredCard,
)
from posguard.sensitive import mask_digits_in_text

if TYPE_CHECKING:
    from posguard.capture.format import CaptureWriter

__all__ = ["Op", "Till", "OPS"]

_log = logging.getLogger("posguard.till")
#: transaction states whose event is a warning (the host was not reached, or the outcome is in doubt) or an
#: error (a person must follow it up)
_WARN_STATES = frozenset({"not_sent", "timed_out", "response_invalid", "reversal_pending", "reversed", "sent",
                          "request_journaled"})
_ERROR_STATES = frozenset({"reversal_failed", "unresolved"})
#: what the idle tick tells the operator (and records) for each time-driven detection
_TICK_MESSAGES: dict[str, str] = {
    "reversal_or_advice_pending": "a reversal/advice has waited too long for the host's acknowledgement; it is "
                                  "retried: check the link and call the acquirer if it stays",
    "reversal_or_advice_expired": "a reversal/advice expired unacknowledged: call the acquirer with its STAN and "
                                  "amount",
    "batch_not_closed": "the batch has been open too long: run settlement; funds do not move until it is closed",
}

#: host answers the till keeps for the card's second GENERATE AC (the card asks right after its exchange, or after
#: the few messages of a correction flow)
_ANSWERS_KEPT = 16

#: operator actions the till understands (the ``op`` of an ``op`` record) and their arguments
OPS: dict[str, str] = {name: action.does for name, action in OPERATOR_ACTIONS.items()}
#: operator arguments a capture records as null: the customer's contact, the path of an e-signature file
_NOT_CAPTURED = frozenset({"contact", "esig"})


def _checked_contact(contact: str | None) -> None:
    """The customer's contact as the operator gave it, checked before any incident moves (the service's command
    parser checks it too; a capture's ``op`` record reaches the till directly): a mistyped one is refused, to be
    given again, instead of ending the unsigned incident as refused."""
    if contact is None:
        return
    try:
        parse_contact(contact)
    except ContactError as exc:
        raise CorrectionRefused(str(exc)) from None


def recalled(card: CardData) -> CardData:
    """A charged card as the till keeps it for a later void, refund or correction: number, token, expiry and
    scheme, sent as keyed from the terminal's own records (field 22 = 01x), because the card is not read again.

    Nothing that only a presentation may carry is kept: no cryptogram (an AC is single-use), no 5F34 (field 23
    says a chip read), no track data and no PIN block (not retained after the authorisation). Field 22 says how
    the card came in for *this* request: the acquirer's audit found the voids of the wrong-card, wrong-amount and
    dispute flows claiming a chip read (22 = 05x, 23 = 001) of a card nobody presented, where the operator's own
    void of the same sale said 01x (openpos ``trans.c`` writes 22 from the transaction's own input mode, ``01``
    when no card was read)."""
    return replace(card, field55=b"", second_gac=False, entry_mode="manual", pan_sequence=None, track2=None,
                   track3=None, pin_block=None)


@dataclass(frozen=True)
class Op:
    op: str
    args: dict[str, Any] = field(default_factory=dict)


class Till:
    """Runs :class:`Op` s.

    Every charge asks for the card (:meth:`present`): ``presenter`` (:mod:`posguard.presenting`; the reader in
    the service and the demo, the capture in a replay) reads the card a reference names at the charge's amount,
    and the same presentation gets the host's answer (second GENERATE AC) afterwards. Without a presenter, or
    for a reference it does not know, ``cards`` maps a reference (``s1``) to a stored :class:`CardData` (a swipe,
    a test card): a stored chip read can be sent once only (the engine refuses a cryptogram sent before).
    """

    def __init__(self, engine: TransactionEngine, *, dialect: str, say: Callable[[str], None] | None = None,
                 writer: CaptureWriter | None = None, dry_run_flows: bool = False,
                 policies: FlowPolicies | None = None) -> None:
        self.engine = engine
        self.policies = policies or FlowPolicies()
        #: notices the till produced itself (automatic reversals), in order; flows' notices are on their incidents
        self.notices: list[Notice] = []
        #: the supervisor who approved the action in progress (set by the service for money going back)
        self.supervisor: str | None = None
        self.dialect = dialect
        self.say = say or (lambda _line: None)
        self.writer = writer
        self.dry_run_flows = dry_run_flows
        self.cards: dict[str, CardData] = {}
        #: reads the card presented for each charge (None: the stored ``cards`` only)
        self.presenter: CardPresenter | None = None
        self.txn_cards: dict[str, str] = {}  # transaction id -> card reference it was charged to
        self._txn_card: dict[str, CardData] = {}  # transaction id -> the card it was charged to (no chip data)
        self._presentations = 0
        #: sales the host approved and the card then declined (AAC): reversed by the engine
        self.card_declined: list[str] = []
        self._answers: dict[tuple[str, int | None], Message] = {}  # (request MTI, STAN) -> the host's answer
        #: why the last operator action was refused (None: it was not)
        self.refusal: str | None = None
        self.incidents: list[IncidentReport] = []
        self.results: list[TxnResult] = []
        #: every request the engine sent during this till's life, in order
        self.sent: list[Message] = []
        engine.add_exchange_listener(self._on_exchange)
        if writer is not None:
            engine.add_exchange_listener(writer.on_exchange)
        self._seen: set[tuple[str, tuple[str, ...]]] = set()
        self._ticked: set[str] = set()  # time-driven incidents already raised (also looked up in the journal)
        #: sales whose reversal was queued unacknowledged -> the incident rule to record once it is acknowledged
        self._reversals_owed: dict[str, str] = {}
        self._evidence = {}
        #: a failed chip read lets the next swipe of a chip card through as a fallback (posguard.card_entry)
        self.fallback = FallbackWindow(engine.clock)

    @classmethod
    def for_replay(cls, engine: TransactionEngine, dialect: str, say: Callable[[str], None]) -> Till:
        """The desk a replay feeds (:data:`posguard.capture.replay.DeskFactory`)."""
        return cls(engine, dialect=dialect, say=say)

    def _on_exchange(self, exchange: Exchange) -> None:
        if exchange.event == "sent":
            self.sent.append(exchange.request)
        elif exchange.event == "received" and exchange.response is not None:
            self._answers[(exchange.request.mti, exchange.request.stan)] = exchange.response
            while len(self._answers) > _ANSWERS_KEPT:  # only the latest answers can still be owed to a card
                del self._answers[next(iter(self._answers))]
        elif exchange.event == "failed" and exchange.error is not None:
            err = exchange.error
            what = ("timeout" if isinstance(err, HostTimeout) else
                    "invalid_response" if isinstance(err, InvalidResponse) else "error")
            req = exchange.request
            self._tell(f"link.{what}", f"{req.mti} stan {req.stan}: {type(err).__name__}: {err}",
                       logging.WARNING, mti=req.mti, stan=req.stan, error=type(err).__name__)

    def _tell(self, name: str, msg: str, level: int = logging.INFO, **fields: Any) -> None:
        """One thing the till did or saw: a line for whoever watches (``say``) and a named log event."""
        self.say(msg)
        event(_log, name, msg, level=level, **fields)

    def close(self) -> None:
        """Stop watching the engine."""
        self.engine.remove_exchange_listener(self._on_exchange)
        if self.writer is not None:
            self.engine.remove_exchange_listener(self.writer.on_exchange)

    # -- cards ---------------------------------------------------------------------------------------
    def add_card(self, ref: str, card: CardData, **evidence: Any) -> None:
        """Keep a card with no chip session to complete (a swipe, a test card) under ``ref``; its ``card``
        record is written each time it is presented (:meth:`present`)."""
        self.cards[ref] = card
        self._evidence[ref] = evidence

    _evidence: dict[str, dict[str, Any]]

    def present(self, ref: str, amount: int, kind: str = "sale") -> Presentation:
        """Ask for the card ``ref`` names, for a ``kind`` of ``amount``: the presenter reads it now (a new card
        session); a stored card is handed over as it is. Writes the capture's ``card`` record (one per
        presentation). Raises :class:`~posguard.presenting.CardNotPresented`."""
        shown: Presentation | None = None
        if self.presenter is not None and ref not in self.cards:
            shown = self.presenter.present(CardRequest(ref, int(amount), kind))
        elif ref in self.cards:
            shown = StoredCard(self.cards[ref], dict(self._evidence.get(ref, {})))
        if shown is None:  # no presenter: the till knows only its stored cards; naming another is an error
            raise KeyError(f"no card {ref!r}: the till holds {', '.join(self.cards) or 'no card'}")
        self._presentations += 1
        if shown.card.entry_mode in ("chip", "contactless"):
            self.fallback.chip_read()  # the chip worked: no fallback for this card
        if self.writer is not None:
            card = shown.card
            test_pan = self.writer.learn_pan(card.pan.reveal())
            self.writer.record("card", ref=ref, pan=test_pan, expiry=card.expiry, entry_mode=card.entry_mode,
                               scheme=card.scheme, cvm_results=card.cvm_results.hex().upper()
                               if card.cvm_results else None, field55=blank_names(card.field55).hex().upper(),
                               **({"cvm_required": True} if card.cvm_required else {}),
                               **({"second_gac": True} if card.second_gac else {}),
                               presentation=self._presentations, **shown.evidence)
        shown.evidence["presentation"] = self._presentations
        return shown

    def _charged(self, txn_id: str, ref: str, card: CardData) -> None:
        self.txn_cards[txn_id] = ref
        self._txn_card[txn_id] = recalled(card)

    def _finish_card(self, shown: Presentation, result: TxnResult | None) -> CardOutcome | None:
        """The host answered ``result`` (None: nothing was sent): give the card the answer (second GENERATE AC).
        Host approved + card AAC -> the engine reverses the sale and an incident says the card declined."""
        try:
            if result is None or not shown.card.second_gac:
                return None
            txn = self.engine.journal.get_txn(result.txn_id)
            answer = self._answers.get((self.engine.profile.spec(txn.kind).mti, txn.stan))
            rc = result.response_code if result.state not in ("timed_out", "reversal_pending", "reversed",
                                                                "response_invalid", "not_sent") else None
            icc = _icc_bytes(answer.get("55")) if answer is not None and rc is not None else b""
            try:
                outcome = shown.complete(HostAnswer(rc or UNABLE_TO_GO_ONLINE, icc))
            except Exception as exc:  # noqa: BLE001 - the card was pulled or failed: it never said yes
                self._tell("card.failed", f"the card did not complete {result.txn_id} "
                           f"({type(exc).__name__}: {mask_digits_in_text(str(exc))})", logging.WARNING,
                           txn=result.txn_id)
                if self.engine.awaiting_card(result.txn_id):  # approved without the card's TC: reverse it
                    self._card_declined(result.txn_id)
                return None
            if outcome is None:
                return None
            self._record_outcome(shown, outcome)
            self._tell("card.completed", f"card for {result.txn_id}: {outcome.cryptogram_type} atc={outcome.atc}"
                       + "".join(f"; {n}" for n in outcome.notes), txn=result.txn_id,
                       cryptogram=outcome.cryptogram_type, atc=outcome.atc)
            if outcome.declined_by_card and self.engine.awaiting_card(result.txn_id):
                self._card_declined(result.txn_id, outcome)
            elif rc is not None:
                self.engine.card_completed(result.txn_id, cryptogram_type=outcome.cryptogram_type, atc=outcome.atc,
                                           field55=outcome.field55, script_results=outcome.script_results)
            return outcome
        finally:
            shown.close()

    def _record_outcome(self, shown: Presentation, outcome: CardOutcome) -> None:
        if self.writer is not None:
            self.writer.record("card_outcome", presentation=shown.evidence.get("presentation"),
                               cryptogram=outcome.cryptogram_type, atc=outcome.atc,
                               script_results=outcome.script_results.hex().upper(),
                               field55=blank_names(outcome.field55).hex().upper())

    def _card_declined(self, txn_id: str, outcome: CardOutcome | None = None) -> None:
        res = (self.engine.card_declined(txn_id) if outcome is None else  # the reversal's 55: the card's answer
               self.engine.card_declined(txn_id, final_icc=outcome.field55, script_results=outcome.script_results))
        self.card_declined.append(txn_id)
        self._note(res, "card declined after approval", "sale")
        if res.state == "reversal_pending":  # the 0400 is not acknowledged yet: recorded when it is
            self._reversal_queued(txn_id, "card_declined_after_approval")
            return
        self._record_auto("reversal", "card_declined_after_approval", [txn_id],
                          "the host approved but the card declined (AAC at the second GENERATE AC): the engine "
                          "reversed the sale")
        self._notify_reversal(txn_id)

    def _complete_flow_card(self, shown: Presentation, ref: str) -> None:
        """A flow charged the presented card (or did not): find its sale by the cryptogram and complete it."""
        from posguard.engine.cryptograms import chip_facts

        facts = chip_facts(shown.card.field55)
        txn_id = self.engine.cryptograms.used_by(shown.card, facts) if facts.cryptogram is not None else None
        if txn_id is None:
            shown.close()
            return
        self._charged(txn_id, ref, shown.card)
        self._finish_card(shown, self._as_journaled(txn_id, ""))

    def _as_journaled(self, txn_id: str, message: str) -> TxnResult:
        """``txn_id`` as the journal holds it now (after the card's answer changed it)."""
        txn = self.engine.journal.get_txn(txn_id)
        return TxnResult(txn.id, txn.kind, txn.state, txn.response_code, txn.stan, txn.rrn, txn.auth_code, message)

    def chip_failed(self, exc: BaseException) -> None:
        """A chip read ended in ``exc``: a technical failure (not a card decline) opens the fallback window."""
        from posguard.emv.errors import CardDeclined

        if isinstance(exc, CardDeclined):
            return
        self.fallback.chip_failed(type(exc).__name__)
        self._tell("card.chip_failed", f"chip read failed ({type(exc).__name__}): the card's stripe may be swiped "
                   "now (fallback)", logging.WARNING, error=type(exc).__name__)

    def swiped(self, data: Any) -> CardData:
        """The card of a swipe (:class:`~posguard.drivers.magstripe.SwipeData`) as the card-entry policy allows it:
        a stripe-only card, or a chip card's stripe right after its chip read failed (fallback); else
        :class:`~posguard.card_entry.InsertChipCard` ("insert the card")."""
        from posguard.drivers.magstripe import swiped_card
        from posguard.sensitive import pan_token

        key = self.engine.terminal.token_key
        mode = self.fallback.entry_mode(data.service_code, pan_token(data.pan.reveal(), key))
        return swiped_card(data, key, fallback=mode == "fallback")

    # -- operator actions ----------------------------------------------------------------------------
    def do(self, op: str, **args: Any) -> Any:
        if op not in OPS:
            raise ValueError(f"unknown operator action {op!r}; known: {', '.join(OPS)}")
        self.refusal = None
        if self.writer is not None:  # a capture keeps no customer contact and no local file path
            self.writer.record("op", op=op, **{k: (None if k in _NOT_CAPTURED else v) for k, v in
                                               self._captured_args(op, args).items()})
        handler: Callable[..., Any] = getattr(self, f"_op_{op}")
        try:
            result = handler(**args)
        except (EngineError, IllegalTransition, CardNotPresented) as exc:  # a refusal: nothing was sent
            self.refusal = mask_digits_in_text(str(exc))
            self._tell(f"{op}.refused", f"refused: {self.refusal}", **{k: v for k, v in args.items()
                                                                      if k in ("txn", "amount")})
            result = None
        self._reversals_acknowledged()  # any action may have sent a queued reversal first (a flush, a sale)
        return result

    def _captured_args(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """A ``reconcile`` op record carries the acquirer's report inline (sanitised), not the path of a file the
        replay may not have (docs/capture-format.md); an unreadable report is recorded as the path it was."""
        if op != "reconcile" or self.writer is None or "report" not in args:
            return args
        from posguard.capture.inline_report import inline_report

        report = args["report"]
        try:
            loaded = report if isinstance(report, SettlementReport) else load_report(report)
        except ReportError:
            return args
        return {**args, "report": inline_report(loaded, self.writer.sanitiser)}

    def _note(self, result: TxnResult, what: str, action: str, *, detections: bool = True) -> TxnResult:
        self.results.append(result)
        rc = f" rc {result.response_code}" if result.response_code else ""
        level = (logging.ERROR if result.state in _ERROR_STATES else
                 logging.WARNING if result.state in _WARN_STATES else logging.INFO)
        self._tell(f"{action}.{result.state}",
                   f"{what}: {result.txn_id} {result.state}{rc} stan {result.stan} rrn {result.rrn or '-'}", level,
                   txn=result.txn_id, stan=result.stan, rc=result.response_code, rrn=result.rrn,
                   auth=result.auth_code)
        if result.state == "declined" and result.response_code == self.engine.profile.sign_on_rc:
            # RC 77: the engine signed on again; the card must be presented again (engine/signon.signed_on_again)
            self._tell(f"{action}.sign_on_again", result.operator_message, logging.WARNING, txn=result.txn_id)
        if detections:
            self._handle(result.detections)
        return result

    def paid_order(self, order: str) -> str | None:
        """Why a new sale for ``order`` is refused (it is already paid), or None. The service asks before the card
        is read, so a second charge for a paid order never reaches the wire unless the operator overrides."""
        paid = self.engine.journal.sales_for_order(order, CHARGE_STANDS)
        if not paid:
            return None
        return (f"order {order} is already paid by {paid[0].id} ({paid[0].amount_minor / 100:.2f} on "
                f"{paid[0].pan_masked}); nothing was sent. Charge it again only with override=yes")

    def _op_sale(self, card: str, amount: int, order: str | None = None, override: bool = False) -> TxnResult:
        # override: the operator charged a paid order on purpose (recorded in the capture's op record and the
        # journal, so the duplicate detector records it instead of correcting it)
        if override:
            self._record_override(order, amount)
        # the card is presented for this sale: read at its amount, its own cryptogram (never a stored read's)
        shown = self.present(card, int(amount))
        result: TxnResult | None = None
        try:
            result = self.engine.sale(shown.card, int(amount), order_ref=order)
            self._charged(result.txn_id, card, shown.card)
            self._note(result, f"sale {amount / 100:.2f} on {shown.card.pan_masked}", "sale", detections=False)
        finally:
            self._finish_card(shown, result)  # the card's final word comes first (EMV), then any correction
        if result.txn_id in self.card_declined:  # the card said no after the host said yes: reversed
            return self._as_journaled(result.txn_id, "card declined after approval: reversed")
        self._handle(result.detections)
        if result.state == "reversed":
            self._record_auto("reversal", "outcome_unknown", [result.txn_id],
                              "no valid answer in time: the engine reversed the sale (0400 acknowledged)")
            self._notify_reversal(result.txn_id)
        elif result.state == "reversal_pending":  # the 0400 is not acknowledged yet: queued, sent again
            self._reversal_queued(result.txn_id, "outcome_unknown")
        return result

    def _reversal_queued(self, txn_id: str, rule: str) -> None:
        """The engine reversed ``txn_id`` but the host has not acknowledged the 0400 yet (it is queued and sent
        again): the customer, still at the counter, is told the charge is being cancelled; the incident is
        recorded when the reversal is acknowledged (:meth:`_reversals_acknowledged`)."""
        self._reversals_owed[txn_id] = rule
        self._tell("reversal.queued", f"the reversal of {txn_id} is queued unacknowledged and sent again until the "
                   "host acknowledges it; the customer is told the charge is being cancelled", logging.WARNING,
                   txn=txn_id)
        self._notify_reversal(txn_id, pending=True)

    def _notify_reversal(self, txn_id: str, *, pending: bool = False) -> None:
        """Tell the customer an automatic reversal cancelled the charge (any hold is released by their bank), or
        is cancelling it (``pending``: the host has not acknowledged the reversal yet)."""
        p = self.policies
        notice = reversal_notice(self.engine.journal.get_txn(txn_id), languages=p.languages,
                                 columns=p.printer_columns, timezone_name=p.timezone, pending=pending)
        self.notices.append(notice)
        if p.outbox:
            where = FileOutbox(p.outbox).deliver_for_txn(txn_id, notice)
            self._tell("notice.delivered", f"reversal notice for {txn_id} in the outbox: {where}", txn=txn_id)

    def track_queued_reversals(self) -> list[str]:
        """After a restart: the journal's sales whose reversal is queued unacknowledged (from before the stop, or
        armed by the start-up recovery) are watched as :meth:`_reversal_queued` watches them, so that the reversal
        incident is recorded when the host acknowledges it. Returns their ids."""
        found = [t.id for t in self.engine.journal.txns_in_states(["reversal_pending"]) if t.id not in
                 self._reversals_owed]
        for txn_id in found:
            self._reversals_owed[txn_id] = "outcome_unknown"
        return found

    def reversed_at_start(self, txn_ids: list[str]) -> list[str]:
        """After a restart: the transactions the start-up recovery reversed (in flight when the service stopped,
        or approved without the card's final answer). A sale's customer may hold a charge on the card, so each
        gets the reversal notice as a sale reversed at the counter does: "reversed" when the host acknowledged
        the 0400 during the recovery, "being reversed" when it is queued (the final notice follows when the host
        acknowledges it, :meth:`track_queued_reversals`). A void or refund reversed leaves the charge standing:
        the operator is told to do it again. Returns the transactions told about."""
        told = []
        for txn_id in txn_ids:
            txn = self.engine.journal.get_txn(txn_id)
            if txn.state not in ("reversed", "reversal_pending"):
                continue
            pending = txn.state == "reversal_pending"
            done = "queued its reversal" if pending else "reversed it (0400 acknowledged)"
            if txn.kind == "sale":
                self._tell("sale.reversed_at_start", f"{txn_id} was in progress when the service stopped; the "
                           f"start-up recovery {done}", logging.WARNING, txn=txn_id, stan=txn.stan)
                self._notify_reversal(txn_id, pending=pending)
            else:
                self._tell(f"{txn.kind}.reversed_at_start", f"the {txn.kind} {txn_id} of {txn.original_id} was in "
                           f"progress when the service stopped; the start-up recovery {done}: it did not happen and "
                           f"{txn.original_id} stands as it was; do the {txn.kind} again", logging.WARNING,
                           txn=txn_id, original=txn.original_id, stan=txn.stan)
            told.append(txn_id)
        return told

    def _reversals_acknowledged(self) -> None:
        """Sales whose queued reversal the host has acknowledged since (a flush, the drain before the next
        request or the settlement): the reversal incident and the customer's final notice, as for a reversal
        acknowledged at once. One that expired unacknowledged is the idle tick's incident instead."""
        for txn_id, rule in list(self._reversals_owed.items()):
            txn = self.engine.journal.get_txn(txn_id)
            if txn.state == "reversal_pending":
                continue
            del self._reversals_owed[txn_id]
            if txn.state != "reversed":
                continue
            # every attempt is in the journal, those sent before a restart included; this process holds the
            # wire images of its own only
            journaled = self._journaled_reversals([txn_id])
            images = [m for m in self.sent if m.is_reversal and (m.mti, m.stan) in journaled]
            earlier = len(journaled) - len(images)
            before = f" ({earlier} before this start, recorded in the journal)" if earlier > 0 else ""
            self._record_auto("reversal", rule, [txn_id], f"the queued reversal was acknowledged after "
                              f"{len(journaled)} attempt(s){before}: the engine reversed the sale", images,
                              mtis=[mti for mti, _ in journaled])
            self._notify_reversal(txn_id)

    def _record_override(self, order: str | None, amount: int) -> None:
        """Journal the operator's override before the sale: the duplicate detector reads it (the next
        transaction id) and records the pair as overridden, with who approved, instead of correcting it."""
        journal = self.engine.journal
        nxt = f"{self.engine.terminal.terminal_id}-{journal.peek_counter('txn') + 1:08d}"
        by = f"supervisor {self.supervisor}" if self.supervisor else "operator"
        with journal.atomic("operator_override"):
            journal.record_event("operator_override", txn_id=None, detail={
                "txn": nxt, "order_ref": order, "amount_minor": int(amount), "by": by})
        self._tell("sale.override", f"order {order or '-'} charged again on purpose (approved by {by})",
                   logging.WARNING, order=order, by=by)

    # -- unsigned sales (guide 004): one incident per sale, moved by each of these --------------------
    def _op_sign(self, txn: str, esig: str | None = None, paper: bool = False) -> TxnResult | None:
        image = None
        if esig is not None:
            try:
                image = read_signature_file(esig)
            except SignatureFileError as exc:
                raise CorrectionRefused(str(exc)) from None
        if incident_for_sale(self.engine.journal, txn) is None:  # signed in time: evidence, no incident
            sale = self.engine.journal.get_txn(txn)
            if image is not None and CHART.allows(sale.kind, sale.state, "sign"):  # else sign() says why not
                self._keep_e_signature(txn, image)
            return self._note(self.engine.sign(txn), "signature captured", "sign")
        # a sale whose signature was missed (deadline, or the customer had left): its incident moves
        self._correct("unsigned", "signature_captured", (txn,), customer_present=True, signature=image,
                      signature_source="pad" if image is not None else "paper",
                      operator=self._who() if paper or image is None else None)
        return None

    def _keep_e_signature(self, txn: str, image: bytes) -> None:
        """The pad's e-signature of a sale signed in time: stored (when a signature directory is configured) and
        its SHA-256 journaled on the sale; not an incident."""
        folder = self.policies.signature_dir
        try:
            where, digest = store_signature(folder, txn, image) if folder else (None, sha256(image).hexdigest())
        except SignatureFileError as exc:
            raise CorrectionRefused(str(exc)) from None
        with self.engine.journal.atomic("e_signature"):
            self.engine.journal.record_event("e_signature", txn_id=txn, detail={"sha256": digest, "path": where})

    def _who(self) -> str:
        return f"supervisor {self.supervisor}" if self.supervisor else "operator"

    def _op_signature_refused(self, txn: str, contact: str | None = None) -> None:
        _checked_contact(contact)
        self._tell("signature.refused", f"customer left without signing {txn}", txn=txn)
        self._correct("unsigned", "signature_refused", (txn,), customer_present=False, contact=contact)

    def _op_unsigned_contacted(self, txn: str, contact: str | None = None) -> None:
        _checked_contact(contact)
        self._correct("unsigned", "follow_up", (txn,), customer_present=False, follow_up="contacted",
                      contact=contact, operator=self._who())

    def _op_unsigned_keep(self, txn: str) -> None:
        self._correct("unsigned", "follow_up", (txn,), customer_present=False, follow_up="kept_at_risk",
                      operator=self._who())

    def _op_unsigned_void(self, txn: str) -> None:
        self._approved_by("void_unsigned", txn)
        self._correct("unsigned", "follow_up", (txn,), customer_present=False, follow_up="voided_with_consent")

    def _op_unsigned_escalate(self, txn: str) -> None:
        self._correct("unsigned", "system_fault", (txn,), follow_up="escalate", cause="device_fault",
                      claim="the signature pad failed", operator=self._who())

    def _approved_by(self, action: str, txn: str) -> None:
        """Journal who approved money going back (the supervisor's id, never the credential)."""
        if self.supervisor is not None:
            with self.engine.journal.atomic("supervisor_approval"):
                self.engine.journal.record_event("supervisor_approval", txn_id=txn,
                                                 detail={"action": action, "supervisor": self.supervisor})

    def _op_void(self, txn: str) -> TxnResult:
        self._approved_by("void", txn)
        result = self._note(self.engine.void(txn), f"void of {txn}", "void")
        self._resolved_by_hand(txn)
        if result.state in ("reversed", "reversal_pending", "timed_out"):
            self._tell("void.unanswered", f"the void of {txn} got no answer: the engine reverses the void, the "
                       "charge stands", logging.WARNING, txn=txn)
        return result

    def _op_refund(self, txn: str, amount: int) -> TxnResult:
        self._approved_by("refund", txn)
        result = self._note(self.engine.refund(txn, int(amount)), f"refund {amount / 100:.2f} of {txn}", "refund")
        self._resolved_by_hand(txn)
        return result

    def _resolved_by_hand(self, txn: str) -> None:
        for iid in resolve_by_hand(self.engine.journal, txn, by=self.supervisor):
            self.say(f"incident {iid} closed: {txn} was corrected by hand")

    def _awaiting(self, incident: int) -> tuple[str, Any]:
        try:
            inc = get_incident(self.engine.journal, int(incident))
        except JournalError as exc:
            raise CorrectionRefused(str(exc)) from None
        if inc.source != "flow" or inc.outcome != Outcome.AWAITING_CONFIRMATION:
            raise CorrectionRefused(f"incident {incident} is {inc.outcome or inc.status}, not awaiting "
                                    "confirmation; see `posguard incidents show`")
        return inc.kind, inc

    def _op_confirm(self, incident: int) -> IncidentReport:
        kind, inc = self._awaiting(incident)
        self.say(f"operator confirms incident {incident} ({kind})")
        ctx = FlowContext(self.engine, self.engine.journal, self.dialect, self.policies, clock=self.engine.clock)
        with self.engine.recording() as sent:
            outcome = FLOWS[kind]().resume(ctx, int(incident), FlowRequest(
                kind, operator_confirmed=True, operator=f"supervisor {self.supervisor}" if self.supervisor else None))
        report = IncidentReport(kind, "operator_confirmed", list(inc.txn_ids), kind,
                                [evidence_image(m) for m in sent], outcome.outcome, outcome.reason,
                                [m.mti for m in sent], incident_id=int(incident))
        self.incidents.append(report)
        self.say(report.line())
        return report

    def _op_decline(self, incident: int) -> None:
        kind, _inc = self._awaiting(incident)
        close_incident(self.engine.journal, int(incident), Outcome.DECLINED_BY_OPERATOR,
                       "the operator found nothing to correct; nothing was sent", by=self.supervisor)
        self.say(f"incident {incident} ({kind}) declined by the operator: closed, nothing sent")

    def _op_wrong_card(self, txn: str, card: str) -> None:
        # the right card is presented for the new sale: read at the amount that still stands on the wrong one
        original = self.engine.journal.get_txn(txn)
        shown = self.present(card, Flow.standing(original))
        self._tell("claim.wrong_card", f"customer: {txn} went on the wrong card, meant {shown.card.pan_masked}",
                   txn=txn)
        try:
            self._correct("wrong_card", "customer_claim", (txn,), right_card=shown.card,
                          original_card=self._card_of(txn), operator_confirmed=True)
        finally:
            self._complete_flow_card(shown, card)

    def _op_wrong_amount(self, txn: str, amount: int) -> None:
        self._tell("claim.wrong_amount", f"customer: {txn} should have been {int(amount) / 100:.2f}", txn=txn,
                   amount=int(amount))
        original_card = self._card_of(txn)
        charge = self._wrong_amount_charge(txn, int(amount))
        ref = self.txn_cards.get(txn, "")
        shown = self.present(ref, charge) if charge else None
        try:
            self._correct("wrong_amount", "customer_claim", (txn,), intended_amount=int(amount),
                          right_card=shown.card if shown is not None else original_card,
                          original_card=original_card, operator_confirmed=True)
        finally:
            if shown is not None:
                self._complete_flow_card(shown, ref)

    def _wrong_amount_charge(self, txn: str, intended: int) -> int:
        """What the wrong-amount flow will charge on the card presented again (0: nothing, it refunds): the
        difference of an undercharge, the intended total after voiding an overcharge (flows/wrong_amount.py)."""
        original = self.engine.journal.get_txn(txn)
        standing = Flow.standing(original)
        if standing == intended or original.state not in CHARGE_STANDS:
            return 0
        if standing < intended:
            return intended - standing
        ctx = FlowContext(self.engine, self.engine.journal, self.dialect, self.policies, clock=self.engine.clock)
        return intended if Flow.can_void(ctx, original) else 0

    def _op_dispute(self, txn: str) -> None:
        self._tell("claim.dispute", f"customer: the void of {txn} never arrived", txn=txn)
        verdict = self.engine.detectors.void_mismatch.customer_claim(txn, self.engine.journal)
        self._tell("claim.verdict", f"journal says: {verdict.explanation}", txn=txn, refunded=verdict.refunded)
        found = self.engine.detectors.void_mismatch.check_chain(txn, self.engine.journal)
        rule = found[0].rule if found else ("proof" if verdict.refunded else "no_void")
        ids = found[0].txn_ids if found else (txn,)
        self._correct("void_mismatch", rule, tuple(ids), claim="money did not come back",
                      original_card=self._card_of(txn), operator_confirmed=True)

    def _card_of(self, txn: str) -> CardData | None:
        """The card ``txn`` was charged to, as the till remembers it (:func:`recalled`): not read again."""
        if txn in self._txn_card:
            return self._txn_card[txn]
        ref = self.txn_cards.get(txn)
        card = self.cards.get(ref) if ref is not None else None
        return recalled(card) if card is not None else None

    def _op_flush(self) -> None:
        left = self.engine.flush(wait=True)
        self._tell("saf.flushed", f"queue sent; {len(left)} still pending",
                   logging.WARNING if left else logging.INFO, pending=len(left))

    def _op_settle(self) -> None:
        result = self.engine.settle()
        t = result.totals
        self._tell("settle.balanced" if result.balanced else "settle.unbalanced",
                   f"settlement batch {result.batch_no}: {t['debit_count']} sale(s) {t['debit_minor'] / 100:.2f}, "
                 f"{t['credit_count']} refund(s) {t['credit_minor'] / 100:.2f}, "
                 f"{'balanced' if result.balanced else 'UNBALANCED rc ' + str(result.response_code)}"
                 f"{' (' + ', '.join(result.unbalanced_sides) + ' cards)' if result.unbalanced_sides else ''}; "
                 f"{result.uploaded} detail(s) uploaded", logging.INFO if result.balanced else logging.WARNING,
                   batch=result.batch_no, rc=result.response_code, uploaded=result.uploaded)
        self._handle(tuple(d for d in result.detections if d.rule != "totals_unbalanced"))
        if not result.balanced:  # details uploaded, nothing more is sent: the reconciliation incident, once
            self.reconcile(result.batch_no)

    # -- reconciliation (pos-flows.md §A "Not arrived"), at settlement and on report import ------------------
    def _op_reconcile(self, report: str | SettlementReport, batch: int | None = None) -> list[IncidentReport]:
        try:  # a path (the operator's verb), or the report itself (a capture's op record carries it inline)
            loaded = report if isinstance(report, SettlementReport) else load_report(report)
        except ReportError as exc:
            raise CorrectionRefused(f"settlement report: {exc}") from None
        batches = [int(batch)] if batch is not None else reconcilable_batches(self.engine.journal, loaded,
                                                                               self.engine.terminal.terminal_id)
        if not batches:
            raise CorrectionRefused(f"{loaded.source}: no closed batch to compare (the report names none of this terminal's "
                                    "closed batches); settle first, or name the batch")
        for b in batches:  # an import never settles: a report is compared with closed batches only
            row = self.engine.journal.batch(b)
            if row is None or row["state"] != "closed":
                raise CorrectionRefused(f"batch {b} is {'open' if row is not None else 'unknown'}: a settlement "
                                        "report is compared with closed batches only; settle first")
        out = []
        for b in batches:
            inc = self.reconcile(b, loaded)
            if inc is not None:
                out.append(inc)
        return out

    def reconcile(self, batch_no: int, report: SettlementReport | None = None) -> IncidentReport | None:
        """The reconciliation of one batch: its incident is raised once (the journal keys it by batch, and each
        report by its SHA-256), resumed when a new report arrives, and closes when the report matches."""
        journal = self.engine.journal
        found = reconciliation_incident(journal, batch_no)
        if found is not None and (report is None or report.digest in found[1]):
            self.say(f"batch {batch_no}: reconciliation is incident {found[0]} already"
                     + (" (this report was compared)" if report is not None else ""))
            return None
        if found is None and report is not None:
            diffs = self.engine.detectors.reconciliation.compare(journal, report, batches=(batch_no,),
                                                                 terminal_id=self.engine.terminal.terminal_id)
            batch = journal.batch(batch_no)
            if not diffs and batch is not None and str(batch["host_result"]) == "balanced":
                self._tell("reconcile.matched", f"batch {batch_no}: the acquirer's report and the journal agree")
                return None
        if found is None:
            self._tell("incident.detected", f"DETECTED unsettled [totals_unbalanced] batch {batch_no}"
                       if report is None else f"DETECTED unsettled [report_import] batch {batch_no}",
                       logging.WARNING, kind="unsettled", batch=batch_no)
            first = self._correct("unsettled", "totals_unbalanced" if report is None else "report_import", (),
                                  batch_no=batch_no, settlement_report=report,
                                  cause="host" if report is not None else "network")
            self._deliver_reconciliation(first)
            return first
        ctx = FlowContext(self.engine, journal, self.dialect, self.policies, clock=self.engine.clock)
        with self.engine.recording() as sent:
            outcome = FLOWS["unsettled"]().resume(ctx, found[0], FlowRequest("unsettled", (), batch_no=batch_no,
                                                                             settlement_report=report))
        inc = IncidentReport("unsettled", "report_import", [], "unsettled", [evidence_image(m) for m in sent],
                             outcome.outcome, outcome.reason, [m.mti for m in sent], incident_id=found[0])
        self.incidents.append(inc)
        self._incident(inc)
        self._deliver_reconciliation(inc)
        return inc

    #: the outbox files the last reconciliation wrote (customers' notices, then the merchant's list)
    delivered: list[str] = []

    def _deliver_reconciliation(self, inc: IncidentReport) -> None:
        """The merchant's list beside the customers' notices in the outbox; the operator is told where they are
        (the service's ``reconcile`` and ``posguard reconcile --outbox``)."""
        if not self.policies.outbox or inc.incident_id is None:
            return
        from posguard.service.reconcile_outbox import deliver_merchant_list

        done = deliver_merchant_list(self.engine.journal, inc.incident_id, self.policies.outbox)
        if done.merchant is not None:
            self.delivered = [*self.delivered, *done.customers, done.merchant]
            self._tell("reconcile.delivered", f"incident {inc.incident_id}: {len(done.customers)} customer "
                       f"notice(s) and the merchant's list in the outbox: {done.merchant}",
                       incident=inc.incident_id, customers=list(done.customers), merchant=done.merchant)

    # -- the service's idle tick ----------------------------------------------------------------------
    #: a queued reversal/advice older than this (engine clock) is an incident: the host has not acknowledged it
    pending_reversal_age: float = 300.0

    def tick(self) -> list[str]:
        """What the service runs when idle, on the engine's clock: signature deadlines (each overdue sale goes to
        its flow), reversals/advices pending too long and a batch left open (each recorded once, in the
        journal, so a restart does not raise it again). Returns the lines said."""
        said: list[str] = []
        before = len(self.incidents)
        self._reversals_acknowledged()  # the service's background drain may have sent a queued reversal
        self._handle(self.engine.check_signatures())
        self._follow_ups_due()
        said += [i.line() for i in self.incidents[before:]]
        journal, now = self.engine.journal, self.engine.clock.now()
        queued = {q.id: q for q in journal.saf_items(["queued", "sent", "expired"])}
        for d in self.engine.detectors.reconciliation.check(journal):
            if d.rule == "reversal_or_advice_pending":
                item = queued.get(int(d.evidence.get("saf_id", 0)))
                if item is None or now - item.created_at < self.pending_reversal_age:
                    continue
            key = f"{d.rule}:{d.evidence.get('saf_id', d.evidence.get('batch_no', ''))}"
            if key in self._ticked or any(json.loads(r["detail"] or "{}").get("key") == key
                                          for r in journal.incidents(d.rule)):
                self._ticked.add(key)
                continue
            self._ticked.add(key)
            txn = d.txn_ids[0] if d.txn_ids and d.txn_ids[0] else None
            with journal.atomic("detector_tick"):
                journal.record_incident(d.rule, _TICK_MESSAGES[d.rule], txn_id=txn,
                                        detail={"key": key, **{k: v for k, v in d.evidence.items()
                                                               if isinstance(v, (str, int, float)) or v is None}})
            line = f"INCIDENT {d.rule} {txn or '-'}: {_TICK_MESSAGES[d.rule]}"
            self.say(line)
            said.append(line)
        return said

    def _follow_ups_due(self) -> None:
        """Unsigned follow-ups past their deadline (engine clock) end kept at the merchant's risk (guide 004)."""
        for f in overdue(self.engine.journal, self.engine.clock.now()):
            self._correct("unsigned", "follow_up_deadline", (f.txn_id,), customer_present=False, follow_up="deadline")

    # -- incidents ------------------------------------------------------------------------------------
    def _handle(self, detections: tuple[Detection, ...]) -> None:
        for d in detections:
            key = (d.kind, tuple(d.txn_ids))
            if key in self._seen:
                continue
            self._seen.add(key)
            if d.kind == "duplicate_override":  # the operator charged it again on purpose: recorded, not corrected
                self._tell("incident.overridden", f"{', '.join(d.txn_ids)}: same card and amount/order, charged "
                           f"again on purpose (approved by {d.evidence.get('approved_by')}); recorded, not "
                           "corrected", kind=d.kind, rule=d.rule, txns=list(d.txn_ids))
                continue
            self._tell("incident.detected", f"DETECTED {d.kind} [{d.rule}] {', '.join(d.txn_ids)}: "
                       f"{mask_digits_in_text(str(d.evidence.get('action', '')))}", logging.WARNING,
                       kind=d.kind, rule=d.rule, txns=list(d.txn_ids))
            self._correct(d.kind, d.rule, tuple(t for t in d.txn_ids if t),
                          cause="network" if d.rule == "resend_after_timeout" else None)

    def _record_auto(self, kind: str, rule: str, txn_ids: list[str], detail: str,
                     sent: list[Message] | None = None, mtis: list[str] | None = None) -> None:
        """An incident the engine resolved on its own (a reversal); ``sent``: its messages (default: the reversals
        of ``txn_ids`` among the last three requests); ``mtis``: of all its messages, when some are not in ``sent``
        (sent before a restart)."""
        if sent is None:  # this incident's own reversals: never the one of the sale before it
            journaled = self._journaled_reversals(txn_ids)
            sent = [m for m in self.sent[-3:] if m.is_reversal and (m.mti, m.stan) in journaled]
        inc = IncidentReport(kind, rule, txn_ids, "engine", [evidence_image(m) for m in sent], "reversed", detail,
                             mtis if mtis is not None else [m.mti for m in sent])
        self.incidents.append(inc)
        self._incident(inc)

    def _journaled_reversals(self, txn_ids: list[str]) -> list[tuple[str, int]]:
        """(MTI, STAN) of every reversal the journal has sent for ``txn_ids`` (repeats included), in order."""
        return [(m["mti"], m["stan"]) for txn_id in txn_ids for m in self.engine.journal.messages(txn_id)
                if m["direction"] == "out" and m["mti"][1:2] == "4"]

    def _correct(self, kind: str, rule: str, txn_ids: tuple[str, ...], **request: Any) -> IncidentReport:
        """Hand the incident to its correction flow and report what it did."""
        if self.writer is not None:
            self.writer.record("link", event="flow", kind=kind, rule=rule, txn_ids=list(txn_ids))
        if self.supervisor is not None:
            request.setdefault("operator", f"supervisor {self.supervisor}")
        ctx = FlowContext(self.engine, self.engine.journal, self.dialect, self.policies, clock=self.engine.clock)
        with self.engine.recording() as sent:
            outcome = run_flow(ctx, FlowRequest(kind, txn_ids, **request), dry_run=self.dry_run_flows)
        messages = list(outcome.messages) if self.dry_run_flows else [evidence_image(m) for m in sent]
        inc = IncidentReport(kind, rule, list(txn_ids), kind, messages, outcome.outcome, outcome.reason,
                             [m.mti for m in sent], incident_id=outcome.incident_id)
        self.incidents.append(inc)
        self._incident(inc)
        return inc

    def _incident(self, inc: IncidentReport) -> None:
        self._tell("incident.recorded", inc.line(), logging.WARNING, kind=inc.kind, rule=inc.rule,
                   txns=list(inc.transactions), outcome=inc.outcome, incident=inc.incident_id)


def _icc_bytes(value: Any) -> bytes:
    """Field 55 of an answer as bytes (binary dialects) or from hex (ASCII dialects); b"" when absent."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        return b""
