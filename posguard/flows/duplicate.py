"""Duplicate charge: the same card charged twice for one purchase.

Procedure:

1. find both legs (the first is kept) and check they are the same card, amount and terminal, both charged;
2. decide what kind of duplicate it is: a proven one (a retransmission, the same order paid twice) is
   corrected automatically; a possible genuine second purchase waits for the operator's confirmation;
3. send what is queued first (a pending 0400 may already undo a leg);
4. void the extra leg before settlement, or refund it after;
5. record the incident and give the customer the slip for the cancelled leg.
"""

from __future__ import annotations

import json

from posguard.engine.chart import CHARGE_STANDS
from posguard.engine.detectors import operator_override
from posguard.engine.journal import TxnRecord
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome, unfinished

__all__ = ["DuplicateChargeFlow", "PROVEN"]

PROVEN = ("retransmission", "duplicate_order")


class DuplicateChargeFlow(Flow):
    kind = "duplicate_charge"
    default_cause = "operator_input"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        # 1. both legs
        first, extra = self._legs(ctx, request)
        if (first.pan_token, first.amount_minor, first.terminal_id) != (extra.pan_token, extra.amount_minor,
                                                                         extra.terminal_id):
            raise FlowRefused(f"{first.id} and {extra.id} are not the same card, amount and terminal; "
                              "this is not a duplicate")
        if first.state not in CHARGE_STANDS:
            raise FlowRefused(f"the first leg {first.id} is {first.state}, not a standing charge; nothing to undo")
        if extra.state not in CHARGE_STANDS:
            done = "voided" if extra.state == "voided" else extra.state
            steps.note("check_legs", f"the extra leg {extra.id} is already {done}; nothing to send", txn_id=extra.id)
            return (Outcome.VOIDED if extra.state == "voided" else Outcome.REFUNDED if extra.state == "refunded"
                    else Outcome.NOTHING_TO_DO), f"extra leg already {done}"
        steps.note("check_legs", f"keep {first.id}, undo {extra.id}: same card {first.pan_masked}, "
                   f"amount {first.amount_minor}", txn_id=extra.id)

        # 2. proven or possible?
        classification = self._classify(ctx, first, extra)
        steps.note("classify", f"{classification}", classification=classification)
        if classification not in PROVEN and not request.operator_confirmed and not ctx.policies.is_automatic(
                f"duplicate_charge:{classification}"):
            steps.note("await_confirmation", "possibly a genuine second purchase: ask the customer, then run "
                       "again with the operator's confirmation", status="pending")
            return Outcome.AWAITING_CONFIRMATION, "operator confirmation required"

        # 3. queue first
        if not steps.dry_run and steps.done_before("flush_queue") is None:
            pending = ctx.engine.flush()
            steps.note("flush_queue", f"queued reversals/advices sent; {len(pending)} still pending")

        # 4. void before settlement, refund what stands of it after (or once part of it was refunded)
        outcome, last = self.give_back(ctx, steps, extra, void_step="void_extra_leg", refund_step="refund_extra_leg")
        if steps.dry_run:
            return outcome, ""
        if last.status != "done":
            return unfinished(last.status, last.detail)
        return outcome, ""

    def _legs(self, ctx: FlowContext, request: FlowRequest) -> tuple[TxnRecord, TxnRecord]:
        if len(request.txn_ids) >= 2:
            a, b = (ctx.journal.get_txn(t) for t in request.txn_ids[:2])
        else:
            one = self.original(ctx, request)
            pair = self._detected_pair(ctx, one.id)
            if pair is None:
                raise FlowRefused(f"no duplicate detected for {one.id}; name both legs")
            a, b = (ctx.journal.get_txn(t) for t in pair)
        return (a, b) if (a.approved_at or a.created_at, a.id) <= (b.approved_at or b.created_at, b.id) else (b, a)

    @staticmethod
    def _detected_pair(ctx: FlowContext, txn_id: str) -> tuple[str, str] | None:
        for row in ctx.journal.detections("duplicate_charge"):
            ids = json.loads(row["txn_ids"])
            if txn_id in ids and len(ids) == 2:
                return ids[0], ids[1]
        return None

    @staticmethod
    def _classify(ctx: FlowContext, first: TxnRecord, extra: TxnRecord) -> str:
        if first.stan is not None and first.stan == extra.stan:
            return "retransmission"
        if operator_override(ctx.journal, extra) is not None:
            return "operator_override"  # charged again on purpose: only the operator's confirmation undoes it
        if first.order_ref and first.order_ref == extra.order_ref:
            return "duplicate_order"
        for row in ctx.journal.detections("duplicate_charge"):
            if set(json.loads(row["txn_ids"])) == {first.id, extra.id}:
                return str(json.loads(row["evidence"]).get("classification", "possible_second_purchase"))
        return "possible_second_purchase"
