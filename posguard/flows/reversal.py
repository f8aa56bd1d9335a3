"""Reversal: undo a transaction whose outcome is unknown or that the card refused.

Causes: no answer in time, an answer that does not validate (wrong echo, bad MAC), the card declining at the
2nd GENERATE AC after the host approved, or power lost mid-transaction. Procedure:

1. find the transaction; refuse if there is nothing to reverse (approved and not card-declined: use a void);
2. power loss: let the engine recover what was in flight (it arms the reversals);
   card decline: queue the reversal of the approved transaction;
3. send the queue (0400, repeats 0401) until the host acknowledges (00/12/25 count as done);
4. record the outcome; the customer notice says no money was taken.
"""

from __future__ import annotations

from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome

__all__ = ["ReversalFlow", "REASONS"]

#: why a reversal is needed -> (cause, reason code in the CUP 0400 field 39)
REASONS = {
    "timeout": ("network", "98"),
    "invalid_response": ("host", "96"),
    "bad_mac": ("host", "A0"),
    "card_decline": ("card", "06"),
    "power_loss": ("device_fault", "98"),
}
_UNKNOWN = ("timed_out", "response_invalid", "reversal_pending", "request_journaled", "sent")


class ReversalFlow(Flow):
    kind = "reversal"
    default_cause = "network"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        reason = request.reason or "timeout"
        if reason not in REASONS:
            raise FlowRefused(f"unknown reversal reason {reason!r}; one of {', '.join(REASONS)}")
        txn = self.original(ctx, request)
        engine = ctx.engine

        # 1. is there something to reverse?
        if txn.state == "reversed":
            steps.note("check_transaction", f"{txn.id} is already reversed; nothing to send")
            return Outcome.REVERSED, "already reversed"
        if reason == "card_decline":
            if txn.state not in ("approved", "signature_pending", "reversal_pending"):
                raise FlowRefused(f"{txn.id} is {txn.state}: a card decline after approval reverses an approved "
                                  "sale or pre-authorisation only")
            if self.settled(ctx, txn):
                raise FlowRefused(f"{txn.id} is in a closed batch: it can no longer be reversed; refund it")
        elif reason != "power_loss" and txn.state not in _UNKNOWN + ("reversal_failed",):
            raise FlowRefused(f"{txn.id} is {txn.state}: its outcome is known, so there is nothing to reverse; "
                              "to undo an approved charge, void it (before settlement) or refund it")
        steps.note("check_transaction", f"{txn.kind} {txn.id} is {txn.state}; reason {reason}", txn_id=txn.id)

        # 2. arm the reversal
        if reason == "power_loss" and ctx.journal.get_txn(txn.id).state in ("request_journaled", "sent"):
            if steps.done_before("recover_in_flight") is None:
                report = engine.recover()
                steps.note("recover_in_flight", f"recovered after power loss: {len(report.reversals_released)} "
                           "reversal(s) released", txn_id=txn.id)
        if reason == "card_decline" and ctx.journal.get_txn(txn.id).state not in ("reversal_pending", "reversed"):
            if steps.dry_run:
                steps.note("queue_reversal", "would queue the 0400 of the approved transaction (reason 06)")
            else:
                engine.reverse(txn.id, REASONS[reason][1])
                steps.note("queue_reversal", f"0400 queued for {txn.id} (reason {REASONS[reason][1]})", txn_id=txn.id)

        # 3. send the queue until acknowledged
        if steps.dry_run:
            steps.note("send_reversal", "would send the queued 0400 (repeats as 0401) before anything else")
            return Outcome.REVERSED.would, ""
        remaining = engine.flush()
        txn = ctx.journal.get_txn(txn.id)
        if txn.state == "reversed":
            steps.note("send_reversal", f"host acknowledged the reversal of {txn.id}", txn_id=txn.id)
            return Outcome.REVERSED, ""
        if txn.state == "reversal_failed":
            steps.note("send_reversal", f"reversal of {txn.id} expired unacknowledged: call the acquirer, "
                       "then refund if the charge stands", status="failed", txn_id=txn.id)
            return Outcome.FAILED, "reversal expired"
        steps.note("send_reversal", f"reversal of {txn.id} still queued ({len(remaining)} item(s)); "
                   "it is retried before the next transaction", status="pending", txn_id=txn.id)
        return Outcome.PENDING, "reversal not yet acknowledged"
