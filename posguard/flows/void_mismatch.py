"""Void disputed: the customer says the money of a voided sale did not come back.

Procedure:

1. walk the chain: the sale, its voids, any reversal of a void (a reversed void undoes the void), refunds,
   and whether the batch with the void was settled;
2. the void stands: send nothing; produce the proof (RRN, auth code, times, amounts, masked PAN) and when
   the money shows (void: same or next clearing day; holds are released by the issuer);
3. the void was undone (or never approved): void again in the same batch, or refund after settlement;
4. record the chain with its response codes in the incident.
"""

from __future__ import annotations

from posguard.engine.chart import CHARGE_STANDS, IN_DOUBT
from posguard.engine.journal import TxnRecord
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome, unfinished

__all__ = ["VoidMismatchFlow"]


class VoidMismatchFlow(Flow):
    kind = "void_mismatch"
    default_cause = "customer_claim"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine = ctx.engine
        # 1. walk the chain
        sale = self.original(ctx, request)
        if sale.kind not in ("sale", "completion", "preauth"):
            raise FlowRefused(f"{sale.id} is a {sale.kind}; name the sale the customer disputes")
        walked = steps.done_before("walk_chain")  # resuming: decide as the first walk did
        standing = self._standing_void(ctx, sale)
        stood = bool(walked["void_stood"]) if walked else (sale.state == "voided" and standing is not None)
        chain = [self._describe(ctx, c) for c in ctx.journal.children(sale.id)]
        steps.note("walk_chain", f"{sale.kind} {sale.id} {sale.state} RC {sale.response_code} RRN {sale.rrn}; "
                   + ("; ".join(chain) or "no void or refund on file"), txn_id=sale.id, void_stood=stood)

        # 2. the void stands: proof only
        if stood and standing is not None:
            batch = ctx.journal.batch(standing.batch_no or 0)
            closed = batch is not None and batch["state"] == "closed"
            steps.note("proof", f"void {standing.id} stands: RC {standing.response_code}, RRN {standing.rrn}, "
                       f"auth {standing.auth_code}, amount {standing.amount_minor}, card {standing.pan_masked}; "
                       f"batch {standing.batch_no} {'settled' if closed else 'open'}; nothing sent",
                       txn_id=standing.id)
            return Outcome.VOID_STANDS, "the void stands; proof given"
        if sale.state == "refunded" and not walked:
            steps.note("proof", f"{sale.id} was refunded in full ({sale.refunded_minor}); nothing sent",
                       txn_id=sale.id)
            return Outcome.REFUNDED, "refunded in full; proof given"

        # 3. the charge stands again: void again or refund
        in_doubt = [c for c in ctx.journal.children(sale.id)
                    if c.kind == "void" and c.state in IN_DOUBT]
        if in_doubt and not steps.dry_run:
            engine.flush()
            if any(ctx.journal.get_txn(c.id).state not in ("reversed", "reversal_failed") for c in in_doubt):
                steps.note("wait_for_reversal", f"void {in_doubt[0].id} is still being reversed; resume once "
                           "the host acknowledges", status="pending")
                return Outcome.PENDING, "a void is still in doubt"
            sale = ctx.journal.get_txn(sale.id)
        if sale.state not in CHARGE_STANDS and not walked:
            raise FlowRefused(f"{sale.id} is {sale.state}: no charge stands, nothing to give back")
        if not request.operator_confirmed and not ctx.policies.is_automatic("void_mismatch:redo"):
            steps.note("await_confirmation", "the charge stands again: confirm to void again or refund",
                       status="pending")
            return Outcome.AWAITING_CONFIRMATION, "operator confirmation required"
        outcome, last = self.give_back(ctx, steps, sale, void_step="void_again", refund_step="refund_instead",
                                       card=request.original_card, again=True)
        if steps.dry_run:
            return outcome, ""
        if last.status != "done":
            return unfinished(last.status, last.detail)
        return outcome, ""

    @staticmethod
    def _standing_void(ctx: FlowContext, sale: TxnRecord) -> TxnRecord | None:
        for c in ctx.journal.children(sale.id):
            if c.kind == "void" and c.state in ("approved", "settled", "uploaded"):
                return c
        return None

    @staticmethod
    def _describe(ctx: FlowContext, t: TxnRecord) -> str:
        events = [h["event"] for h in ctx.journal.history(t.id) if h["accepted"]]
        undone = " (approved, then reversed: the void was undone)" if (
            t.kind == "void" and "approve" in events and t.state in ("reversal_pending", "reversed")) else ""
        return f"{t.kind} {t.id} {t.state} RC {t.response_code} RRN {t.rrn}{undone}"
