"""Wrong amount: the charge differs from the order total.

Procedure:

1. find the original and compare what stands (amount minus refunds) with the intended total;
2. overcharge before settlement: void in full (UnionPay voids must be full), then a new sale for the right
   amount on the card presented again;
   overcharge after settlement, or on a charge already partly refunded (a void must be full and would give
   back the refunded part twice): refund the difference (refunds may repeat; their total never exceeds the
   original);
   undercharge: a new sale for the difference;
3. record the incident; the customer notice gives both legs and when the money shows.
"""

from __future__ import annotations

from posguard.engine.chart import CHARGE_STANDS
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, Step, StepRunner
from posguard.flows.outcomes import Outcome, unfinished

__all__ = ["WrongAmountFlow"]


class WrongAmountFlow(Flow):
    kind = "wrong_amount"
    default_cause = "operator_input"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine = ctx.engine
        # 1. what stands, what should
        original = self.original(ctx, request)
        intended = request.intended_amount
        if intended is None or intended <= 0:
            raise FlowRefused("give the intended order total (intended_amount, minor units, > 0)")
        checked = steps.done_before("check_amount")  # resuming: the checks passed before the first send
        standing = self.standing(original)
        diff = int(checked["difference"]) if checked else standing - intended
        after = bool(checked["after"]) if checked else self.settled(ctx, original)
        by_refund = bool(checked.get("by_refund", after)) if checked else not self.can_void(ctx, original)
        if not checked and original.state not in CHARGE_STANDS:
            raise FlowRefused(f"{original.id} is {original.state}: there is no standing charge to correct")
        if not checked and diff == 0:
            raise FlowRefused(f"{original.id} stands at {standing}, which is the intended amount; nothing to correct")
        card = request.right_card or request.original_card
        steps.note("check_amount", f"{original.id}: charged {original.amount_minor}, refunded "
                   f"{original.refunded_minor}, intended {intended}: "
                   f"{'over' if diff > 0 else 'under'}charge of {abs(diff)}, "
                   f"{'after' if after else 'before'} settlement", txn_id=original.id, difference=diff, after=after,
                   by_refund=by_refund)

        if diff < 0:  # 2c. undercharge
            if card is None:
                raise FlowRefused("present the card again for the difference (right_card)")
            owed = -diff
            return self._final(steps, steps.online(
                "sale_difference", kind="sale", mti=engine.profile.spec("sale").mti,
                would=f"sale {owed} on {card.pan_masked}", action=lambda: engine.sale(card, owed),
                match=lambda t: t.pan_token == card.pan_token and t.amount_minor == owed,
                planned=lambda: self.planned_message(ctx, "sale", None, owed)), Outcome.CORRECTED)

        if by_refund:  # 2b. overcharge after settlement (or on a partly refunded charge): refund the difference
            return self._final(steps, steps.online(
                "refund_difference", kind="refund", mti=engine.profile.spec("refund").mti,
                would=f"refund {diff} of {original.id}", action=lambda: engine.refund(original.id, diff),
                match=lambda t: t.original_id == original.id and t.amount_minor == diff,
                planned=lambda: self.planned_message(ctx, "refund", original, diff)), Outcome.REFUNDED)

        # 2a. overcharge before settlement: full void, then the right amount
        if card is None and steps.done_before("void_original") is None:
            raise FlowRefused("present the card again (right_card): the overcharge is voided in full and the "
                              "right amount charged as a new sale")
        if card is not None and card.pan_token != original.pan_token and request.original_card is None:
            raise FlowRefused(f"card {card.pan_masked} is not the card of {original.id}; for another card use "
                              "the wrong_card flow")
        void = steps.online("void_original", kind="void", mti=engine.profile.spec("void").mti,
                            would=f"void {original.id} for {original.amount_minor}",
                            action=lambda: engine.void(original.id, request.original_card),
                            match=lambda t: t.original_id == original.id,
                            planned=lambda: self.planned_message(ctx, "void", original, original.amount_minor))
        if void.status not in ("done", "would_send"):
            return unfinished(void.status, void.detail)
        if card is None:
            raise FlowRefused("the overcharge was voided; present the card (right_card) to charge the right amount")
        right = card
        return self._final(steps, steps.online(
            "resale_intended", kind="sale", mti=engine.profile.spec("sale").mti,
            would=f"sale {intended} on {right.pan_masked}",
            action=lambda: engine.sale(right, intended, order_ref=original.order_ref),
            match=lambda t: t.pan_token == right.pan_token and t.amount_minor == intended,
            planned=lambda: self.planned_message(ctx, "sale", None, intended)), Outcome.CORRECTED)

    @staticmethod
    def _final(steps: StepRunner, last: Step, outcome: Outcome) -> tuple[Outcome, str]:
        if steps.dry_run:
            return outcome.would, ""
        if last.status != "done":
            return unfinished(last.status, last.detail)
        return outcome, ""
