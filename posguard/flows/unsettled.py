"""Funds not arrived / not settled (未到账), as the merchant guide says (pos-flows.md §A "Not arrived").

Procedure:

1. the batch: the one named (an unbalanced settlement names its batch), else the open batch;
2. an open batch: list and send what the host has not acknowledged (0400 reversals, 0220 advices), then settle it
   once — the engine sends the 0500 and, unbalanced, the detail uploads and the batch end (CUP 202; ISO the
   closing 0500/96). A batch already closed is never settled again, and **after an unbalanced reconciliation and
   the detail upload nothing more is sent** (no settlement of the next, empty batch);
3. compare the **acquirer's settlement report** with the journal in both directions
   (:meth:`~posguard.engine.detectors.ReconciliationDetector.compare`): approvals the host lacks, and host
   bookings the terminal does not hold as approved (declined, reversed, voided, unknown, timed out). Without a
   report the incident waits for one (``posguard reconcile --report FILE`` or the operator's ``reconcile``);
4. tell **only the customers concerned** — one notice each (:func:`~posguard.notices.finding_notice`);
5. give the merchant the list and the acquirer-contact step: batch, totals sent and booked, flags, the list.

Outcome: ``reconciled`` (closed) when the report and the journal agree, ``acquirer_contact_needed`` (open) while a
finding stands or no report was compared yet, ``settled`` when a settlement this flow ran balanced.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from posguard.engine.detectors import FINDING_RULES, Detection
from posguard.engine.errors import SettlementBlocked
from posguard.engine.settlement import Settlement
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome
from posguard.notices import Evidence, Notice, finding_notice, money
from posguard.notices.outbox import FileOutbox

if TYPE_CHECKING:
    from posguard.engine.acquirer_report import SettlementReport
    from posguard.engine.journal import Journal, TxnRecord

__all__ = ["UnsettledFlow", "finding_line", "reconciliation_incident", "reconcilable_batches"]


def reconciliation_incident(journal: Journal, batch_no: int) -> tuple[int, set[str]] | None:
    """The unsettled incident of ``batch_no`` and the SHA-256 of every report it compared, or None: what keeps the
    reconciliation of a batch to one incident, across restarts."""
    for row in reversed(journal.incidents("flow:unsettled")):
        request = json.loads(row["detail"] or "{}").get("request", {})
        if request.get("batch_no") == batch_no:
            iid = int(row["id"])
            compared = {str(json.loads(ev["detail"]).get("report_sha256")) for ev in journal.flow_events(iid, outcome=False)
                        if str(json.loads(ev["detail"]).get("step", "")).startswith("compare:")}
            return iid, compared
    return None


def reconcilable_batches(journal: Journal, report: SettlementReport, terminal_id: str) -> list[int]:
    """The closed batches a report is compared against: those its rows name; when its rows name none (ISO
    dialects carry no batch number), the last closed batch."""
    named = sorted({r.batch for r in report.for_terminal(terminal_id) if r.batch is not None})
    closed = [b for b in named if (row := journal.batch(b)) is not None and row["state"] == "closed"]
    if named:
        return closed
    last = journal.current_batch() - 1
    row = journal.batch(last) if last >= 1 else None
    return [last] if row is not None and row["state"] == "closed" else []


def finding_line(d: Detection) -> str:
    """One line of the merchant's list: the transaction as both sides know it, the cardholder masked."""
    e = d.evidence
    who = e.get("txn_id") or f"(not in the journal; report line {e.get('report_line')})"
    state = f"terminal {e.get('terminal_state') or '-'}" + (f" rc {e['terminal_rc']}" if e.get("terminal_rc") else "")
    host = f"host {e.get('host_status') or 'no booking'}"
    amount = money(int(e.get("amount_minor") or 0), str(e.get("currency") or "156"))
    if e.get("host_amount_minor") is not None and e.get("host_amount_minor") != e.get("amount_minor"):
        amount += f" (host {money(int(e['host_amount_minor']), str(e.get('currency') or '156'))})"
    return (f"{d.rule}: {who} {e.get('kind', '')} stan {e.get('stan') or '-'} rrn {e.get('rrn') or '-'} batch "
            f"{e.get('batch_no') or '-'} card {e.get('pan_masked') or '-'} {amount}; {state}, {host}")


class UnsettledFlow(Flow):
    kind = "unsettled"
    default_cause = "network"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine, journal = ctx.engine, ctx.journal
        # 1. which batch
        checked = steps.done_before("check_pending")
        batch_no = int(checked["batch"]) if checked else self._batch_of(ctx, request)
        batch = journal.batch(batch_no)
        was_closed = batch is not None and batch["state"] == "closed"
        pending = [] if was_closed else journal.saf_items(["armed", "queued", "sent", "expired"])
        steps.note("check_pending", f"batch {batch_no}: " + (
            f"closed ({batch['host_result']})" if was_closed and batch is not None else
            f"{len(pending)} reversal(s)/advice(s) unacknowledged: "
            + ", ".join(f"{p.mti} for {p.txn_id} ({p.state})" for p in pending)), batch=batch_no)
        if steps.dry_run:
            if not was_closed:
                steps.note("flush_queue", f"would send {len(pending)} queued message(s)")
                steps.note("settle", f"would send 0500 for batch {batch_no} with totals {engine.batch_totals()}")
                return Outcome.SETTLED.would, ""
            steps.note("settle", f"batch {batch_no} is closed: nothing is sent")
            return Outcome.NOTHING_TO_DO, "dry run: the batch is closed; only the report comparison remains"

        # 2. an open batch is settled once; a closed one never again
        if steps.done_before("settle") is None:
            if was_closed:
                self._note_closed(ctx, steps, batch_no)
            else:
                left = engine.flush() if steps.done_before("flush_queue") is None else []
                if left:
                    steps.note("flush_queue", f"{len(left)} item(s) still unacknowledged; settlement must wait",
                               status="pending")
                    return Outcome.PENDING, "reversals/advices still unacknowledged"
                steps.note("flush_queue", "queue empty")
                try:
                    result = engine.settle()
                except SettlementBlocked as exc:
                    raise FlowRefused(str(exc)) from exc
                steps.note("settle", f"0500 batch {result.batch_no}: RC {result.response_code}, "
                           f"{'balanced' if result.balanced else 'unbalanced'}"
                           + (f" (flags {_flags(result.flags)})" if result.flags else "")
                           + f", totals {_totals(result.totals)}; {result.uploaded} detail(s) uploaded"
                           + ("; nothing more is sent" if not result.balanced else ""),
                           response_code=result.response_code, balanced=result.balanced,
                           flags=result.flags, host_lacked=list(result.host_lacked))
        settled = steps.done_before("settle") or {}
        balanced = bool(settled.get("balanced"))

        # 3. the acquirer's report against the journal, both ways
        report = request.settlement_report or _from_ledger(request, engine.terminal.terminal_id)
        if report is None:
            if balanced:
                steps.note("report", "host totals agreed; no report to compare", findings=[])
                return Outcome.SETTLED, ""
            self._contact_step(ctx, steps, batch_no, settled, None, [])
            return Outcome.ACQUIRER_CONTACT_NEEDED, (
                f"batch {batch_no} did not balance: import the acquirer's settlement report "
                "(posguard reconcile --report FILE) to find which transactions differ")
        step = f"compare:{report.digest[:16]}"
        found = engine.detectors.reconciliation.compare(journal, report, terminal_id=engine.terminal.terminal_id,
                                                        batches=(batch_no,),
                                                        card_hash=lambda t: _card_hash(ctx, t))
        steps.note(step, f"acquirer report {report.source} (sha256 {report.digest[:16]}..., {len(report.rows)} "
                   f"row(s)): {len(found)} finding(s)" + "".join(f"\n  {finding_line(d)}" for d in found),
                   report_path=report.source, report_sha256=report.digest,
                   findings=[{"rule": d.rule, **d.evidence} for d in found])  # once: a resumed run keeps the first

        # 4. only the customers concerned
        notices = self._notify(ctx, steps, step, found)
        # 5. the merchant's list and the acquirer contact
        self._contact_step(ctx, steps, batch_no, settled, report, found)
        if not found:
            return Outcome.RECONCILED, f"the acquirer's report and the journal agree on batch {batch_no}"
        return Outcome.ACQUIRER_CONTACT_NEEDED, (
            f"{len(found)} finding(s) on batch {batch_no}; {notices} customer notice(s); contact the acquirer with "
            "the list")

    # -- steps ------------------------------------------------------------------------------------------
    @staticmethod
    def _batch_of(ctx: FlowContext, request: FlowRequest) -> int:
        if request.batch_no is not None:
            return request.batch_no
        for tid in request.txn_ids:
            txn = ctx.journal.get_txn(tid)
            if txn.batch_no is not None:
                return txn.batch_no
        return ctx.journal.current_batch()

    @staticmethod
    def _note_closed(ctx: FlowContext, steps: StepRunner, batch_no: int) -> None:
        batch = ctx.journal.batch(batch_no)
        assert batch is not None
        result = str(batch["host_result"] or "")
        uploads = [r for r in ctx.journal.uploads(batch_no, "detail") if r["state"] == "acknowledged"]
        lacked = [str(r["txn_id"]) for r in uploads if r["host_had"] == 0]
        closed = ctx.journal.query("SELECT detail FROM events WHERE kind = 'batch_closed' AND "
                                   "json_extract(detail, '$.batch') = ? ORDER BY id DESC LIMIT 1", (batch_no,))
        flags = dict(json.loads(closed[0]["detail"]).get("flags") or {}) if closed else {}
        steps.note("settle", f"batch {batch_no} closed at settlement: {result or '-'}; {len(uploads)} detail(s) "
                   "uploaded; nothing more is sent", balanced=result == "balanced", flags=flags, host_lacked=lacked,
                   uploaded=len(uploads))

    def _notify(self, ctx: FlowContext, steps: StepRunner, compared: str, found: list[Detection]) -> int:
        """One notice per customer a finding concerns, to the outbox; journaled once."""
        name = f"notify_customers:{compared.split(':', 1)[1]}"
        prev = steps.done_before(name)
        if prev is not None:  # told before a restart: not again
            steps.note(name, "")
            return int(prev.get("count", 0))
        p = ctx.policies
        notices: list[Notice] = []
        for d in found:
            notice = finding_notice(d.rule, _evidence(d), languages=p.languages, columns=p.printer_columns,
                                    timezone_name=p.timezone)
            if notice is not None:
                notices.append(notice)
        delivered = []
        if p.outbox and steps.incident_id is not None:
            for i, notice in enumerate(notices):
                delivered.append(FileOutbox(p.outbox).deliver(steps.incident_id, notice,
                                                              part=f"{i + 1:03d}-{notice.evidence[0].txn_id}"))
        steps.note(name, f"{len(notices)} customer notice(s): " + (", ".join(
            f"{n.evidence[0].txn_id} {n.evidence[0].pan_masked or '-'} ({n.kind})" for n in notices) or "nobody"),
                   count=len(notices), notices=[n.to_dict() for n in notices], delivered=delivered)
        return len(notices)

    @staticmethod
    def _contact_step(ctx: FlowContext, steps: StepRunner, batch_no: int, settled: dict[str, Any],
                      report: SettlementReport | None, found: list[Detection]) -> None:
        """What the merchant tells the acquirer: batch, totals sent and booked, flags, the list."""
        batch = ctx.journal.batch(batch_no)
        sent = ({k: int(batch[k] or 0) for k in ("debit_count", "debit_minor", "credit_count", "credit_minor")}
                if batch is not None and batch["state"] == "closed" else ctx.engine.batch_totals())
        cur = ctx.engine.terminal.currency
        lines = [f"batch {batch_no}, terminal {ctx.engine.terminal.terminal_id}, merchant "
                 f"{ctx.engine.terminal.merchant_id}",
                 f"totals sent: {sent['debit_count']} sale(s) {money(sent['debit_minor'], cur)}, "
                 f"{sent['credit_count']} refund(s) {money(sent['credit_minor'], cur)}"]
        if ctx.engine.profile.uses_field_60:  # CUP: the foreign-card group of field 48
            f = Settlement(ctx.engine).foreign_totals(batch_no)
            lines.append(f"  of which foreign cards: {f['foreign_debit_count']} sale(s) "
                         f"{money(f['foreign_debit_minor'], cur)}, {f['foreign_credit_count']} refund(s) "
                         f"{money(f['foreign_credit_minor'], cur)}")
        if settled.get("flags"):
            lines.append(f"host's balance flags: {_flags(settled['flags'])} (1 balanced, 2 unbalanced, 3 error)")
        if settled.get("host_lacked"):
            lines.append(f"the host held {len(settled['host_lacked'])} transaction(s) only from their detail upload: "
                         + ", ".join(settled["host_lacked"]))
        if report is not None:
            booked = [r for r in report.for_terminal(ctx.engine.terminal.terminal_id) if r.booked
                      and (r.batch is None or r.batch == batch_no)]
            for side in ("domestic", "foreign"):
                rows = [r for r in booked if r.side == side]
                debit = [r for r in rows if r.kind in ("sale", "completion")]
                credit = [r for r in rows if r.kind == "refund"]
                lines.append(f"acquirer booked ({side}): {len(debit)} sale(s) "
                             f"{money(sum(r.amount_minor for r in debit), cur)}, {len(credit)} refund(s) "
                             f"{money(sum(r.amount_minor for r in credit), cur)}")
            lines.append(f"report: {report.source} sha256 {report.digest}")
            lines += [f"  {finding_line(d)} — {FINDING_RULES[d.rule]}" for d in found] or ["  no difference"]
        else:
            lines.append("no acquirer report yet: ask the acquirer for the settlement report of this batch")
        name = "acquirer_contact" + (f":{report.digest[:16]}" if report is not None else "")
        steps.note(name, "tell the acquirer:\n" + "\n".join(lines), totals_sent=sent,
                   flags=settled.get("flags") or {}, findings=len(found))


def _evidence(d: Detection) -> Evidence:
    e = d.evidence
    return Evidence(str(e.get("kind") or "sale"), str(e.get("txn_id") or "-"), e.get("pan_masked"), e.get("rrn"),
                    e.get("auth_code"), int(e.get("amount_minor") or 0), str(e.get("currency") or "156"),
                    e.get("at"), e.get("terminal_rc"))


def _card_hash(ctx: FlowContext, txn: TxnRecord) -> str | None:
    """The report's ``pan_hash`` of the journal's sealed card (never stored or shown)."""
    if txn.card_sealed is None:
        return None
    try:
        pan = str(ctx.engine.sealer.open(txn.card_sealed, f"card:{txn.id}")["pan"])
    except Exception:  # noqa: BLE001 - a card that cannot be opened is compared by its masked PAN
        return None
    return hashlib.sha256(pan.encode()).hexdigest()[:32]


def _from_ledger(request: FlowRequest, terminal_id: str) -> SettlementReport | None:
    """The older in-memory form (``host_ledger``: RRN, kind, amount, RC) as a report of approved bookings."""
    if request.host_ledger is None:
        return None
    from posguard.engine.acquirer_report import ReportRow, SettlementReport

    rows = tuple(ReportRow(terminal_id, None, 999999, e.rrn or None, None, None, None, e.amount_minor, "156", e.kind,
                           "approved" if e.response_code == "00" else "declined", "1970-01-01", "00:00:00", "OTH",
                           "foreign", i + 1) for i, e in enumerate(request.host_ledger))
    digest = hashlib.sha256(repr([(r.rrn, r.kind, r.amount_minor, r.status) for r in rows]).encode()).hexdigest()
    return SettlementReport(rows, "<host ledger>", digest, "ledger")


def _flags(flags: dict[str, str]) -> str:
    return ", ".join(f"{side} {value}" for side, value in flags.items())


def _totals(t: dict[str, int]) -> str:
    return f"{t['debit_count']} sale(s) {t['debit_minor']}, {t['credit_count']} refund(s) {t['credit_minor']}"
