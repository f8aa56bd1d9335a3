"""Store-and-forward: reversals and advices that must reach the host, in order, exactly until acknowledged.

Life of a reversal (the chart's ``reversal`` kind):

1. **armed** in the same commit that journals the original request — before the request is sent;
2. **disarmed** when the original's response arrives (or the link failed before sending), or
   **queued** (released) when the outcome is unknown (timeout, invalid response, crash);
3. sent before the next transaction and before settlement, as 0400 first and 0401 on repeats, with
   exponential backoff on the (virtual) clock, until the host answers a done code (reversal: 00, 12, 25);
4. **expired** after ``max_attempts`` or ``expiry``: an incident is raised and the transaction is marked
   for manual follow-up.

Advices (0220/0420, repeats 0221/0421) use the same queue. Items are sent strictly in queue order.
The message copy is sealed (AES-GCM) because it carries field 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from posguard.clock import Clock
from posguard.engine.chart import CHART
from posguard.engine.journal import Journal, SafRecord
from posguard.engine.ports import HostError, HostLink
from posguard.engine.profiles import Fields, Profile
from posguard.engine.redact import masked_json, masked_message
from posguard.engine.sealing import Sealer, SealError
from posguard.iso8583.errors import Iso8583Error
from posguard.sensitive import mask_digits_in_text

__all__ = ["SafPolicy", "StoreAndForward", "FlushReport", "PENDING_STATES"]

PENDING_STATES = ("queued", "sent")
KillHook = Callable[[str], None]
ItemCallback = Callable[[SafRecord, str | None], None]


@dataclass(frozen=True)
class SafPolicy:
    """Knobs of the queue (defaults follow pos-flows.md §D: 1, 2, 4, 8 .. s backoff; PayEx manual after 6)."""

    max_attempts: int | None = 6  # None: never give up (MAB behaviour)
    expiry: float | None = 48 * 3600.0  # seconds after queueing; None: no expiry
    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    timeout: float = 30.0  # per attempt
    block_new_transactions: bool = True

    def backoff(self, attempts: int) -> float:
        """Delay before the next attempt after ``attempts`` failed ones."""
        return float(min(self.backoff_max, self.backoff_initial * self.backoff_factor ** max(0, attempts - 1)))


@dataclass
class FlushReport:
    attempts: int = 0
    acknowledged: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    remaining: list[int] = field(default_factory=list)
    retry_in: float | None = None

    @property
    def clear(self) -> bool:
        return not self.remaining


class StoreAndForward:
    """The persistent queue. ``on_done``/``on_expired`` run inside the commit that closes the item."""

    def __init__(
        self, journal: Journal, sealer: Sealer, profile: Profile, clock: Clock, policy: SafPolicy | None = None,
        *, kill: KillHook | None = None, on_done: ItemCallback | None = None, on_expired: ItemCallback | None = None,
    ) -> None:
        self.journal = journal
        self.sealer = sealer
        self.profile = profile
        self.clock = clock
        self.policy = policy or SafPolicy()
        self._kill = kill or (lambda _p: None)
        self.on_done = on_done
        self.on_expired = on_expired

    # -- state changes (must run inside journal.atomic) ----------------------------------------------
    def _fire(self, item: SafRecord, event: str, **updates: object) -> None:
        new = CHART.next_state(item.kind, item.state, event, txn_id=f"saf:{item.id}")
        self._kill(f"state:{item.kind}.{event}")
        self.journal.record_transition("saf", str(item.id), item.kind, item.state, event, new)
        self.journal.saf_update(item.id, state=new, **updates)
        item.state = new
        for k, v in updates.items():
            setattr(item, k, v)

    def _insert(self, kind: str, txn_id: str | None, mti: str, fields: Fields, reason: str | None) -> SafRecord:
        now = self.clock.now()
        expires = now + self.policy.expiry if self.policy.expiry is not None else None
        saf_id = self.journal.saf_insert(kind=kind, txn_id=txn_id, state="created", mti=mti, sealed=b"",
                                         reason=reason, next_at=now, expires_at=expires)
        sealed = self.sealer.seal(_encode_fields(fields), f"saf:{saf_id}")
        self.journal.saf_update(saf_id, sealed=sealed)
        self.journal.record_transition("saf", str(saf_id), kind, "-", "create", "created")
        return self.journal.saf_get(saf_id)

    def arm(self, kind: str, txn_id: str, mti: str, fields: Fields, reason: str | None = None) -> int:
        """Arm a reversal/advice for ``txn_id``; it stays held until released or disarmed."""
        item = self._insert(kind, txn_id, mti, fields, reason)
        self._fire(item, "arm")
        return item.id

    def release(self, saf_id: int, reason: str | None = None, *, attempts_so_far: int = 0,
                icc: str | bytes | None = None) -> None:
        """The original's outcome is unknown: queue the armed item for sending now.

        When the reason is now known to differ from the one assumed at arming time, and the dialect carries
        the reason on the wire (CUP puts it in field 39 of the 0400), the sealed copy is re-sealed with it
        in the same journal transaction, so the message sent says why. ``icc`` (when given) replaces field 55
        the same way: a reversal after a card decline carries the card's final answer
        (:mod:`posguard.engine.card_reversal`).
        """
        item = self.journal.saf_get(saf_id)
        changed: Fields | None = None
        if reason and reason != item.reason:
            fields = self.fields_of(item)
            if "39" in fields and fields["39"] != reason:
                fields["39"] = reason
                changed = fields
        if icc is not None:
            changed = changed if changed is not None else self.fields_of(item)
            changed["55"] = icc
        if changed is not None:
            self.journal.saf_update(saf_id, sealed=self.sealer.seal(_encode_fields(changed), f"saf:{saf_id}"))
        self._fire(item, "release", next_at=self.clock.now(), attempts=attempts_so_far,
                   reason=reason or item.reason)

    def disarm(self, saf_id: int) -> None:
        item = self.journal.saf_get(saf_id)
        if item.state == "armed":
            self._fire(item, "disarm")

    def enqueue(self, kind: str, txn_id: str | None, mti: str, fields: Fields, reason: str | None = None) -> int:
        """Queue an advice (or a reversal decided after the fact) for sending."""
        item = self._insert(kind, txn_id, mti, fields, reason)
        self._fire(item, "enqueue")
        return item.id

    def requeue_interrupted(self) -> list[int]:
        """After a restart: items caught in ``sent`` go back to ``queued`` (their next send is a repeat)."""
        ids = []
        for item in self.journal.saf_items(["sent"]):
            self._fire(item, "retry", last_error="interrupted by restart")
            ids.append(item.id)
        return ids

    # -- queries --------------------------------------------------------------------------------
    def pending(self, kinds: tuple[str, ...] | None = None) -> list[SafRecord]:
        items = self.journal.saf_items(PENDING_STATES)
        return items if kinds is None else [i for i in items if i.kind in kinds]

    def armed_for(self, txn_id: str) -> SafRecord | None:
        items = self.journal.saf_items(["armed"], txn_id=txn_id)
        return items[-1] if items else None

    def fields_of(self, item: SafRecord) -> Fields:
        return _decode_fields(self.sealer.open(item.sealed, f"saf:{item.id}"))

    # -- sending --------------------------------------------------------------------------------
    def flush(self, link: HostLink, *, wait: bool = False, kinds: tuple[str, ...] | None = None) -> FlushReport:
        """Send pending items in order. Without ``wait``, stop at the first item whose backoff has not
        elapsed; with ``wait``, sleep (on the clock) until each is due or done. ``kinds`` limits the flush
        (settlement sends every reversal before any advice)."""
        report = FlushReport()
        for item in self.pending(kinds):
            while item.state in PENDING_STATES:
                now = self.clock.now()
                if item.expires_at is not None and now >= item.expires_at:
                    self._expire(item, "expired before it could be acknowledged")
                    report.expired.append(item.id)
                    break
                if item.next_at > now:
                    if not wait:
                        report.remaining = [i.id for i in self.pending(kinds)]
                        report.retry_in = item.next_at - now
                        return report
                    self.clock.sleep(item.next_at - now)
                    continue
                report.attempts += 1
                self._attempt(link, item)
                if item.state == "acknowledged":
                    report.acknowledged.append(item.id)
                elif item.state == "expired":
                    report.expired.append(item.id)
        report.remaining = [i.id for i in self.pending(kinds)]
        return report

    def _attempt(self, link: HostLink, item: SafRecord) -> None:
        attempts = item.attempts + 1
        mti = item.mti if attempts == 1 else self.profile.repeat_of(item.mti)
        try:  # a copy that can never be sent is quarantined, never retried for ever (and never a crash loop)
            fields = self.fields_of(item)
            request = self.profile.message(mti, fields)
            request.encode()
        except (SealError, Iso8583Error, ValueError, KeyError, TypeError) as exc:
            self.quarantine(item, exc)
            return
        with self.journal.atomic(f"saf.send.{item.kind}"):
            if item.state == "queued":
                self._fire(item, "send", attempts=attempts)
            else:
                self.journal.saf_update(item.id, attempts=attempts)
                item.attempts = attempts
            self.journal.record_message(direction="out", mti=mti, masked=masked_json(mti, fields, self.profile.dialect),
                                        stan=_stan(fields), txn_id=item.txn_id, saf_id=item.id)
        self._kill(f"host.before_send:{mti}")
        rc: str | None = None
        error: str | None = None
        response = None
        try:
            response = link.exchange(request, timeout=self.policy.timeout)
            rc = response.response_code
        except HostError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._kill(f"host.after_send:{mti}")
        done_codes = self.profile.reversal_done_codes if item.kind == "reversal" else self.profile.advice_done_codes
        with self.journal.atomic(f"saf.result.{item.kind}"):
            if response is not None:
                self.journal.record_message(direction="in", mti=response.mti, masked=masked_message(response),
                                            stan=response.stan, txn_id=item.txn_id, saf_id=item.id)
            if rc is not None and rc in done_codes:
                self._fire(item, "acknowledge", last_rc=rc, last_error=None)
                if self.on_done is not None:
                    self.on_done(item, rc)
                return
            give_up = self.policy.max_attempts is not None and attempts >= self.policy.max_attempts
            if give_up:
                self._fire(item, "retry", last_rc=rc, last_error=error)
                self._expire(item, f"no acknowledgement after {attempts} attempts (last: {rc or error})")
            else:
                self._fire(item, "retry", last_rc=rc, last_error=error,
                           next_at=self.clock.now() + self.policy.backoff(attempts))

    def quarantine(self, item: SafRecord, exc: BaseException) -> None:
        """Take an item that cannot be sent out of the queue: expired, with a ``quarantined`` incident that keeps
        the evidence (the error, masked) and tells the operator what to do. The transaction then needs manual
        follow-up, exactly as if its reversal had expired."""
        why = mask_digits_in_text(f"{type(exc).__name__}: {exc}")[:300]
        with self.journal.atomic(f"saf.quarantine.{item.kind}"):
            self._fire(item, "expire", last_error=why)
            self.journal.record_incident(
                "quarantined", f"{item.kind} {item.mti} for transaction {item.txn_id} cannot be sent ({why}); it was "
                "taken out of the queue so the terminal can go on. Call the acquirer with the transaction's "
                "STAN/RRN to learn whether the charge stands", severity="critical", txn_id=item.txn_id,
                detail={"saf_id": item.id, "kind": item.kind, "mti": item.mti, "error": why})
            if self.on_expired is not None:
                self.on_expired(item, item.last_rc)

    def _expire(self, item: SafRecord, why: str) -> None:
        with self.journal.atomic(f"saf.expire.{item.kind}"):
            self._fire(item, "expire")
            self.journal.record_incident(
                f"{item.kind}_expired", f"{item.kind} {item.mti} for transaction {item.txn_id} {why}; "
                "call the acquirer with the transaction's STAN/RRN and settle manually",
                severity="critical", txn_id=item.txn_id, detail={"saf_id": item.id, "attempts": item.attempts},
            )
            if self.on_expired is not None:
                self.on_expired(item, item.last_rc)


def _stan(fields: Fields) -> int | None:
    v = fields.get("11")
    if v is None:
        return None
    text = v.decode("ascii") if isinstance(v, bytes) else v
    return int(text) if text.isdigit() else None


def _encode_fields(fields: Fields) -> dict[str, dict[str, str]]:
    return {k: ({"b": v.hex()} if isinstance(v, bytes) else {"s": v}) for k, v in fields.items()}


def _decode_fields(data: dict[str, dict[str, str]]) -> Fields:
    return {k: (bytes.fromhex(v["b"]) if "b" in v else v["s"]) for k, v in data.items()}
