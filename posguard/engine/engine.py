"""The transaction engine: write-ahead, one state chart, store-and-forward, detectors.

Every operation follows the same procedure:

1. flush pending reversals/advices first; refuse new transactions while one is pending (policy);
2. journal the transaction, its STAN, the request (masked) and the **armed** reversal in one commit;
3. journal ``sent``, then hand the request to the :class:`~posguard.engine.ports.HostLink`;
4. journal the outcome in one commit (response, new state, reversal disarmed or released);
5. run the detectors and journal what they find.

Sign-on: before anything is sent, the engine signs on (0800; ISO field 70 = 001, CUP 60.3 = 001/003) when
the host demanded it — RC 77, or a CUP response header whose processing requirement is 3, on *any* response —
or, with ``EnginePolicies.sign_on_at_start``, once per engine start. The demand is journaled durably (it
survives a crash) and cleared only by an approved sign-on.

Settlement (:meth:`TransactionEngine.settle`) follows pos-flows.md §A "Not arrived": CUP flushes reversals,
then advices, then sends the 0500 (60.3 = 201, totals in 48); balanced: TC uploads (0320, 60.3 = 203) then
batch end (0320, 60.3 = 207); unbalanced: a detail (0320, 60.3 = 205 chip / 201 other) for every
transaction, then batch end (60.3 = 202). International: 0500/920000; RC 95: 0320 per transaction, then
0500/960000. Uploads that fail are retried; what the host said it lacked is reported. The batch number
advances only in the commit that journals the host's acknowledgement of the batch end.

``kill_points`` (a callable taking a point name) is invoked at every state transition, before and after
every journal commit and before and after every send, so a test can crash the process at each point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from posguard.card import CardData
from posguard.clock import Clock, SystemClock
from posguard.engine.chart import CHART, IllegalTransition
from posguard.engine.detectors import Detection, Detectors
from posguard.engine.errors import (
    CorrectionRefused,
    RefundExceedsOriginal,
    SettlementBlocked,
    SignOnFailed,
    TransactionsBlocked,
    WrongCard,
)
from posguard.engine.journal import Journal, SafRecord, TxnRecord
from posguard.engine.ports import HostError, HostLink, HostTimeout, InvalidResponse
from posguard.engine.profiles import Fields, Profile, get_profile
from posguard.engine.redact import masked_json, masked_message
from posguard.engine.saf import SafPolicy, StoreAndForward
from posguard.engine.sealing import Sealer
from posguard.sensitive import Pan

if TYPE_CHECKING:
    from posguard.iso8583.message import Message

__all__ = ["TransactionEngine", "TerminalConfig", "EnginePolicies", "TxnResult", "SettlementResult",
           "RecoveryReport", "SignOnResult"]

KillHook = Callable[[str], None]
APPROVED_STATES = ("approved", "signature_pending", "signed", "unsigned", "uploaded")
_REASON_TIMEOUT, _REASON_INCOMPLETE, _REASON_OTHER = "98", "96", "06"


@dataclass(frozen=True, repr=False)
class TerminalConfig:
    """Identity and keys of this terminal. Keys never appear in ``repr``."""

    terminal_id: str
    merchant_id: str
    token_key: bytes
    data_key: bytes
    currency: str = "CNY"
    host_timeout: float = 30.0

    def __repr__(self) -> str:
        return f"TerminalConfig(terminal_id={self.terminal_id!r}, merchant_id={self.merchant_id!r}, keys=<hidden>)"


@dataclass(frozen=True)
class EnginePolicies:
    saf: SafPolicy = field(default_factory=SafPolicy)
    send_reversal_immediately: bool = True  # try the reversal right after a timeout, not only before the next sale
    signature_deadline: float = 300.0  # seconds after approval
    void_same_batch_only: bool = True
    sign_on_at_start: bool = False  # sign on (0800) before the first message of each engine start
    upload_attempts: int = 3  # settlement: tries per 0320 upload before settlement stops (batch stays open)


@dataclass(frozen=True)
class TxnResult:
    txn_id: str
    kind: str
    state: str
    response_code: str | None
    stan: int | None
    rrn: str | None
    auth_code: str | None
    operator_message: str
    detections: tuple[Detection, ...] = ()

    @property
    def approved(self) -> bool:
        return self.state in APPROVED_STATES


@dataclass(frozen=True)
class SettlementResult:
    batch_no: int
    balanced: bool
    response_code: str | None
    totals: dict[str, int]
    uploaded: int
    next_batch: int
    detections: tuple[Detection, ...] = ()
    flag: str | None = None  # CUP balance flag of the 0510 (1 balanced, 2 unbalanced, 3 error)
    host_lacked: tuple[str, ...] = ()  # transactions whose detail upload the host did not hold (booked from it)
    tc_uploaded: int = 0


@dataclass(frozen=True)
class SignOnResult:
    response_code: str | None
    stan: int
    reason: str


@dataclass
class RecoveryReport:
    abandoned: list[str] = field(default_factory=list)
    reversals_released: list[str] = field(default_factory=list)
    advices_released: list[str] = field(default_factory=list)
    interrupted_saf: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    still_pending: list[int] = field(default_factory=list)


class TransactionEngine:
    """See the module docstring. All state lives in the journal; the engine object holds none of it."""

    def __init__(
        self, journal: Journal, host_link: HostLink, dialect: str | Profile, terminal: TerminalConfig,
        clock: Clock | None = None, detectors: Detectors | None = None, policies: EnginePolicies | None = None,
        *, kill_points: KillHook | None = None,
    ) -> None:
        self.journal = journal
        self.link = host_link
        self.profile = get_profile(dialect)
        self.terminal = terminal
        self.clock = clock or SystemClock()
        self.policies = policies or EnginePolicies()
        self.detectors = detectors or Detectors.default(self.clock)
        self.sealer = Sealer(terminal.data_key)
        self.kill_points = kill_points
        journal.kill_hook = self._kill
        self.saf = StoreAndForward(journal, self.sealer, self.profile, self.clock, self.policies.saf,
                                   kill=self._kill, on_done=self._saf_done, on_expired=self._saf_expired)
        self._signed_on = False  # in this engine start (the host's demand itself is durable in the journal)
        self._wire = _HostWatch(self)

    # -- plumbing --------------------------------------------------------------------------------
    def _kill(self, point: str) -> None:
        if self.kill_points is not None:
            self.kill_points(point)

    @contextmanager
    def _atomic(self, label: str) -> Iterator[None]:
        """A journal commit; an illegal transition inside it is rolled back, then journaled as refused."""
        try:
            with self.journal.atomic(label):
                yield
        except IllegalTransition as exc:
            self._journal_refusal(exc)
            raise

    def _journal_refusal(self, exc: IllegalTransition) -> None:
        with self.journal.atomic("refused"):
            self.journal.record_transition("txn", exc.txn_id, exc.kind, exc.state, exc.event, None,
                                           accepted=False, detail=str(exc))
            self.journal.record_event("illegal_transition", txn_id=exc.txn_id,
                                      detail={"state": exc.state, "event": exc.event})

    def _check(self, txn: TxnRecord, event: str) -> None:
        """Refuse (and journal) an event before anything is written or sent."""
        if not CHART.allows(txn.kind, txn.state, event):
            exc = IllegalTransition(txn.id, txn.kind, txn.state, event)
            self._journal_refusal(exc)
            raise exc

    def _fire(self, txn: TxnRecord, event: str, **updates: object) -> None:
        new = CHART.next_state(txn.kind, txn.state, event, txn_id=txn.id)
        self._kill(f"state:{txn.kind}.{event}")
        self.journal.record_transition("txn", txn.id, txn.kind, txn.state, event, new)
        self.journal.update_txn(txn.id, state=new, **updates)
        txn.state = new
        for k, v in updates.items():
            setattr(txn, k, v)

    def _record(self, detections: list[Detection]) -> tuple[Detection, ...]:
        if detections:
            with self.journal.atomic("detections"):
                for d in detections:
                    self.journal.record_detection(d.kind, d.rule, d.txn_ids, d.evidence)
        return tuple(detections)

    # -- gate --------------------------------------------------------------------------------------
    def _clear_to_send(self, what: str, *, settlement: bool = False) -> None:
        """Sign on if due, send what the queue holds; refuse ``what`` if something is still unacknowledged."""
        self._ensure_signed_on(what)
        if settlement:  # every reversal before any advice (pos-flows.md: 0400 -> offline 0220s -> 0500)
            report = self.saf.flush(self._wire, kinds=("reversal",))
            if report.clear:
                report = self.saf.flush(self._wire)
        else:
            report = self.saf.flush(self._wire)
        if report.clear or not (self.policies.saf.block_new_transactions or settlement):
            return
        items = [self.journal.saf_get(i) for i in report.remaining]
        first = items[0]
        wait = f"; next try in {report.retry_in:.0f} s" if report.retry_in is not None else ""
        msg = (
            f"{what} refused: {len(items)} {first.kind}(s) still unacknowledged by the host "
            f"(first: {first.mti} for transaction {first.txn_id}, {first.attempts} attempt(s), "
            f"last {first.last_rc or first.last_error or 'not yet sent'}){wait}. "
            "Check the host line; the queue is retried automatically before the next transaction."
        )
        with self.journal.atomic("blocked"):
            self.journal.record_event("blocked", txn_id=first.txn_id, detail={"what": what, "pending": report.remaining})
        cls = SettlementBlocked if settlement else TransactionsBlocked
        raise cls(msg, pending_ids=tuple(report.remaining), retry_in=report.retry_in)

    def _flush(self, *, wait: bool = False) -> list[int]:
        """Flush the queue, signing on first if the host demanded it; a failed sign-on leaves the queue."""
        try:
            self._ensure_signed_on("sending the queue")
        except SignOnFailed:
            return [i.id for i in self.saf.pending()]
        return self.saf.flush(self._wire, wait=wait).remaining

    # -- sign-on -----------------------------------------------------------------------------------
    @property
    def sign_on_due(self) -> str | None:
        """Why a sign-on must precede the next message, or None."""
        if self.journal.sign_on_required():
            return "demanded by the host"
        if self.policies.sign_on_at_start and not self._signed_on:
            return "engine start"
        return None

    def _ensure_signed_on(self, what: str) -> None:
        reason = self.sign_on_due
        if reason is not None:
            self.sign_on(reason=reason, before=what)

    def sign_on(self, *, reason: str = "operator", before: str = "") -> SignOnResult:
        """Send a 0800 sign-on and journal it; raise :class:`SignOnFailed` unless the host answers 00."""
        with self._atomic("sign_on_journaled"):
            stan = self.journal.allocate_stan()
            fields = self.profile.sign_on_fields(stan=stan, batch_no=self.journal.current_batch(),
                                                 terminal_id=self.terminal.terminal_id,
                                                 merchant_id=self.terminal.merchant_id, now=self.clock.now())
            self.journal.record_message(direction="out", mti="0800", masked=masked_json("0800", fields), stan=stan)
            self.journal.record_event("sign_on_started", detail={"reason": reason, "before": before, "stan": stan})
        self._kill("host.before_send:0800")
        try:
            response = self.link.exchange(self.profile.message("0800", fields), timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill("host.after_send:0800")
            with self._atomic("sign_on_failed"):
                self.journal.record_incident("sign_on_failed", f"sign-on ({reason}) got no answer: {exc}",
                                             detail={"stan": stan})
            raise SignOnFailed(f"{before or 'the next message'} refused: sign-on ({reason}) got no answer from the "
                               f"host ({exc}); check the host line and try again", pending_ids=(),
                               retry_in=None) from exc
        self._kill("host.after_send:0800")
        rc = response.response_code
        with self._atomic("sign_on_response"):
            self.journal.record_message(direction="in", mti=response.mti, masked=masked_message(response),
                                        stan=response.stan)
            if rc == "00":
                self.journal.set_sign_on_required(False)
                self.journal.record_event("signed_on", detail={"reason": reason, "stan": stan,
                                                               "keys_received": "62" in response})
            else:
                self.journal.record_incident("sign_on_failed", f"sign-on ({reason}) answered RC {rc}",
                                             detail={"stan": stan, "rc": rc})
        if rc != "00":
            raise SignOnFailed(f"{before or 'the next message'} refused: the host answered the sign-on ({reason}) "
                               f"with RC {rc}; check the terminal's registration with the acquirer",
                               pending_ids=(), retry_in=None)
        self._signed_on = True
        return SignOnResult(rc, stan, reason)

    def _host_demands_sign_on(self, response: Message) -> None:
        """Any response may say "sign on again" (RC 77, CUP header 3): journal it durably."""
        if response.mti in ("0810", "0830"):
            return
        why = self.profile.sign_on_demanded(response)
        if why is None:
            return
        with self._atomic("sign_on_demanded"):
            self.journal.set_sign_on_required(True)
            self.journal.record_event("sign_on_demanded", detail={"mti": response.mti, "stan": response.stan,
                                                                  "rc": response.response_code, "why": why})
        self._signed_on = False

    # -- operations --------------------------------------------------------------------------------
    def sale(self, card: CardData, amount_minor: int, currency: str | None = None, order_ref: str | None = None
             ) -> TxnResult:
        """Charge ``amount_minor`` (minor units) to ``card``."""
        return self._online("sale", card, amount_minor, currency or self.terminal.currency, order_ref, None)

    def preauth(self, card: CardData, amount_minor: int, currency: str | None = None,
                order_ref: str | None = None) -> TxnResult:
        return self._online("preauth", card, amount_minor, currency or self.terminal.currency, order_ref, None)

    def complete(self, original_id: str, amount_minor: int | None = None) -> TxnResult:
        """Complete a pre-authorisation (up to its amount)."""
        original = self.journal.get_txn(original_id)
        self._check(original, "complete")
        amount = original.amount_minor if amount_minor is None else amount_minor
        if amount > original.amount_minor:
            raise CorrectionRefused(f"completion of {amount} exceeds pre-authorisation {original_id} "
                                    f"({original.amount_minor}); take a new sale for the difference")
        return self._online("completion", self._card_of(original), amount, original.currency, original.order_ref,
                            original)

    def void(self, original_id: str, card: CardData | None = None, amount_minor: int | None = None) -> TxnResult:
        """Void an approved transaction of the open batch, for its full amount."""
        original = self.journal.get_txn(original_id)
        self._check(original, "void")
        if amount_minor is not None and amount_minor != original.amount_minor:
            raise CorrectionRefused(
                f"void of {original_id} must be for the full {original.amount_minor}, not {amount_minor}; "
                "for part of the amount, settle and then refund"
            )
        if self.policies.void_same_batch_only and original.batch_no != self.journal.current_batch():
            raise CorrectionRefused(f"{original_id} is in closed batch {original.batch_no}; after settlement "
                                    "only a refund is possible")
        open_voids = [c for c in self.journal.children(original_id)
                      if c.kind == "void" and c.state in ("request_journaled", "sent", "timed_out", "reversal_pending")]
        if open_voids:
            raise CorrectionRefused(f"void {open_voids[0].id} of {original_id} is still unresolved; wait for its "
                                    "reversal to be acknowledged before voiding again")
        card = self._same_card(original, card)
        return self._online("void", card, original.amount_minor, original.currency, original.order_ref, original)

    def refund(self, original_id: str, amount_minor: int, card: CardData | None = None) -> TxnResult:
        """Refund part or all of an approved (possibly settled) sale; refunds never exceed the original."""
        original = self.journal.get_txn(original_id)
        event = "refund_full" if amount_minor >= original.amount_minor - original.refunded_minor else "refund_partial"
        self._check(original, event)
        in_flight = sum(c.amount_minor for c in self.journal.children(original_id)
                        if c.kind == "refund" and c.state in ("request_journaled", "sent", "timed_out"))
        left = original.amount_minor - original.refunded_minor - in_flight
        if amount_minor <= 0 or amount_minor > left:
            raise RefundExceedsOriginal(
                f"refund of {amount_minor} on {original_id} refused: {left} of {original.amount_minor} is left to "
                f"refund ({original.refunded_minor} refunded, {in_flight} in flight)"
            )
        card = self._same_card(original, card)
        return self._online("refund", card, amount_minor, original.currency, original.order_ref, original)

    def reverse(self, txn_id: str, reason: str = _REASON_OTHER) -> TxnResult:
        """Reverse an approved transaction (card declined at the 2nd GENERATE AC, or a void to undo)."""
        txn = self.journal.get_txn(txn_id)
        event = "reverse_approved" if txn.kind == "void" else "card_declined"
        self._check(txn, event)
        with self._atomic("reverse"):
            fields = self._reversal_fields_for(txn, reason)
            self.saf.enqueue("reversal", txn.id, "0400", fields, reason)
            self._fire(txn, event)
            if txn.kind == "void" and txn.original_id:
                orig = self.journal.get_txn(txn.original_id)
                if orig.state == "voided":
                    self._fire(orig, "void_undone")
        self._flush()
        return self._result(self.journal.get_txn(txn_id), "reversal queued")

    def sign(self, txn_id: str) -> TxnResult:
        """The signature was captured."""
        txn = self.journal.get_txn(txn_id)
        self._check(txn, "sign")
        with self._atomic("signed"):
            self._fire(txn, "sign", signature="captured")
        self.detectors.unsigned.signed(txn.id)
        return self._result(txn, "signature captured")

    def check_signatures(self) -> tuple[Detection, ...]:
        """Mark overdue signatures ``unsigned`` and report them."""
        found = self.detectors.unsigned.overdue(self.clock.now())
        with self._atomic("signature_deadline"):
            for d in found:
                txn = self.journal.get_txn(d.txn_ids[0])
                if txn.state == "signature_pending":
                    self._fire(txn, "signature_deadline", signature="missing")
        return self._record(found)

    # -- the online procedure ---------------------------------------------------------------------
    def _online(self, kind: str, card: CardData | None, amount: int, currency: str, order_ref: str | None,
                original: TxnRecord | None) -> TxnResult:
        if amount < 0:
            raise CorrectionRefused(f"amount {amount} is negative; amounts are minor units >= 0")
        self._clear_to_send(f"new {kind}")
        spec = self.profile.spec(kind)
        now = self.clock.now()
        with self._atomic("request_journaled"):
            txn = self._create(kind, card, amount, currency, order_ref, original, now)
            stan = self.journal.allocate_stan()
            fields = self.profile.request_fields(
                kind, card=card, amount_minor=amount, currency=currency, stan=stan, batch_no=txn.batch_no or 0,
                terminal_id=self.terminal.terminal_id, merchant_id=self.terminal.merchant_id, now=now,
                original=original)
            self.journal.record_message(direction="out", mti=spec.mti, masked=masked_json(spec.mti, fields),
                                        stan=stan, txn_id=txn.id)
            if spec.reversible:
                saf_id = self.saf.arm("reversal", txn.id, "0400",
                                      self._reversal_from_request(spec.mti, fields), _REASON_TIMEOUT)
            else:
                saf_id = self.saf.arm("advice", txn.id, spec.mti, fields)
            self._fire(txn, "journal_request", stan=stan)
        request = self.profile.message(spec.mti, fields)
        with self._atomic("sent"):
            self._fire(txn, "send", sent_at=self.clock.now())
        self._kill(f"host.before_send:{spec.mti}")
        try:
            response = self._wire.exchange(request, timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill(f"host.after_send:{spec.mti}")
            return self._outcome_unknown(txn, saf_id, exc, spec.reversible)
        self._kill(f"host.after_send:{spec.mti}")
        return self._outcome(txn, saf_id, response, card, original)

    def _create(self, kind: str, card: CardData | None, amount: int, currency: str, order_ref: str | None,
                original: TxnRecord | None, now: float) -> TxnRecord:
        txn_id = self.journal.next_txn_id(self.terminal.terminal_id)
        sealed = None
        if card is not None:
            sealed = self.sealer.seal({"pan": card.pan.reveal(), "expiry": card.expiry}, f"card:{txn_id}")
        txn = TxnRecord(
            id=txn_id, kind=kind, state="created", amount_minor=amount, currency=currency,
            terminal_id=self.terminal.terminal_id, merchant_id=self.terminal.merchant_id, created_at=now,
            updated_at=now, pan_token=card.pan_token if card else None, pan_masked=card.pan_masked if card else None,
            batch_no=self.journal.current_batch(), original_id=original.id if original else None,
            order_ref=order_ref, cvm_results=card.cvm_results.hex().upper() if card and card.cvm_results else None,
            entry_mode=card.entry_mode if card else None, scheme=card.scheme if card else None, card_sealed=sealed,
        )
        self.journal.insert_txn(txn)
        self.journal.record_transition("txn", txn.id, kind, "-", "create", "created")
        if card is not None:
            self._fire(txn, "read_card")
        return txn

    def _reversal_from_request(self, mti: str, fields: Fields) -> Fields:
        stan = None if self.profile.reversal_keeps_stan else self.journal.allocate_stan()
        return self.profile.reversal_fields(mti, fields, reason=_REASON_TIMEOUT, stan=stan)

    def _reversal_fields_for(self, txn: TxnRecord, reason: str) -> Fields:
        """Rebuild the request of an already-answered transaction and derive its reversal."""
        original = self.journal.get_txn(txn.original_id) if txn.original_id else None
        spec = self.profile.spec(txn.kind)
        fields = self.profile.request_fields(
            txn.kind, card=self._card_of(txn), amount_minor=txn.amount_minor, currency=txn.currency,
            stan=txn.stan or 0, batch_no=txn.batch_no or 0, terminal_id=txn.terminal_id,
            merchant_id=txn.merchant_id or self.terminal.merchant_id, now=txn.created_at, original=original)
        if txn.rrn:
            fields["37"] = txn.rrn
        if txn.auth_code:
            fields["38"] = txn.auth_code
        stan = None if self.profile.reversal_keeps_stan else self.journal.allocate_stan()
        return self.profile.reversal_fields(spec.mti, fields, reason=reason, stan=stan)

    def _outcome_unknown(self, txn: TxnRecord, saf_id: int, exc: HostError, reversible: bool) -> TxnResult:
        if not exc.maybe_sent:
            with self._atomic("not_sent"):
                self._fire(txn, "link_failed")
                self.saf.disarm(saf_id)
                self.journal.record_event("link_failed", txn_id=txn.id, detail={"error": str(exc)})
            return self._result(txn, f"not sent ({exc}); nothing was charged, try again")
        event = "invalid_response" if isinstance(exc, InvalidResponse) else "timeout"
        reason = _REASON_TIMEOUT if isinstance(exc, HostTimeout) else _REASON_INCOMPLETE
        with self._atomic("outcome_unknown"):
            self._fire(txn, event)
            if reversible:
                self._fire(txn, "arm_reversal")
                self.saf.release(saf_id, reason)
            else:
                self.saf.release(saf_id, attempts_so_far=1)
            self.journal.record_incident(
                "outcome_unknown", f"{txn.kind} {txn.id} STAN {txn.stan}: {type(exc).__name__}; "
                f"{'reversal' if reversible else 'advice repeat'} queued",
                txn_id=txn.id, detail={"error": str(exc), "reversible": reversible})
        self.detectors.duplicate.unknown_outcome(txn)
        if self.policies.send_reversal_immediately:
            self._flush()
        txn = self.journal.get_txn(txn.id)
        what = "reversed" if txn.state == "reversed" else "reversal pending" if reversible else "advice pending"
        return self._result(txn, f"no valid answer from the host ({type(exc).__name__}); {what}. "
                                 "Do not charge again until the reversal is confirmed.")

    def _outcome(self, txn: TxnRecord, saf_id: int, response: Message, card: CardData | None,
                 original: TxnRecord | None) -> TxnResult:
        rc = response.response_code
        with self._atomic("response"):
            self.journal.record_message(direction="in", mti=response.mti, masked=masked_message(response),
                                        stan=response.stan, txn_id=txn.id)
            common: dict[str, object] = {"response_code": rc, "rrn": response.rrn, "auth_code": response.auth_code,
                                         "responded_at": self.clock.now()}
            self.saf.disarm(saf_id)
            if rc == "00":
                self._fire(txn, "approve", approved_at=self.clock.now(), **common)
                self._after_approval(txn, card, original)
            else:
                self._fire(txn, "decline", **common)
                if rc == "94":
                    self.journal.record_event("duplicate_transmission", txn_id=txn.id, detail={"stan": txn.stan})
        detections: list[Detection] = []
        if rc == "00":
            detections += self.detectors.on_approved(txn, self.journal)
        if rc == "00":
            message = "approved"
        elif rc == self.profile.sign_on_rc:
            message = f"declined (RC {rc}): the host requires a new sign-on; it is done before the next transaction"
        else:
            message = f"declined (RC {rc})"
        return self._result(txn, message, self._record(detections))

    def _after_approval(self, txn: TxnRecord, card: CardData | None, original: TxnRecord | None) -> None:
        if txn.kind in ("sale", "preauth", "completion") and card is not None and card.signature_required:
            rule = self.detectors.unsigned.exemption_for(txn)
            if rule is not None:
                self.journal.update_txn(txn.id, signature="exempt")
                self.journal.record_event("signature_exempt", txn_id=txn.id, detail={"rule": rule})
            else:
                self._fire(txn, "require_signature", signature="pending")
                self.detectors.unsigned.expect(txn, self.clock.now() + self.policies.signature_deadline)
        if original is None:
            return
        original = self.journal.get_txn(original.id)
        if txn.kind == "void":
            self._fire(original, "void")
        elif txn.kind == "refund":
            total = original.refunded_minor + txn.amount_minor
            self._fire(original, "refund_full" if total >= original.amount_minor else "refund_partial",
                       refunded_minor=total)
        elif txn.kind == "completion":
            self._fire(original, "complete")

    # -- store-and-forward callbacks (inside the closing commit) ------------------------------------------
    def _saf_done(self, item: SafRecord, rc: str | None) -> None:
        if item.txn_id is None:
            return
        txn = self.journal.get_txn(item.txn_id)
        if item.kind == "reversal" and txn.state in ("reversal_pending", "reversal_failed"):
            self._fire(txn, "reversal_done", response_code=txn.response_code)
            self.journal.record_event("reversal_acknowledged", txn_id=txn.id, detail={"rc": rc})
        elif item.kind == "advice" and txn.state in ("timed_out", "response_invalid"):
            self._fire(txn, "advice_accepted", response_code=rc, approved_at=self.clock.now())
            original = self.journal.get_txn(txn.original_id) if txn.original_id else None
            self._after_approval(txn, None, original)

    def _saf_expired(self, item: SafRecord, rc: str | None) -> None:
        if item.txn_id is None:
            return
        txn = self.journal.get_txn(item.txn_id)
        if item.kind == "reversal" and txn.state == "reversal_pending":
            self._fire(txn, "reversal_expired")
        elif item.kind == "advice" and txn.state in ("timed_out", "response_invalid"):
            self._fire(txn, "advice_expired")

    # -- queue, recovery, settlement --------------------------------------------------------------------
    def flush(self, *, wait: bool = False) -> list[int]:
        """Send queued reversals/advices now; returns the ids still pending."""
        return self._flush(wait=wait)

    def recover(self) -> RecoveryReport:
        """On start: finish what a crash interrupted, then send the queue."""
        report = RecoveryReport()
        with self._atomic("recover"):
            for txn in self.journal.txns_in_states(["created", "card_read"]):
                self._fire(txn, "abandon")
                report.abandoned.append(txn.id)
            for txn in self.journal.txns_in_states(["request_journaled", "sent", "timed_out", "response_invalid"]):
                armed = self.saf.armed_for(txn.id)
                reversible = self.profile.spec(txn.kind).reversible
                if reversible:
                    if txn.state in ("request_journaled", "sent"):
                        self._fire(txn, "recover")
                    else:
                        self._fire(txn, "arm_reversal")
                    if armed is not None:
                        self.saf.release(armed.id, _REASON_TIMEOUT)
                    report.reversals_released.append(txn.id)
                else:
                    if txn.state in ("request_journaled", "sent"):
                        self._fire(txn, "recover_advice")
                    if armed is not None:
                        self.saf.release(armed.id, attempts_so_far=1)
                    report.advices_released.append(txn.id)
                self.journal.record_incident("recovered_in_flight", f"{txn.kind} {txn.id} was in flight at restart; "
                                             "outcome unknown, queued for the host", txn_id=txn.id)
            for item in self.journal.saf_items(["armed"]):  # armed for an answered transaction: withdraw
                self.saf.disarm(item.id)
            report.interrupted_saf = self.saf.requeue_interrupted()
            self.journal.record_event("recovered", detail={"abandoned": len(report.abandoned),
                                                           "released": len(report.reversals_released)})
        self.detectors.duplicate.warm(self.journal)
        for txn in self.journal.txns_in_states(["signature_pending"]):
            self.detectors.unsigned.expect(txn, (txn.approved_at or self.clock.now()) + self.policies.signature_deadline)
        try:
            self._ensure_signed_on("recovery")
        except SignOnFailed:
            report.still_pending = [i.id for i in self.saf.pending()]
            return report
        flushed = self.saf.flush(self._wire)
        report.acknowledged = flushed.acknowledged
        report.still_pending = flushed.remaining
        return report

    def batch_totals(self, batch_no: int | None = None) -> dict[str, int]:
        batch = self.journal.current_batch() if batch_no is None else batch_no
        debit = self.journal.query(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM transactions WHERE batch_no = ? AND "
            "kind IN ('sale', 'completion') AND state IN ('approved','signature_pending','signed','unsigned',"
            "'uploaded','refunded_partial','refunded')", (batch,))[0]
        credit = self.journal.query(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM transactions WHERE batch_no = ? AND "
            "kind = 'refund' AND state IN ('approved', 'uploaded')", (batch,))[0]
        return {"debit_count": int(debit[0]), "debit_minor": int(debit[1]),
                "credit_count": int(credit[0]), "credit_minor": int(credit[1])}

    def settle(self) -> SettlementResult:
        """Close the batch as the acquirer's procedure says (see the module docstring).

        Raises :class:`SettlementBlocked` (the batch stays open, run settlement again) when the queue is not
        empty, the 0500 or the batch end gets no acknowledgement, or an upload still fails after
        ``EnginePolicies.upload_attempts`` tries. Uploads already acknowledged are not sent again.
        """
        self._clear_to_send("settlement", settlement=True)
        batch = self.journal.current_batch()
        totals = self.batch_totals(batch)
        response = self._settlement_exchange(batch, totals, close_after_upload=False)
        rc = response.response_code
        cup = self.profile.uses_field_60
        flag = self.profile.settlement_flag(response) if cup else None
        if cup:
            if rc != "00":
                self._settlement_refused(batch, f"the host answered the 0500 with RC {rc}")
            balanced = flag == "1"
        else:
            if rc not in ("00", "95"):
                self._settlement_refused(batch, f"the host answered the 0500 with RC {rc}")
            balanced = rc == "00"
        detail_txns = self._upload_candidates(batch, "detail")
        lacked: list[str] = []
        uploaded = tc_uploaded = 0
        if not balanced:
            uploaded, lacked = self._upload_all(batch, "detail", detail_txns)
        elif cup:
            tc_uploaded, _ = self._upload_all(batch, "tc", self._upload_candidates(batch, "tc"))
        if cup:
            self._batch_end(batch, "tc" if balanced else "detail",
                            tc_uploaded if balanced else len(detail_txns))
        elif not balanced:
            closing = self._settlement_exchange(batch, totals, close_after_upload=True)
            if closing.response_code != "00":
                self._settlement_refused(batch, f"the host answered the closing 0500/"
                                                f"{self.profile.settlement_close_proc} with RC {closing.response_code}")
        detections = self.detectors.reconciliation.on_settlement(batch, totals, balanced, rc, self.journal)
        detections += self.detectors.unsigned.at_batch_close(batch, self.journal)
        with self._atomic("batch_closed"):
            for txn in self.journal.find_txns("batch_no = ? AND state IN ('approved','signature_pending','signed',"
                                              "'unsigned','uploaded')", (batch,)):
                if CHART.allows(txn.kind, txn.state, "settle"):
                    if txn.state == "signature_pending":
                        self.journal.update_txn(txn.id, signature="missing")
                    self._fire(txn, "settle", settled_at=self.clock.now())
            result = "balanced" if balanced else f"unbalanced rc={rc}" + (f" flag={flag}" if flag else "")
            if lacked:
                result += f"; host lacked {len(lacked)}"
                self.journal.record_incident("host_lacked_transactions",
                                             f"batch {batch}: the host did not hold {len(lacked)} transaction(s) "
                                             "until their detail upload: " + ", ".join(lacked),
                                             detail={"batch": batch, "txn_ids": lacked})
            new_batch = self.journal.close_batch(totals, result)
            self.journal.record_event("batch_closed", detail={"batch": batch, "next": new_batch, "result": result})
        return SettlementResult(batch, balanced, rc, totals, uploaded, new_batch, self._record(detections),
                                flag=flag, host_lacked=tuple(lacked), tc_uploaded=tc_uploaded)

    def _settlement_refused(self, batch: int, why: str) -> NoReturn:
        with self._atomic("settlement_failed"):
            self.journal.record_incident("settlement_failed", f"batch {batch} not closed: {why}; run settlement "
                                         "again", txn_id=None)
        raise SettlementBlocked(f"settlement of batch {batch} stopped: {why}; the batch stays open, run settlement "
                                "again", pending_ids=(), retry_in=None)

    def _settlement_exchange(self, batch: int, totals: dict[str, int], *, close_after_upload: bool) -> Message:
        with self._atomic("settlement_journaled"):
            stan = self.journal.allocate_stan()
            fields = self.profile.settlement_fields(stan=stan, batch_no=batch, terminal_id=self.terminal.terminal_id,
                                                    merchant_id=self.terminal.merchant_id, totals=totals,
                                                    currency=self.terminal.currency,
                                                    close_after_upload=close_after_upload)
            self.journal.record_message(direction="out", mti="0500", masked=masked_json("0500", fields), stan=stan)
            self.journal.record_event("settlement_started", detail={"batch": batch, "proc": fields["3"], **totals})
        self._kill("host.before_send:0500")
        try:
            response = self._wire.exchange(self.profile.message("0500", fields), timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill("host.after_send:0500")
            self._settlement_refused(batch, f"the 0500 got no answer ({exc})")
        self._kill("host.after_send:0500")
        with self._atomic("settlement_response"):
            self.journal.record_message(direction="in", mti=response.mti, masked=masked_message(response),
                                        stan=response.stan)
        return response

    def _upload_candidates(self, batch: int, purpose: str) -> list[TxnRecord]:
        """Detail uploads: every approved transaction of the batch. TC uploads: the chip ones."""
        txns = self.journal.find_txns(
            "batch_no = ? AND kind IN ('sale', 'completion', 'refund', 'preauth') AND state IN ('approved', "
            "'signature_pending', 'signed', 'unsigned', 'uploaded', 'refunded_partial', 'refunded')", (batch,))
        if purpose == "tc":
            txns = [t for t in txns if t.entry_mode in ("chip", "contactless") and t.kind != "refund"]
        return txns

    def _upload_all(self, batch: int, purpose: str, txns: list[TxnRecord]) -> tuple[int, list[str]]:
        """Upload each transaction (0320), retrying failures in rounds; returns (count, ids the host lacked)."""
        done = {r["txn_id"]: r for r in self.journal.uploads(batch, purpose) if r["state"] == "acknowledged"}
        todo = [t for t in txns if t.id not in done]
        failed: dict[str, str] = {}
        for _ in range(max(1, self.policies.upload_attempts)):
            failed = {}
            for txn in todo:
                outcome = self._upload_one(batch, purpose, txn)
                if outcome is not None:
                    failed[txn.id] = outcome
            todo = [t for t in todo if t.id in failed]
            if not todo:
                break
        if failed:
            first = next(iter(failed.items()))
            self._settlement_refused(batch, f"{len(failed)} {purpose} upload(s) failed after "
                                            f"{self.policies.upload_attempts} attempts (first: {first[0]}: {first[1]})")
        rows = self.journal.uploads(batch, purpose)
        lacked = [r["txn_id"] for r in rows if r["host_had"] == 0]
        return sum(1 for r in rows if r["state"] == "acknowledged"), lacked

    def _upload_one(self, batch: int, purpose: str, txn: TxnRecord) -> str | None:
        """One 0320; None when acknowledged, else why it failed. RC 25 = the host lacked it (booked now)."""
        spec = self.profile.spec("upload")
        with self._atomic("upload_journaled"):
            stan = self.journal.allocate_stan()
            fields = self.profile.upload_fields(purpose=purpose, stan=stan, batch_no=batch,
                                                terminal_id=self.terminal.terminal_id,
                                                merchant_id=self.terminal.merchant_id, txn=txn)
            self.journal.record_message(direction="out", mti=spec.mti, masked=masked_json(spec.mti, fields),
                                        stan=stan, txn_id=txn.id)
            self.journal.upload_record(batch, txn.id, purpose, state="sent", attempt=True)
        self._kill(f"host.before_send:{spec.mti}")
        try:
            resp = self._wire.exchange(self.profile.message(spec.mti, fields), timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill(f"host.after_send:{spec.mti}")
            with self._atomic("upload_failed"):
                self.journal.upload_record(batch, txn.id, purpose, state="failed")
                self.journal.record_incident("upload_failed", f"{purpose} upload of {txn.id} failed: {exc}",
                                             txn_id=txn.id)
            return str(exc)
        self._kill(f"host.after_send:{spec.mti}")
        rc = resp.response_code
        ok = rc in ("00", "25")
        with self._atomic("uploaded"):
            self.journal.record_message(direction="in", mti=resp.mti, masked=masked_message(resp),
                                        stan=resp.stan, txn_id=txn.id)
            self.journal.upload_record(batch, txn.id, purpose, state="acknowledged" if ok else "failed", last_rc=rc,
                                       host_had=(rc == "00") if ok else None)
        return None if ok else f"RC {rc}"

    def _batch_end(self, batch: int, after: str, count: int) -> None:
        """CUP batch end (0320, 60.3 = 207 after TC uploads, 202 after details); must be acknowledged 00."""
        with self._atomic("batch_end_journaled"):
            stan = self.journal.allocate_stan()
            fields = self.profile.batch_end_fields(stan=stan, batch_no=batch, terminal_id=self.terminal.terminal_id,
                                                   merchant_id=self.terminal.merchant_id, count=count, after=after)
            self.journal.record_message(direction="out", mti="0320", masked=masked_json("0320", fields), stan=stan)
        self._kill("host.before_send:0320")
        try:
            resp = self._wire.exchange(self.profile.message("0320", fields), timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill("host.after_send:0320")
            self._settlement_refused(batch, f"the batch end got no answer ({exc})")
        self._kill("host.after_send:0320")
        with self._atomic("batch_end_response"):
            self.journal.record_message(direction="in", mti=resp.mti, masked=masked_message(resp), stan=resp.stan)
        if resp.response_code != "00":
            self._settlement_refused(batch, f"the host answered the batch end with RC {resp.response_code}")

    # -- helpers -----------------------------------------------------------------------------------
    def _card_of(self, txn: TxnRecord) -> CardData | None:
        if txn.card_sealed is None:
            return None
        data = self.sealer.open(txn.card_sealed, f"card:{txn.id}")
        return CardData(Pan(data["pan"]), txn.pan_token or "", expiry=data.get("expiry"), entry_mode="manual",
                        scheme=txn.scheme)

    def _same_card(self, original: TxnRecord, card: CardData | None) -> CardData | None:
        if card is None:
            return self._card_of(original)
        if original.pan_token and card.pan_token != original.pan_token:
            raise WrongCard(f"card {card.pan_masked} is not the card of {original.id} ({original.pan_masked}); "
                            "present the original card (the host would answer RC 14)")
        return card

    def _result(self, txn: TxnRecord, message: str, detections: tuple[Detection, ...] = ()) -> TxnResult:
        txn = self.journal.get_txn(txn.id)
        return TxnResult(txn.id, txn.kind, txn.state, txn.response_code, txn.stan, txn.rrn, txn.auth_code,
                         message, detections)


class _HostWatch:
    """The engine's view of its link: every response is checked for a sign-on demand (RC 77, CUP header 3).

    It forwards to ``engine.link`` at call time, so callers that swap ``engine.link`` (recorders, wire logs)
    stay in the path.
    """

    def __init__(self, engine: TransactionEngine) -> None:
        self._engine = engine

    def exchange(self, request: Message, *, timeout: float) -> Message:
        response = self._engine.link.exchange(request, timeout=timeout)
        self._engine._host_demands_sign_on(response)
        return response
