"""The engine's settlement participant: closing the batch with the acquirer.

Settlement follows pos-flows.md §A "Not arrived": CUP flushes reversals, then advices, then sends the 0500
(60.3 = 201, totals in 48); balanced: TC uploads (0320, 60.3 = 203) then batch end (0320, 60.3 = 207);
unbalanced: a detail (0320, 60.3 = 205 chip / 201 other) for every transaction, then batch end (60.3 = 202).
International: 0500/920000; RC 95: 0320 per transaction, then 0500/960000. Uploads that fail are retried; what
the host said it lacked is reported. The batch number advances only in the commit that journals the host's
acknowledgement of the batch end.

:class:`Settlement` works on its :class:`~posguard.engine.engine.TransactionEngine` (journal, profile,
terminal, clock, policies, detectors, the engine's watched link, kill points); the engine's ``settle`` and
``batch_totals`` delegate to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from posguard.card import scheme_of
from posguard.engine.chart import CHART
from posguard.engine.detectors import Detection
from posguard.engine.errors import SettlementBlocked
from posguard.engine.journal import TxnRecord
from posguard.engine.ports import HostError
from posguard.engine.redact import masked_json, masked_message

if TYPE_CHECKING:
    import sqlite3

    from posguard.engine.engine import TransactionEngine
    from posguard.iso8583.message import Message

__all__ = ["Settlement", "SettlementResult", "card_side", "card_organisation", "CARD_ORGANISATIONS"]

#: the CUP card-organisation code (field 63, 3 characters: what the 0210/0510 answers, pos-flows.md §B) per card
#: scheme; UnionPay is the domestic side of the 0500's field 48, every other organisation the foreign side
CARD_ORGANISATIONS: dict[str, str] = {"unionpay": "CUP", "visa": "VIS", "mastercard": "MCC", "jcb": "JCB",
                                      "amex": "AMX"}


def card_organisation(txn: TxnRecord) -> str:
    """The card organisation code of ``txn``'s card (``CUP``, ``VIS``, ``MCC``, ``JCB``, ``AMX``, else ``OTH``), by
    the scheme the journal recorded (the PAN's leading digits when none was) — what a CUP terminal keeps from the
    answer's field 63 and sends back in its offline and batch uploads, so the acquirer can book a transaction it
    only learns from the upload on the right side of the totals (a NEWPOS UnionPay terminal's
    ``BatchSendOffTrans1``: ``glSendPack.szField63 = stLog.szCardUnit``; its ``SetIssuerName`` derives the code
    from the AID / PAN as this does)."""
    pan = txn.pan_masked or ""
    scheme = txn.scheme or scheme_of(pan)
    if scheme is not None:
        return CARD_ORGANISATIONS.get(scheme, "OTH")
    if not pan:
        return "CUP"  # nothing recorded of the card: the domestic side, as the totals count it
    return {"35": "JCB", "34": "AMX", "37": "AMX"}.get(pan[:2], "OTH")


def card_side(txn: TxnRecord) -> str:
    """``domestic`` (UnionPay) or ``foreign`` (every other organisation), by the scheme the journal recorded for
    the card (the PAN's leading digits when none was)."""
    return "domestic" if card_organisation(txn) == "CUP" else "foreign"


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
    #: CUP: the 0510's balance flag per card side of field 48 (``domestic``, ``foreign``)
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def unbalanced_sides(self) -> tuple[str, ...]:
        """Which side(s) of the CUP totals the host found unbalanced (flag 2 or 3)."""
        return tuple(side for side, f in self.flags.items() if f in ("2", "3"))


class Settlement:
    """Settles the engine's open batch: 0500, uploads, batch end, then the batch closes in the journal."""

    def __init__(self, engine: TransactionEngine) -> None:
        self.engine = engine

    def totals(self, batch_no: int | None = None) -> dict[str, int]:
        """Debit and credit counts and amounts of ``batch_no`` (the open batch by default)."""
        engine = self.engine
        batch = engine.journal.current_batch() if batch_no is None else batch_no
        debit = engine.journal.query(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM transactions WHERE batch_no = ? AND "
            "kind IN ('sale', 'completion') AND state IN ('approved','signature_pending','signed','unsigned',"
            "'uploaded','refunded_partial','refunded')", (batch,))[0]
        credit = engine.journal.query(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM transactions WHERE batch_no = ? AND "
            "kind = 'refund' AND state IN ('approved', 'uploaded')", (batch,))[0]
        return {"debit_count": int(debit[0]), "debit_minor": int(debit[1]),
                "credit_count": int(credit[0]), "credit_minor": int(credit[1])}

    def foreign_totals(self, batch_no: int) -> dict[str, int]:
        """The foreign-card part of the totals (pos-flows.md §B field 48: CUP counts domestic (UnionPay) and
        foreign cards (Visa, Mastercard, ...) in two groups), by the card's scheme recorded in the journal. A
        closed batch counts what it settled (its transactions are ``settled`` then)."""
        out = {"foreign_debit_count": 0, "foreign_debit_minor": 0, "foreign_credit_count": 0,
               "foreign_credit_minor": 0}
        for t in self.engine.journal.find_txns(
                "batch_no = ? AND ((kind IN ('sale', 'completion') AND state IN ('approved','signature_pending',"
                "'signed','unsigned','uploaded','refunded_partial','refunded','settled')) OR (kind = 'refund' AND "
                "state IN ('approved', 'uploaded', 'settled')))", (batch_no,)):
            if card_side(t) == "foreign":
                side = "credit" if t.kind == "refund" else "debit"
                out[f"foreign_{side}_count"] += 1
                out[f"foreign_{side}_minor"] += t.amount_minor
        return out

    def settle(self) -> SettlementResult:
        """Close the batch as the acquirer's procedure says (see the module docstring).

        Raises :class:`SettlementBlocked` (the batch stays open, run settlement again) when the queue is not
        empty, the 0500 or the batch end gets no acknowledgement, or an upload still fails after
        ``EnginePolicies.upload_attempts`` tries. Uploads already acknowledged are not sent again.
        """
        engine = self.engine
        engine._clear_to_send("settlement", settlement=True)
        batch = engine.journal.current_batch()
        totals = self.totals(batch)
        response = self._exchange(batch, totals, close_after_upload=False)
        rc = response.response_code
        cup = engine.profile.uses_field_60
        flag = engine.profile.settlement_flag(response) if cup else None
        flags = engine.profile.settlement_flags(response) if cup else {}
        if cup:
            if rc != "00":
                self._refused(batch, f"the host answered the 0500 with RC {rc}")
            # a group the host left unflagged is balanced only when the 0500 counted nothing in it: a 0510 whose
            # 48 stops after the domestic group has not confirmed the foreign cards' totals
            foreign = self.foreign_totals(batch)
            unflagged = "1" if not (foreign["foreign_debit_count"] or foreign["foreign_credit_count"]) else "-"
            balanced = flag == "1" and flags.get("foreign", unflagged) in ("0", "1")
        else:
            if rc not in ("00", "95"):
                self._refused(batch, f"the host answered the 0500 with RC {rc}")
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
            closing = self._exchange(batch, totals, close_after_upload=True)
            if closing.response_code != "00":
                self._refused(batch, f"the host answered the closing 0500/"
                                     f"{engine.profile.settlement_close_proc} with RC {closing.response_code}")
        detections = engine.detectors.reconciliation.on_settlement(batch, totals, balanced, rc, engine.journal,
                                                                   flags=flags)
        detections += engine.detectors.unsigned.at_batch_close(batch, engine.journal)
        with engine._atomic("batch_closed"):
            for txn in engine.journal.find_txns("batch_no = ? AND state IN ('approved','signature_pending','signed',"
                                                "'unsigned','uploaded')", (batch,)):
                if CHART.allows(txn.kind, txn.state, "settle"):
                    if txn.state == "signature_pending":
                        engine.journal.update_txn(txn.id, signature="missing")
                    engine._fire(txn, "settle", settled_at=engine.clock.now())
            result = "balanced" if balanced else f"unbalanced rc={rc}" + (f" flag={flag}" if flag else "") + (
                f" foreign={flags['foreign']}" if flags.get("foreign") else "")
            if lacked:
                result += f"; host lacked {len(lacked)}"
                engine.journal.record_incident("host_lacked_transactions",
                                               f"batch {batch}: the host did not hold {len(lacked)} transaction(s) "
                                               "until their detail upload: " + ", ".join(lacked),
                                               detail={"batch": batch, "txn_ids": lacked})
            new_batch = engine.journal.close_batch(totals, result)
            engine.journal.record_event("batch_closed", detail={"batch": batch, "next": new_batch, "result": result,
                                                                "balanced": balanced, "flags": flags})
        return SettlementResult(batch, balanced, rc, totals, uploaded, new_batch, engine._record(detections),
                                flag=flag, host_lacked=tuple(lacked), tc_uploaded=tc_uploaded, flags=flags)

    def _refused(self, batch: int, why: str) -> NoReturn:
        engine = self.engine
        with engine._atomic("settlement_failed"):
            engine.journal.record_incident("settlement_failed", f"batch {batch} not closed: {why}; run settlement "
                                           "again", txn_id=None)
        raise SettlementBlocked(f"settlement of batch {batch} stopped: {why}; the batch stays open, run settlement "
                                "again", pending_ids=(), retry_in=None)

    def _exchange(self, batch: int, totals: dict[str, int], *, close_after_upload: bool) -> Message:
        engine = self.engine
        with engine._atomic("settlement_journaled"):
            stan = engine.journal.allocate_stan()
            fields = engine.profile.settlement_fields(stan=stan, batch_no=batch, terminal_id=engine.terminal.terminal_id,
                                                      merchant_id=engine.terminal.merchant_id,
                                                      totals={**totals, **self.foreign_totals(batch)},
                                                      currency=engine.terminal.currency,
                                                      close_after_upload=close_after_upload)
            engine.journal.record_message(direction="out", mti="0500", masked=masked_json("0500", fields, engine.profile.dialect), stan=stan)
            engine.journal.record_event("settlement_started", detail={"batch": batch, "proc": fields["3"], **totals})
        engine._kill("host.before_send:0500")
        try:
            response = engine._wire.exchange(engine.profile.message("0500", fields), timeout=engine.terminal.host_timeout)
        except HostError as exc:
            engine._kill("host.after_send:0500")
            self._refused(batch, f"the 0500 got no answer ({exc})")
        engine._kill("host.after_send:0500")
        with engine._atomic("settlement_response"):
            engine.journal.record_message(direction="in", mti=response.mti, masked=masked_message(response),
                                          stan=response.stan)
        return response

    def _upload_candidates(self, batch: int, purpose: str) -> list[TxnRecord]:
        """Detail uploads: every approved transaction of the batch. TC uploads: the chip ones."""
        engine = self.engine
        txns = engine.journal.find_txns(
            "batch_no = ? AND kind IN ('sale', 'completion', 'refund', 'preauth') AND state IN ('approved', "
            "'signature_pending', 'signed', 'unsigned', 'uploaded', 'refunded_partial', 'refunded')", (batch,))
        if purpose == "tc":
            txns = [t for t in txns if t.entry_mode in ("chip", "contactless") and t.kind != "refund"]
        return txns

    def _upload_card(self, txn: TxnRecord, messages: list[sqlite3.Row]) -> dict[str, Any]:
        """What an upload of ``txn`` carries from the card, opened from the journal's sealed values: the PAN and
        5F34 (sealed with the transaction) and field 55 of the card's final decision
        (:mod:`posguard.engine.card_results`)."""
        from posguard.engine.card_results import card_result

        engine = self.engine
        out: dict[str, Any] = {}
        if txn.card_sealed is not None:
            card = engine.sealer.open(txn.card_sealed, f"card:{txn.id}")
            out["pan"] = card.get("pan")
            out["pan_sequence"] = card.get("psn")
        result = card_result(engine.journal, engine.sealer, txn.id)
        if result is not None:
            out["icc"] = result.upload_icc()
        out["entry_field"] = self._authorised_entry_field(txn, messages)
        return out

    def _unanswered_upload(self, messages: list[sqlite3.Row], fields: dict[str, Any]) -> int | None:
        """The STAN of this transaction's last upload when its answer never came (the journal's last message of
        the transaction is that 0320/0321 going out) and it was the same upload (3 and 60: detail or TC): the next
        try repeats it as 0321 under that STAN, so the host answers it from its books instead of taking it for a
        new upload (``pos-flows.md`` (B): last digit 1 = repeat; the profile's ``repeat_mti``)."""
        upload = self.engine.profile.spec("upload").mti
        last = messages[-1] if messages else None
        if last is None or last["direction"] != "out" or last["stan"] is None or last["mti"] not in (
                upload, self.engine.profile.repeat_of(upload)):
            return None
        sent = json.loads(last["masked"])
        same = all(str(sent.get(f, "")) == str(fields.get(f, "")) for f in ("3", "60"))
        return int(last["stan"]) if same else None

    def _authorised_entry_field(self, txn: TxnRecord, messages: list[sqlite3.Row]) -> str | None:
        """Field 22 of the request the host approved (its journaled copy): the upload repeats it, CUP PIN digit
        included, so the acquirer matches the upload to the authorisation (``emv-keys.md`` A.10)."""
        for row in messages:
            if row["direction"] == "out" and row["stan"] == txn.stan and row["mti"][:2] != "04":
                value = json.loads(row["masked"]).get("22")
                return str(value) if value else None
        return None

    def _booking_fields(self, purpose: str, txn: TxnRecord) -> dict[str, str]:
        """What a detail upload adds so the acquirer can book a transaction it learns of only from the upload
        (offline, store-and-forward, or an approval its books lack): the currency (49) and, CUP, the card
        organisation (63, :func:`card_organisation`) that puts it on the domestic or foreign side of field 48."""
        if purpose != "detail":
            return {}
        from posguard.engine.profiles import currency_numeric

        out = {"49": currency_numeric(txn.currency)}  # ISO 4217 numeric, as the sale's 49
        if self.engine.profile.uses_field_60:
            out["63"] = card_organisation(txn)
        return out

    def _upload_all(self, batch: int, purpose: str, txns: list[TxnRecord]) -> tuple[int, list[str]]:
        """Upload each transaction (0320), retrying failures in rounds; returns (count, ids the host lacked)."""
        engine = self.engine
        done = {r["txn_id"]: r for r in engine.journal.uploads(batch, purpose) if r["state"] == "acknowledged"}
        todo = [t for t in txns if t.id not in done]
        failed: dict[str, str] = {}
        for _ in range(max(1, engine.policies.upload_attempts)):
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
            self._refused(batch, f"{len(failed)} {purpose} upload(s) failed after "
                          f"{engine.policies.upload_attempts} attempts (first: {first[0]}: {first[1]})")
        rows = engine.journal.uploads(batch, purpose)
        lacked = [r["txn_id"] for r in rows if r["host_had"] == 0]
        return sum(1 for r in rows if r["state"] == "acknowledged"), lacked

    def _upload_one(self, batch: int, purpose: str, txn: TxnRecord) -> str | None:
        """One 0320; None when acknowledged, else why it failed. RC 25 = the host lacked it (booked now)."""
        engine = self.engine
        spec = engine.profile.spec("upload")
        with engine._atomic("upload_journaled"):
            messages = engine.journal.messages(txn.id)  # the transaction's journaled messages, read once
            fields = engine.profile.upload_fields(purpose=purpose, stan=0, batch_no=batch,
                                                  terminal_id=engine.terminal.terminal_id,
                                                  merchant_id=engine.terminal.merchant_id, txn=txn,
                                                  **self._upload_card(txn, messages))
            fields.update(self._booking_fields(purpose, txn))
            unanswered = self._unanswered_upload(messages, fields)
            stan = unanswered if unanswered is not None else engine.journal.allocate_stan()
            mti = spec.mti if unanswered is None else engine.profile.repeat_of(spec.mti)
            fields["11"] = f"{stan:06d}"
            engine.journal.record_message(direction="out", mti=mti, masked=masked_json(mti, fields, engine.profile.dialect),
                                          stan=stan, txn_id=txn.id)
            engine.journal.upload_record(batch, txn.id, purpose, state="sent", attempt=True)
        engine._kill(f"host.before_send:{spec.mti}")
        try:
            resp = engine._wire.exchange(engine.profile.message(mti, fields), timeout=engine.terminal.host_timeout)
        except HostError as exc:
            engine._kill(f"host.after_send:{spec.mti}")
            with engine._atomic("upload_failed"):
                engine.journal.upload_record(batch, txn.id, purpose, state="failed")
                engine.journal.record_incident("upload_failed", f"{purpose} upload of {txn.id} failed: {exc}",
                                               txn_id=txn.id)
            return str(exc)
        engine._kill(f"host.after_send:{spec.mti}")
        rc = resp.response_code
        ok = rc in ("00", "25")
        with engine._atomic("uploaded"):
            engine.journal.record_message(direction="in", mti=resp.mti, masked=masked_message(resp),
                                          stan=resp.stan, txn_id=txn.id)
            engine.journal.upload_record(batch, txn.id, purpose, state="acknowledged" if ok else "failed", last_rc=rc,
                                         host_had=(rc == "00") if ok else None)
        return None if ok else f"RC {rc}"

    def _batch_end(self, batch: int, after: str, count: int) -> None:
        """CUP batch end (0320, 60.3 = 207 after TC uploads, 202 after details); must be acknowledged 00."""
        engine = self.engine
        with engine._atomic("batch_end_journaled"):
            stan = engine.journal.allocate_stan()
            fields = engine.profile.batch_end_fields(stan=stan, batch_no=batch, terminal_id=engine.terminal.terminal_id,
                                                     merchant_id=engine.terminal.merchant_id, count=count, after=after)
            engine.journal.record_message(direction="out", mti="0320", masked=masked_json("0320", fields, engine.profile.dialect), stan=stan)
        engine._kill("host.before_send:0320")
        try:
            resp = engine._wire.exchange(engine.profile.message("0320", fields), timeout=engine.terminal.host_timeout)
        except HostError as exc:
            engine._kill("host.after_send:0320")
            self._refused(batch, f"the batch end got no answer ({exc})")
        engine._kill("host.after_send:0320")
        with engine._atomic("batch_end_response"):
            engine.journal.record_message(direction="in", mti=resp.mti, masked=masked_message(resp), stan=resp.stan)
        if resp.response_code != "00":
            self._refused(batch, f"the host answered the batch end with RC {resp.response_code}")
