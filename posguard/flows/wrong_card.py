"""Wrong card: the operator charged a card the customer did not mean to use.

Procedure:

1. find the original charge; the right card must be a different card;
2. before settlement, on an untouched charge: void the original on the *wrong* card (UnionPay: the original
   card must be present; a void on a different PAN is refused here, where the host would answer RC 14);
   after settlement, or once part of it was refunded: refund what is left of it;
3. charge the right card for what stood on the wrong one (the original less its refunds), never more;
4. both legs stay linked in one incident; the customer gets the slip of each.
"""

from __future__ import annotations

from posguard.engine.chart import CHARGE_STANDS
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome, unfinished

__all__ = ["WrongCardFlow"]


class WrongCardFlow(Flow):
    kind = "wrong_card"
    default_cause = "operator_input"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine = ctx.engine
        # 1. the original and the right card
        original = self.original(ctx, request)
        right = request.right_card
        if right is None:
            raise FlowRefused("present the card the customer meant to use (right_card) before correcting")
        if right.pan_token == original.pan_token:
            raise FlowRefused(f"the right card {right.pan_masked} is the card already charged in {original.id}; "
                              "nothing to correct")
        checked = steps.done_before("check_original")  # resuming: the checks passed before the first send
        if not checked and original.state not in CHARGE_STANDS:
            raise FlowRefused(f"{original.id} is {original.state}: there is no standing charge on the wrong card")
        after = bool(checked["after"]) if checked else self.settled(ctx, original)
        left = int(checked["left"]) if checked else self.standing(original)
        by_refund = bool(checked.get("by_refund", after)) if checked else not self.can_void(ctx, original)
        steps.note("check_original", f"{original.id} {original.amount_minor} on {original.pan_masked}, "
                   f"{left} standing, {'after' if after else 'before'} settlement; right card {right.pan_masked}",
                   txn_id=original.id, after=after, left=left, by_refund=by_refund)

        # 2. give the money back on the wrong card
        if not by_refund:
            card = request.original_card
            if (card is None and engine.profile.name == "cup" and ctx.policies.cup_void_needs_card
                    and steps.done_before("void_wrong_card") is None):
                raise FlowRefused("UnionPay voids need the original card present: swipe or insert "
                                  f"{original.pan_masked} (original_card), or wait for settlement and refund")
            if card is not None and card.pan_token != original.pan_token:
                raise FlowRefused(f"card {card.pan_masked} is not the card of {original.id} ({original.pan_masked}): "
                                  "a void on a different PAN is refused (the host would answer RC 14)")
            back = steps.online("void_wrong_card", kind="void", mti=engine.profile.spec("void").mti,
                                would=f"void {original.id} for {original.amount_minor} on {original.pan_masked}",
                                action=lambda: engine.void(original.id, card),
                                match=lambda t: t.original_id == original.id,
                                planned=lambda: self.planned_message(ctx, "void", original, original.amount_minor))
        else:
            back = steps.online("refund_wrong_card", kind="refund", mti=engine.profile.spec("refund").mti,
                                would=f"refund {left} of {original.id} to {original.pan_masked}",
                                action=lambda: engine.refund(original.id, left, request.original_card),
                                match=lambda t: t.original_id == original.id and t.amount_minor == left,
                                planned=lambda: self.planned_message(ctx, "refund", original, left))
        if back.status not in ("done", "would_send"):
            return unfinished(back.status, f"first leg: {back.detail}")

        # 3. charge the right card
        sale = steps.online("sale_right_card", kind="sale", mti=engine.profile.spec("sale").mti,
                            would=f"sale {left} on {right.pan_masked}",
                            action=lambda: engine.sale(right, left, order_ref=original.order_ref),
                            match=lambda t: t.pan_token == right.pan_token and t.amount_minor == left,
                            planned=lambda: self.planned_message(ctx, "sale", None, left))
        if steps.dry_run:
            return Outcome.CORRECTED.would, ""
        if sale.status != "done":
            return unfinished(sale.status, f"the wrong card was {'refunded' if by_refund else 'voided'} but the sale "
                              f"on the right card was not approved ({sale.detail}); ask for another payment")
        return Outcome.CORRECTED, ""
