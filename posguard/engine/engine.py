"""The transaction engine: write-ahead, one state chart, store-and-forward, detectors.

Every operation follows the same procedure:

1. flush pending reversals/advices first; refuse new transactions while one is pending (policy);
2. journal the transaction, its STAN, the request (masked) and the **armed** reversal in one commit;
3. journal ``sent``, then hand the request to the :class:`~posguard.engine.ports.HostLink`;
4. journal the outcome in one commit (response, new state, reversal disarmed or released);
5. run the detectors and journal what they find.

Sign-on (:mod:`posguard.engine.signon`): before anything is sent, the engine signs on when the host
demanded it or, with ``EnginePolicies.sign_on_at_start``, once per engine start.

Settlement (:meth:`TransactionEngine.settle`, :mod:`posguard.engine.settlement`) closes the batch as the
acquirer's procedure says (0500, uploads, batch end).

``kill_points`` (a callable taking a point name) is invoked at every state transition, before and after
every journal commit and before and after every send, so a test can crash the process at each point.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from posguard.card import CardData
from posguard.clock import Clock, SystemClock
from posguard.engine.chart import APPROVED_OPEN, CHART, IN_DOUBT, IllegalTransition
from posguard.engine.cryptograms import CryptogramLedger, chip_facts
from posguard.engine.declines import decline_message
from posguard.engine.detectors import Detection, Detectors
from posguard.engine.errors import (
    CorrectionRefused,
    JournalUnavailable,
    RefundExceedsOriginal,
    RequestRefused,
    SettlementBlocked,
    SignOnFailed,
    TransactionsBlocked,
    WrongCard,
)
from posguard.engine.journal import Journal, SafRecord, TxnRecord
from posguard.engine.keys import TerminalMasterKey, WorkingKeys
from posguard.engine.localtime import host_date_of
from posguard.engine.observe import Exchange, ExchangeListener, Observers
from posguard.engine.ports import HostError, HostLink, InvalidResponse, WireImaging
from posguard.engine.profiles import Fields, Profile, get_profile
from posguard.engine.redact import masked_json, masked_message
from posguard.engine.saf import SafPolicy, StoreAndForward
from posguard.engine.sealing import Sealer
from posguard.engine.settlement import Settlement, SettlementResult
from posguard.engine.signon import SignOn, SignOnResult
from posguard.iso8583.errors import Iso8583Error
from posguard.sensitive import Pan, mask_digits_in_text

if TYPE_CHECKING:
    from posguard.iso8583.message import Message

__all__ = ["TransactionEngine", "TerminalConfig", "EnginePolicies", "TxnResult", "SettlementResult",
           "RecoveryReport", "SignOnResult"]

KillHook = Callable[[str], None]
_REASON_TIMEOUT, _REASON_INCOMPLETE, _REASON_OTHER = "98", "96", "06"
#: reversal reason after the card declined at the second GENERATE AC: CUP field 39 of the 0400 "06" (other;
#: pos-flows.md §B: 98 timeout, 96 could not complete, 06 other, A0 bad MAC; "a card decline at the 2nd
#: GENERATE AC also triggers a reversal"). The ISO dialects carry no reason on the 0400 (field 90 only).
REASON_CARD_DECLINED = _REASON_OTHER
#: journal events of a chip sale's second GENERATE AC (see :meth:`TransactionEngine.card_completed`)
SECOND_GAC_PENDING, CARD_COMPLETED = "second_gac_pending", "card_completed"
#: the kinds a zero amount is refused for: they charge or give back money (a pre-authorisation of 0 checks the card)
_MOVES_MONEY = frozenset({"sale", "refund", "completion"})


def _refuse_no_money(kind: str, amount: int) -> None:
    """A sale, refund or completion must move money: an amount of 0 (or less) is refused before anything is
    journaled or sent."""
    if amount <= 0 and kind in _MOVES_MONEY:
        raise CorrectionRefused(f"a {kind} of {amount} moves no money: its amount is minor units >= 1 (nothing was "
                                "sent)")


@dataclass(frozen=True, repr=False)
class TerminalConfig:
    """Identity and keys of this terminal. Keys never appear in ``repr``."""

    terminal_id: str
    merchant_id: str
    token_key: bytes
    data_key: bytes
    currency: str = "CNY"
    host_timeout: float = 30.0
    #: the terminal master key: with it, the working keys of a sign-on are verified and kept (sealed)
    tmk: TerminalMasterKey | None = None
    #: terminal.timezone (IANA; "" = the box's zone): fields 12/13 in local time, the journal stays UTC
    timezone: str = ""

    def __repr__(self) -> str:
        return f"TerminalConfig(terminal_id={self.terminal_id!r}, merchant_id={self.merchant_id!r}, keys=<hidden>)"


@dataclass(frozen=True)
class EnginePolicies:
    saf: SafPolicy = field(default_factory=SafPolicy)
    send_reversal_immediately: bool = True  # try the reversal right after a timeout, not only before the next sale
    signature_deadline: float = 300.0  # seconds after approval
    void_same_batch_only: bool = True
    sign_on_at_start: bool = False  # sign on (0800) before the first message of each engine start
    key_max_age: float | None = None  # with a TMK: sign on again when the working keys are this many seconds old
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
        return self.state in APPROVED_OPEN


@dataclass
class RecoveryReport:
    abandoned: list[str] = field(default_factory=list)
    reversals_released: list[str] = field(default_factory=list)
    advices_released: list[str] = field(default_factory=list)
    interrupted_saf: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    still_pending: list[int] = field(default_factory=list)
    #: transactions recovery could not act on: left as they are, each with a ``quarantined`` incident
    quarantined: list[str] = field(default_factory=list)


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
        self._signon = SignOn(self)
        self._settlement = Settlement(self)
        #: single-use cryptograms and 9F02 = field 4, checked before anything is journaled
        self.cryptograms = CryptogramLedger(journal, terminal.token_key)
        self._signed_on = False  # in this engine start (the host's demand itself is durable in the journal)
        #: the working keys of the last good sign-on (None until one brought keys this engine can verify)
        self.working_keys: WorkingKeys | None = None
        #: transactions whose host answer could not be journaled: their reversal is owed (txn id -> error)
        self.owed_reversals: dict[str, str] = {}
        #: the last journal write failure while it lasts (status, diagnose), else None
        self.write_failure: str | None = None
        #: who watches what crosses the wire (capture writers, flows collecting evidence): see ``observe``
        self.observers = Observers()
        self._wire = _HostWatch(self)

    # -- observation ------------------------------------------------------------------------------
    def add_exchange_listener(self, listener: ExchangeListener) -> None:
        """Call ``listener`` with every :class:`~posguard.engine.observe.Exchange` from now on."""
        self.observers.add(listener)

    def remove_exchange_listener(self, listener: ExchangeListener) -> None:
        self.observers.remove(listener)

    def recording(self) -> AbstractContextManager[list[Message]]:
        """``with engine.recording() as sent:`` — the requests the engine sends while the block runs."""
        return self.observers.recording()

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
        self._repair_journal(what, settlement=settlement)
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

    # -- sign-on (posguard.engine.signon) --------------------------------------------------------------
    @property
    def sign_on_due(self) -> str | None:
        """Why a sign-on must precede the next message, or None."""
        return self._signon.due()

    def _ensure_signed_on(self, what: str) -> None:
        self._signon.ensure(what)

    def sign_on(self, *, reason: str = "operator", before: str = "") -> SignOnResult:
        """Send a 0800 sign-on and journal it; raise :class:`SignOnFailed` unless the host answers 00."""
        return self._signon.sign_on(reason=reason, before=before)

    def sign_off(self, *, reason: str = "shutdown", timeout: float | None = None) -> SignOnResult | None:
        """The sign-off at a clean shutdown (see :mod:`posguard.engine.signon`); None when not signed on.
        ``timeout``: how long to wait for the host's answer (default the host timeout)."""
        return self._signon.sign_off(reason=reason, timeout=timeout)

    def _host_demands_sign_on(self, response: Message) -> None:
        """Any response may say "sign on again" (RC 77, CUP header 3): journal it durably."""
        self._signon.host_demands(response)

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
                      if c.kind == "void" and c.state in IN_DOUBT]
        if open_voids:
            raise CorrectionRefused(f"void {open_voids[0].id} of {original_id} is still unresolved; wait for its "
                                    "reversal to be acknowledged before voiding again")
        card = self._same_card(original, card)
        return self._online("void", card, original.amount_minor, original.currency, original.order_ref, original)

    def refund(self, original_id: str, amount_minor: int, card: CardData | None = None) -> TxnResult:
        """Refund part or all of an approved (possibly settled) sale; refunds never exceed the original."""
        _refuse_no_money("refund", amount_minor)  # before the refund-left check, which would call 0 "too much"
        original = self.journal.get_txn(original_id)
        event = "refund_full" if amount_minor >= original.amount_minor - original.refunded_minor else "refund_partial"
        self._check(original, event)
        in_flight = sum(c.amount_minor for c in self.journal.children(original_id)
                        if c.kind == "refund" and c.state in ("request_journaled", "sent", "timed_out"))
        left = original.amount_minor - original.refunded_minor - in_flight
        if amount_minor > left:
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

    # -- the card's second GENERATE AC (EMV Book 3 §10; emv-keys.md (A) 8-10) ---------------------------------
    def _awaits_card(self, txn: TxnRecord, card: CardData | None) -> bool:
        return card is not None and card.second_gac and self.profile.spec(txn.kind).reversible

    def awaiting_card(self, txn_id: str) -> bool:
        """True while ``txn_id`` was approved by the host and the card's second GENERATE AC is not journaled."""
        rows = self.journal.query("SELECT kind FROM events WHERE txn_id = ? AND kind IN (?, ?) ORDER BY id",
                                  (txn_id, SECOND_GAC_PENDING, CARD_COMPLETED))
        return bool(rows) and rows[-1]["kind"] == SECOND_GAC_PENDING

    def card_completed(self, txn_id: str, *, cryptogram_type: str, atc: int | None = None,
                       field55: bytes = b"", script_results: bytes = b"") -> TxnResult:
        """The card answered the second GENERATE AC with a TC: journal it and disarm the sale's reversal.

        ``field55`` is the final tag set (the TC and the issuer script results 9F5B) that the TC upload and the
        batch upload carry (CUP 0320, 60.3 = 203); it is kept sealed as the card result the uploads read
        (:mod:`posguard.engine.card_results`, :meth:`final_field55`). A declined sale's card answer (AAC) is
        journaled the same way.
        """
        txn = self.journal.get_txn(txn_id)
        if cryptogram_type == "AAC" and txn.state in APPROVED_OPEN and self.awaiting_card(txn_id):
            return self.card_declined(txn_id, final_icc=field55, script_results=script_results)
        with self._atomic(CARD_COMPLETED):
            armed = self.saf.armed_for(txn.id)
            if armed is not None and self.awaiting_card(txn_id):
                self.saf.disarm(armed.id)
            if field55:
                from posguard.engine.card_results import record_card_result

                record_card_result(self.journal, self.sealer, txn, field55, script_results or None)
            self.journal.record_event(CARD_COMPLETED, txn_id=txn.id, detail={
                "cryptogram": cryptogram_type, "atc": atc, "script_results": script_results.hex().upper()})
        return self._result(txn, f"card answered {cryptogram_type}")

    def final_field55(self, txn_id: str) -> bytes | None:
        """The sale's field 55 after the second GENERATE AC (TC, 9F5B), unsealed for a TC/batch upload."""
        from posguard.engine.card_results import card_result

        result = card_result(self.journal, self.sealer, txn_id)
        return result.field55 if result is not None else None

    def card_declined(self, txn_id: str, *, reason: str = REASON_CARD_DECLINED, why: str | None = None,
                      final_icc: bytes = b"", script_results: bytes = b"") -> TxnResult:
        """The host approved but the card answered AAC at the second GENERATE AC (or never answered: a crash,
        the card pulled): the sale must be reversed (pos-flows.md §B reversal mechanics; emv-keys.md (A) 9).

        The reversal armed before the request was sent is released with ``reason`` (CUP field 39 "06"); a sale
        sent without one armed is reversed from the journal (:meth:`reverse`). Journals an incident
        ``card_declined_after_approval``; the reversal goes out at once (and before the next transaction).
        ``final_icc`` is the card's answer to the second GENERATE AC (its final tag set, with 9F5B): the
        reversal's field 55 is then cut from it, not from the first GENERATE AC's request
        (:mod:`posguard.engine.card_reversal`); without it (the card never answered) the request's is kept.
        """
        txn = self.journal.get_txn(txn_id)
        self._check(txn, "card_declined")
        text = why or (f"{txn.kind} {txn.id} STAN {txn.stan}: the host approved (auth {txn.auth_code or '-'}) but "
                       "the card declined at the second GENERATE AC (AAC); the sale is reversed")
        with self._atomic("card_declined"):
            self._reverse_for_card(txn, reason, text, cryptogram="AAC",
                                   icc=self._card_reversal_icc(final_icc, script_results))
        self.detectors.unsigned.signed(txn.id)  # a reversed sale owes no signature
        self._flush()
        return self._result(self.journal.get_txn(txn_id), "card declined after approval: reversal "
                            + ("acknowledged" if self.journal.get_txn(txn_id).state == "reversed" else "queued"))

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
        _refuse_no_money(kind, amount)
        chip = self.cryptograms.check(card, amount, kind)  # refused here: nothing journaled, nothing sent
        self._clear_to_send(f"new {kind}")
        spec = self.profile.spec(kind)
        now = self.clock.now()
        with self._atomic("request_journaled"):
            txn = self._create(kind, card, amount, currency, order_ref, original, now)
            if chip is not None and card is not None:
                self.cryptograms.record(txn.id, card, chip)
            stan = self.journal.allocate_stan()
            fields = self._request_fields(kind, card, amount, currency, stan, txn.batch_no or 0, now, original)
            request = self._encodable(kind, spec.mti, fields)  # raises before the commit: nothing journaled or armed
            self.journal.record_message(direction="out", mti=spec.mti, masked=masked_json(spec.mti, fields, self.profile.dialect),
                                        stan=stan, txn_id=txn.id)
            if spec.reversible:
                saf_id = self.saf.arm("reversal", txn.id, "0400",
                                      self._reversal_from_request(spec.mti, fields), _REASON_TIMEOUT)
            else:
                # the repeat copy keeps no track data or PIN block (kept sealed, sent after the authorisation)
                saf_id = self.saf.arm("advice", txn.id, spec.mti,
                                      {k: v for k, v in fields.items() if k not in self.profile.reversal_strip})
            self._fire(txn, "journal_request", stan=stan)
        with self._atomic("sent"):
            self._fire(txn, "send", sent_at=self.clock.now())
        self._kill(f"host.before_send:{spec.mti}")
        try:
            response = self._wire.exchange(request, timeout=self.terminal.host_timeout)
        except HostError as exc:
            self._kill(f"host.after_send:{spec.mti}")
            failure = exc
            return self._after_send(txn, lambda: self._outcome_unknown(txn, saf_id, failure, spec.reversible))
        self._kill(f"host.after_send:{spec.mti}")
        return self._after_send(txn, lambda: self._outcome(txn, saf_id, response, card, original))

    # -- the journal cannot be written after a send ------------------------------------------------------
    def _after_send(self, txn: TxnRecord, journal_outcome: Callable[[], TxnResult]) -> TxnResult:
        """Journal what the host said. When the journal cannot be written (disk full, I/O error) the answer is
        not acted on: the transaction's reversal is owed (kept in memory, written as soon as the journal works)
        and nothing new goes out until then — the armed reversal is already durable from before the send."""
        try:
            return journal_outcome()
        except (sqlite3.Error, OSError) as exc:
            self.owed_reversals[txn.id] = f"{type(exc).__name__}: {exc}"
            self.write_failure = self.owed_reversals[txn.id]
            raise JournalUnavailable(
                f"{txn.kind} {txn.id}: the host's answer could not be written to the journal ({exc}); it is "
                "treated as not approved and will be reversed as soon as the journal can be written again "
                "(free disk space, check the storage). Nothing new is sent until then.", txn_ids=(txn.id,)) from exc

    def _repair_journal(self, what: str, *, settlement: bool) -> None:
        """Write what a journal failure left owed; refuse ``what`` while the journal still cannot be written."""
        if not self.owed_reversals:
            return
        try:
            with self._atomic("journal_repaired"):
                for txn_id, why in self.owed_reversals.items():
                    txn = self.journal.get_txn(txn_id)
                    if txn.state in ("request_journaled", "sent"):
                        self._fire(txn, "recover")
                    armed = self.saf.armed_for(txn_id)
                    if armed is not None:
                        self.saf.release(armed.id, _REASON_TIMEOUT)
                    self.journal.record_incident(
                        "journal_write_failed", f"{txn.kind} {txn_id}: the host's answer could not be journaled "
                        f"({why}); the journal works again and the transaction is reversed", severity="critical",
                        txn_id=txn_id, detail={"error": why})
        except (sqlite3.Error, OSError) as exc:
            self.write_failure = f"{type(exc).__name__}: {exc}"
            cls = SettlementBlocked if settlement else TransactionsBlocked
            raise cls(f"{what} refused: the journal still cannot be written ({exc}); {len(self.owed_reversals)} "
                      "reversal(s) are owed and kept in memory. Free disk space or check the storage; the write "
                      "is retried before the next transaction.", pending_ids=(), retry_in=None) from exc
        self.owed_reversals.clear()
        self.write_failure = None

    def _encodable(self, kind: str, mti: str, fields: Fields) -> Message:
        """The request, once it is known to encode — refused (with the reversal it arms) when the dialect cannot
        encode it: it could never be sent, and a reversal that can never be sent would block the terminal."""
        try:
            request = self.profile.message(mti, fields)
            request.encode()
            if self.profile.spec(kind).reversible:
                rev = self.profile.reversal_fields(mti, fields, reason=_REASON_TIMEOUT, stan=None)
                self.profile.message("0400", rev).encode()
            return request
        except Iso8583Error as exc:
            raise RequestRefused(f"{kind} refused before sending: {exc.reason} (field {exc.path or '?'}); "
                                 "nothing was journaled or sent — check the amount and card data entered",
                                 field=exc.path or None) from None

    def _request_fields(self, kind: str, card: CardData | None, amount: int, currency: str, stan: int,
                        batch_no: int, now: float, original: TxnRecord | None) -> Fields:
        """The one request builder: what a ``kind`` request carries, from the profile and this terminal."""
        return self.profile.request_fields(
            kind, card=card, amount_minor=amount, currency=currency, stan=stan, batch_no=batch_no,
            terminal_id=self.terminal.terminal_id, merchant_id=self.terminal.merchant_id, now=now,
            original=original, timezone=self.terminal.timezone or None,
            original_host_date=host_date_of(self.journal, original.id) if original is not None else None)

    def preview(self, kind: str, amount_minor: int, *, original: TxnRecord | None = None,
                card: CardData | None = None, currency: str | None = None) -> Message:
        """The ``kind`` request the engine would send now (next STAN, current batch), built by the same builder
        as a real one; nothing is journaled or sent (a correction's dry run shows it)."""
        stan = self.journal.peek_counter("stan") % 999_999 + 1
        fields = self._request_fields(kind, card, amount_minor, currency or self.terminal.currency, stan,
                                      self.journal.current_batch(), self.clock.now(), original)
        return self.profile.message(self.profile.spec(kind).mti, fields)

    def _create(self, kind: str, card: CardData | None, amount: int, currency: str, order_ref: str | None,
                original: TxnRecord | None, now: float) -> TxnRecord:
        txn_id = self.journal.next_txn_id(self.terminal.terminal_id)
        sealed = None
        if card is not None:
            sealed = self.sealer.seal({"pan": card.pan.reveal(), "expiry": card.expiry,
                                       **({"psn": card.pan_sequence} if card.pan_sequence else {})}, f"card:{txn_id}")
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
            merchant_id=txn.merchant_id or self.terminal.merchant_id, now=txn.created_at, original=original,
            timezone=self.terminal.timezone or None)
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
        reason = exc.reversal_reason  # 98 timeout, A0 bad MAC, 96 otherwise
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
            if rc == "00" and self._awaits_card(txn, card):
                # the card has not said yes yet (2nd GENERATE AC): the armed reversal stays armed, so a crash
                # before the card's answer is journaled reverses the sale at recovery (pos-flows.md §B)
                self.journal.record_event(SECOND_GAC_PENDING, txn_id=txn.id, detail={"saf_id": saf_id})
            else:
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
            message = self._signon.signed_on_again(txn.kind)  # signs on now; the card is presented again
        else:
            message = decline_message(rc, self.profile.codec_dialect)
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

    # -- queue, recovery -------------------------------------------------------------------------------
    def flush(self, *, wait: bool = False) -> list[int]:
        """Send queued reversals/advices now; returns the ids still pending."""
        return self._flush(wait=wait)

    def recover(self) -> RecoveryReport:
        """On start: finish what a crash interrupted, then send the queue."""
        report = RecoveryReport()
        with self._atomic("recover"):
            for txn in self.journal.txns_in_states(["created", "card_read"]):
                try:
                    with self.journal.savepoint(f"abandon_{txn.id}"):
                        self._fire(txn, "abandon")
                    report.abandoned.append(txn.id)
                except Exception as exc:  # noqa: BLE001 - no poison pill
                    self._quarantine_txn(txn, exc, report)
            for txn in self.journal.txns_in_states(["request_journaled", "sent", "timed_out", "response_invalid"]):
                try:
                    with self.journal.savepoint(f"recover_{txn.id}"):
                        self._recover_in_flight(txn, report)
                except Exception as exc:  # noqa: BLE001 - no poison pill: one bad row never stops the terminal
                    self._quarantine_txn(txn, exc, report)
            for item in self.journal.saf_items(["armed"]):  # armed for an answered transaction: withdraw
                if item.txn_id is not None and self._second_gac_interrupted(item.txn_id):
                    continue  # approved, but the card never answered the 2nd GENERATE AC: reversed below
                self.saf.disarm(item.id)
            for txn_id in self._cards_never_answered():
                try:
                    with self.journal.savepoint(f"card_{txn_id}"):
                        self._reverse_unanswered_card(txn_id, report)
                except Exception as exc:  # noqa: BLE001 - no poison pill
                    self._quarantine_txn(self.journal.get_txn(txn_id), exc, report)
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

    def _recover_in_flight(self, txn: TxnRecord, report: RecoveryReport) -> None:
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

    def _second_gac_interrupted(self, txn_id: str) -> bool:
        return self.journal.get_txn(txn_id).state in APPROVED_OPEN and self.awaiting_card(txn_id)

    def _cards_never_answered(self) -> list[str]:
        rows = self.journal.query("SELECT DISTINCT txn_id FROM events WHERE kind = ?", (SECOND_GAC_PENDING,))
        return [str(r["txn_id"]) for r in rows if self._second_gac_interrupted(str(r["txn_id"]))]

    def _reverse_unanswered_card(self, txn_id: str, report: RecoveryReport) -> None:
        """Recovery: the host approved ``txn_id`` but the terminal stopped before the card's second GENERATE AC
        was journaled. Without a TC the sale cannot stand: release its armed reversal (as a card decline)."""
        txn = self.journal.get_txn(txn_id)
        self._reverse_for_card(txn, REASON_CARD_DECLINED, f"{txn.kind} {txn.id} STAN {txn.stan}: approved by the "
                               "host, but the terminal stopped before the card's second GENERATE AC; without the "
                               "card's TC the sale is reversed", cryptogram=None, recovered=True)
        report.reversals_released.append(txn.id)

    def _card_reversal_icc(self, final_icc: bytes, script_results: bytes) -> str | bytes | None:
        """Field 55 of a reversal after the card's AAC, as the dialect encodes it; None without the card's
        answer, or when it holds none of the reversal's tags (the request's field 55 stays)."""
        if not final_icc:
            return None
        from posguard.engine.card_reversal import final_reversal_icc

        try:
            icc = final_reversal_icc(self.profile.reversal_icc_tags, final_icc, script_results)
        except Iso8583Error:  # the card's answer does not parse: the reversal still goes, with the request's 55
            return None
        if not icc:
            return None
        return icc if self.profile.binary_icc else icc.hex().upper()

    def _reverse_for_card(self, txn: TxnRecord, reason: str, text: str, *, cryptogram: str | None,
                          recovered: bool = False, icc: str | bytes | None = None) -> None:
        """Inside a commit: release the sale's armed reversal (or queue one rebuilt from the journal), move the
        sale to ``reversal_pending``, journal the card's answer and the incident. ``icc``: the reversal's field
        55 from the card's final answer (None: the one cut from the request)."""
        armed = self.saf.armed_for(txn.id)
        if armed is not None:
            self.saf.release(armed.id, reason, icc=icc)
        else:
            fields = self._reversal_fields_for(txn, reason)
            if icc is not None:
                fields["55"] = icc
            self.saf.enqueue("reversal", txn.id, "0400", fields, reason)
        self._fire(txn, "card_declined")
        extra = {"recovered": True} if recovered else {}
        self.journal.record_event(CARD_COMPLETED, txn_id=txn.id, detail={"cryptogram": cryptogram, **extra})
        self.journal.record_incident("card_declined_after_approval", text, severity="warning", txn_id=txn.id,
                                     detail={"stan": txn.stan, "reason": reason, **extra})

    def _quarantine_txn(self, txn: TxnRecord, exc: BaseException, report: RecoveryReport) -> None:
        """A row recovery cannot act on: keep it as it is (the evidence) and tell the operator, once."""
        report.quarantined.append(txn.id)
        if any(r["txn_id"] == txn.id for r in self.journal.incidents("quarantined")):
            return
        why = mask_digits_in_text(f"{type(exc).__name__}: {exc}")[:300]
        self.journal.record_incident(
            "quarantined", f"{txn.kind} {txn.id} ({txn.state}) could not be recovered ({why}); it is left as it is "
            "and the terminal goes on. Call the acquirer with its STAN/RRN to learn whether the charge stands",
            severity="critical", txn_id=txn.id, detail={"state": txn.state, "kind": txn.kind, "error": why})

    # -- the card's final decision (posguard.engine.card_results) ---------------------------------------
    def record_card_result(self, txn_id: str, field55_final: bytes, script_results: bytes | None = None) -> None:
        """Keep the card's answer to the second GENERATE AC of ``txn_id`` for the settlement uploads: the sale
        tag set with the final cryptogram (9F26 with 9F27 = 40 for a TC) and the issuer script results (9F5B
        value), sealed. Raises :class:`~posguard.engine.card_results.CardResultRefused` for a transaction
        that is not a card payment or field 55 without a cryptogram."""
        from posguard.engine.card_results import record_card_result

        with self._atomic("card_result"):
            record_card_result(self.journal, self.sealer, self.journal.get_txn(txn_id), field55_final,
                               script_results)

    # -- settlement (posguard.engine.settlement) -------------------------------------------------------
    def batch_totals(self, batch_no: int | None = None) -> dict[str, int]:
        return self._settlement.totals(batch_no)

    def settle(self) -> SettlementResult:
        """Close the batch as the acquirer's procedure says (see :mod:`posguard.engine.settlement`).

        Raises :class:`SettlementBlocked` (the batch stays open, run settlement again) when the queue is not
        empty, the 0500 or the batch end gets no acknowledgement, or an upload still fails after
        ``EnginePolicies.upload_attempts`` tries. Uploads already acknowledged are not sent again.
        """
        return self._settlement.settle()

    # -- helpers -----------------------------------------------------------------------------------
    def _card_of(self, txn: TxnRecord) -> CardData | None:
        if txn.card_sealed is None:
            return None
        data = self.sealer.open(txn.card_sealed, f"card:{txn.id}")
        return CardData(Pan(data["pan"]), txn.pan_token or "", expiry=data.get("expiry"), entry_mode="manual",
                        scheme=txn.scheme)

    def _same_card(self, original: TxnRecord, card: CardData | None) -> CardData | None:
        """The card presented for a void/refund of ``original`` (it proves the card; a chip cryptogram it carries
        that was already sent is left out: an AC is never sent twice), or the sealed card of the original."""
        if card is None:
            return self._card_of(original)
        if original.pan_token and card.pan_token != original.pan_token:
            raise WrongCard(f"card {card.pan_masked} is not the card of {original.id} ({original.pan_masked}); "
                            "present the original card (the host would answer RC 14)")
        facts = chip_facts(card.field55) if card.field55 else None
        if facts is not None and facts.cryptogram is not None and self.cryptograms.used_by(card, facts) is not None:
            return replace(card, field55=b"", second_gac=False)
        return card

    def _result(self, txn: TxnRecord, message: str, detections: tuple[Detection, ...] = ()) -> TxnResult:
        txn = self.journal.get_txn(txn.id)
        return TxnResult(txn.id, txn.kind, txn.state, txn.response_code, txn.stan, txn.rrn, txn.auth_code,
                         message, detections)


class _HostWatch:
    """The engine's view of its link: tells the exchange listeners what crosses the wire, and checks every
    response for a sign-on demand (RC 77, CUP header 3) unless ``demands`` is off (the sign-on itself)."""

    def __init__(self, engine: TransactionEngine) -> None:
        self._engine = engine

    def exchange(self, request: Message, *, timeout: float, demands: bool = True) -> Message:
        observers = self._engine.observers
        link = self._engine.link
        observers.notify(Exchange("sent", link.wire_image(request) if isinstance(link, WireImaging) else request))
        try:
            response = self._engine.link.exchange(request, timeout=timeout)
        except HostError as exc:
            observers.notify(Exchange("failed", request, error=exc))
            raise
        observers.notify(Exchange("received", request, response))
        if demands:
            self._engine._host_demands_sign_on(response)
        return response
