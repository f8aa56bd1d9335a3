"""Funds not arrived / not settled: get the batch to the host and closed.

Procedure:

1. list what the host has not acknowledged: queued reversals (0400) and advices (0220);
2. send them (the engine blocks settlement while any is pending);
3. settle: reconciliation 0500 with the totals; if the host disagrees the engine uploads every transaction
   (0320) and closes the batch;
4. report exactly which transactions were uploaded because the host lacked them, and prepare the customer
   contact (a reversed hold is released by the issuer).
"""

from __future__ import annotations

from posguard.engine.errors import SettlementBlocked
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome

__all__ = ["UnsettledFlow"]


class UnsettledFlow(Flow):
    kind = "unsettled"
    default_cause = "network"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine, journal = ctx.engine, ctx.journal
        # 1. what is pending
        checked = steps.done_before("check_pending")
        batch_no = int(checked["batch"]) if checked else journal.current_batch()
        pending = journal.saf_items(["armed", "queued", "sent", "expired"])
        steps.note("check_pending", f"batch {batch_no}: {len(pending)} reversal(s)/advice(s) unacknowledged: "
                   + ", ".join(f"{p.mti} for {p.txn_id} ({p.state})" for p in pending), batch=batch_no)
        if steps.dry_run:
            steps.note("flush_queue", f"would send {len(pending)} queued message(s)")
            steps.note("settle", f"would send 0500 for batch {batch_no} with totals {engine.batch_totals()}")
            return Outcome.SETTLED.would, ""

        # 2. send the queue
        left = engine.flush() if steps.done_before("flush_queue") is None else []
        if left:
            steps.note("flush_queue", f"{len(left)} item(s) still unacknowledged; settlement must wait",
                       status="pending")
            return Outcome.PENDING, "reversals/advices still unacknowledged"
        steps.note("flush_queue", "queue empty")

        # 3. settle (resumable: a batch already closed is not settled twice)
        done = steps.done_before("settle")
        batch = journal.batch(batch_no)
        if done is None and batch is not None and batch["state"] == "closed":
            steps.note("settle", f"batch {batch_no} was closed before the restart ({batch['host_result']})",
                       balanced=str(batch["host_result"]) == "balanced", uploaded=[])
        elif done is None:
            in_batch = [t.id for t in journal.find_txns("batch_no = ? AND state IN ('approved','signed',"
                                                        "'unsigned','signature_pending')", (batch_no,))]
            try:
                result = engine.settle()
            except SettlementBlocked as exc:
                raise FlowRefused(str(exc)) from exc
            uploaded = in_batch if not result.balanced else []
            steps.note("settle", f"0500 batch {result.batch_no}: RC {result.response_code}, "
                       f"{'balanced' if result.balanced else 'unbalanced'}, totals {result.totals}; "
                       f"{result.uploaded} detail(s) uploaded; next batch {result.next_batch}",
                       response_code=result.response_code, balanced=result.balanced, uploaded=uploaded,
                       host_lacked=list(result.host_lacked))
        settled = steps.done_before("settle") or {}

        # 4. what the host lacked: exactly, from the acquirer's report when given; else what was uploaded
        uploaded = list(settled.get("uploaded") or [])
        if request.host_ledger is not None:
            missing = [d.txn_ids[0] for d in engine.detectors.reconciliation.check(journal, request.host_ledger)
                       if d.rule == "missing_from_host_ledger"]
            steps.note("report", f"the host's report lacks {len(missing)} transaction(s): {', '.join(missing) or '-'}",
                       missing=missing, uploaded=uploaded)
        elif settled.get("balanced"):
            steps.note("report", "host totals agreed; nothing was missing", uploaded=uploaded, missing=[])
        else:
            # the host answers each uploaded detail: "25" = it did not hold that transaction (booked from it)
            lacked = list(settled.get("host_lacked") or [])
            steps.note("report", f"totals disagreed on batch {batch_no}; the host lacked {len(lacked)} "
                       f"transaction(s): {', '.join(lacked) or '-'}; uploaded: {', '.join(uploaded) or '-'}",
                       uploaded=uploaded, missing=lacked)
        return (Outcome.SETTLED if settled.get("balanced") else Outcome.SETTLED_AFTER_UPLOAD), ""
