"""Unsigned: a sale approved with a signature CVM and no signature on file (merchant guide 004).

pos-flows.md (A) "Not signed": detect by 9F34 (signature CVM, result unknown) and no e-signature stored.
**One incident per sale**: the signature deadline, the operator's "the customer left", the batch closing
unsigned and every later outcome all move the same incident (:func:`incident_for_sale`), so the statistics
count the sale once.

Procedure:

1. find the sale and check a signature is owed (9F34 says signature; not exempt; not already signed);
2. a system fault (the signature pad failed) is escalated to the acquiring bank: a note on the incident;
3. customer present: capture the signature — an e-signature image (stored under the data directory, its
   SHA-256 the evidence on the incident and in the journal), or the merchant copy re-signed on paper, which
   the operator confirms — and mark the sale signed;
4. customer gone: a follow-up task — how to contact the customer (as the merchant gave it: sealed, shown
   masked), a deadline on the engine's clock, and the customer a notice asking them to sign; its outcome is
   recorded later: **signed later** (补签, with the evidence), **kept at the merchant's risk**, or **voided with
   the customer's consent** (a void before settlement, a refund of what stands after; a supervisor approves, as
   for any money going back). A follow-up past its deadline is kept at the merchant's risk.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Final

from posguard.engine.chart import CHART
from posguard.engine.journal import TxnRecord
from posguard.flows.base import Flow, FlowContext, FlowOutcome, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome, unfinished
from posguard.flows.unsigned_follow_up import (
    Contact,
    ContactError,
    SignatureFileError,
    incident_for_sale,
    parse_contact,
    store_signature,
)

__all__ = ["UnsignedFlow", "FOLLOW_UP_ACTIONS"]

_OWED = ("signature_pending", "unsigned")
#: what an operator (or the follow-up deadline) may record on an unsigned sale's incident
FOLLOW_UP_ACTIONS: Final = ("signed_later", "kept_at_risk", "voided_with_consent", "escalate", "contacted",
                            "deadline")
#: outcomes after which the sale owes nothing more, unless the customer signs or consents after all
_FINAL: Final = frozenset({Outcome.SIGNED, Outcome.SIGNED_LATER, Outcome.VOIDED, Outcome.REFUNDED})


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


class UnsignedFlow(Flow):
    kind = "unsigned"
    default_cause = "operator_input"

    def run(self, ctx: FlowContext, request: FlowRequest, *, dry_run: bool = False) -> FlowOutcome:
        """Run on the sale's one incident: the one already opened for it, if any."""
        if request.incident_id is None and not dry_run and request.txn_ids:
            found = incident_for_sale(ctx.journal, request.txn_ids[0])
            if found is not None:
                request = replace(request, incident_id=found)
        return super().run(ctx, request, dry_run=dry_run)

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        action = request.follow_up
        if action is not None and action not in FOLLOW_UP_ACTIONS:
            raise FlowRefused(f"unknown follow-up outcome {action!r}; one of {', '.join(FOLLOW_UP_ACTIONS)}")
        sale = self.original(ctx, request)
        previous = self._previous(ctx, steps)
        self._had_outcome = previous
        # 1. is a signature owed?
        if sale.signature == "captured" or sale.state == "signed" or previous in (Outcome.SIGNED,
                                                                                  Outcome.SIGNED_LATER):
            steps.note("check_signature", f"{sale.id} is already signed; nothing to do", txn_id=sale.id)
            return previous if previous in _FINAL else Outcome.SIGNED, "already signed"
        if previous in (Outcome.VOIDED, Outcome.REFUNDED):
            return previous, f"already {previous} with the customer's consent"
        if sale.state not in _OWED and sale.signature not in ("pending", "missing"):
            raise FlowRefused(f"{sale.id} ({sale.state}, signature {sale.signature}) owes no signature")
        steps.note("check_signature", f"{sale.id} owes a signature (9F34 {sale.cvm_results}, "
                   f"signature {sale.signature})", txn_id=sale.id)
        following = steps.done_before("follow_up_opened") is not None or previous == Outcome.KEPT_AT_MERCHANT_RISK

        # 2. a system fault goes to the bank
        if (action == "escalate" or request.cause == "device_fault") and steps.done_before(
                "escalated_to_bank") is None:
            steps.note("escalated_to_bank", f"system fault ({request.claim or 'the signature pad failed'}): "
                       f"escalated to the acquiring bank — report terminal {sale.terminal_id}, batch {sale.batch_no}, "
                       f"STAN {sale.stan}, RRN {sale.rrn}; the sale still owes a signature", txn_id=sale.id)
            if not request.customer_present:
                return self._follow_up(ctx, request, steps, sale, "escalated to the acquiring bank")

        # 3. customer present (or back): capture
        if request.customer_present or action == "signed_later":
            self._capture(ctx, request, steps, sale)
            later = following or action == "signed_later"
            return (Outcome.SIGNED_LATER if later else Outcome.SIGNED), ("signed afterwards (补签)" if later else "")

        # 4. customer gone: the follow-up and its outcomes
        if action in ("kept_at_risk", "deadline"):
            why = ("the follow-up deadline passed without a signature" if action == "deadline"
                   else f"the merchant ({request.operator or 'operator'}) keeps the sale unsigned")
            steps.note(steps.fresh_name("keep_at_merchant_risk"), f"{sale.id} kept unsigned at the merchant's risk "
                       f"({why}); keep the slip, expect a chargeback risk", txn_id=sale.id)
            return Outcome.KEPT_AT_MERCHANT_RISK, why
        if action == "voided_with_consent":
            return self._void_with_consent(ctx, request, steps, sale)
        if previous == Outcome.KEPT_AT_MERCHANT_RISK and action is None and not request.contact:
            return previous, "already kept at the merchant's risk"
        if ctx.policies.unsigned_customer_gone == "keep" and not following and action is None:
            why = "the merchant's policy keeps unsigned sales"
            steps.note("keep_at_merchant_risk", f"{sale.id} kept unsigned at the merchant's risk ({why}); keep the "
                       "slip, expect a chargeback risk", txn_id=sale.id)
            return Outcome.KEPT_AT_MERCHANT_RISK, why
        return self._follow_up(ctx, request, steps, sale, "")

    _had_outcome: Outcome | None = None

    def _close(self, ctx: FlowContext, runner: StepRunner, result: FlowOutcome, *, by: str | None = None) -> None:
        """A refused action on a sale's incident is a step; the incident keeps the outcome it had. A notice goes out
        only when the outcome moves."""
        if result.outcome == Outcome.REFUSED and self._had_outcome not in (None, Outcome.REFUSED):
            runner.note(runner.fresh_name("refused"), result.reason, status="refused")
            return
        if result.outcome == self._had_outcome:
            result.notice = None  # the customer was told already (a contact attempt, a second claim)
        super()._close(ctx, runner, result, by=by)

    # -- the follow-up ---------------------------------------------------------------------------------
    def _follow_up(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner, sale: TxnRecord,
                   why: str) -> tuple[Outcome, str]:
        contact = self._contact(request)
        sealed = (ctx.engine.sealer.seal({"how": contact.how, "value": contact.value},
                                         f"contact:{steps.incident_id}").hex()
                  if contact is not None and steps.incident_id is not None else None)
        opened = steps.done_before("follow_up_opened")
        if opened is None:
            deadline = ctx.now() + ctx.policies.follow_up_deadline
            steps.note("follow_up_opened", f"the customer left without signing {sale.id}: contact them to sign "
                       f"afterwards by {_utc(deadline)} (then it is kept at the merchant's risk); contact "
                       f"{contact.masked if contact else 'not given yet'}", txn_id=sale.id, deadline=deadline,
                       contact=contact.masked if contact else None, contact_sealed=sealed)
        else:
            deadline = float(opened.get("deadline") or ctx.now())
            if contact is not None:
                name = "contacted" if request.follow_up == "contacted" else "contact_recorded"
                steps.note(steps.fresh_name(name), f"{'contacted the customer' if name == 'contacted' else 'contact'}"
                           f" {contact.masked} (by {request.operator or 'operator'})", txn_id=sale.id,
                           contact=contact.masked, contact_sealed=sealed)
            elif request.follow_up == "contacted":
                by = request.operator or "operator"
                steps.note(steps.fresh_name("contacted"), f"contacted the customer (by {by})", txn_id=sale.id)
        return Outcome.FOLLOW_UP, why or f"contact the customer to sign by {_utc(deadline)}"

    @staticmethod
    def _contact(request: FlowRequest) -> Contact | None:
        if not request.contact:
            return None
        try:
            return parse_contact(request.contact)
        except ContactError as exc:
            raise FlowRefused(str(exc)) from None

    def _capture(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner, sale: TxnRecord) -> None:
        source = request.signature_source or ("pad" if request.signature else "paper")
        if source == "pad":
            if not request.signature:
                raise FlowRefused("no e-signature image from the pad: capture it, or record a re-signed merchant "
                                  "copy (signature_source='paper')")
            folder = ctx.policies.signature_dir
            if steps.dry_run or not folder:
                where, digest = None, hashlib.sha256(request.signature).hexdigest()
            else:
                try:
                    where, digest = store_signature(folder, sale.id, request.signature)
                except SignatureFileError as exc:
                    raise FlowRefused(str(exc)) from None
            steps.note(steps.fresh_name("store_e_signature"), f"e-signature {len(request.signature)} bytes sha256 "
                       f"{digest} stored {'at ' + where if where else 'as hash only'}", txn_id=sale.id,
                       sha256=digest, path=where)
        elif source == "paper":
            if not request.operator:
                raise FlowRefused("a re-signed merchant copy is recorded by the operator who saw it signed: name "
                                  "the operator")
            steps.note(steps.fresh_name("record_paper_signature"), f"operator {request.operator} confirms the "
                       "merchant copy was re-signed", txn_id=sale.id, operator=request.operator)
        else:
            raise FlowRefused(f"unknown signature source {source!r}; pad or paper")
        state = ctx.journal.get_txn(sale.id).state
        if not steps.dry_run and CHART.allows(sale.kind, state, "sign"):
            ctx.engine.sign(sale.id)
            steps.note(steps.fresh_name("mark_signed"), f"{sale.id} marked signed", txn_id=sale.id)
        else:
            steps.note(steps.fresh_name("mark_signed"), f"{sale.id} is {state}: the signature is recorded on the "
                       "incident", txn_id=sale.id)

    def _void_with_consent(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner,
                           sale: TxnRecord) -> tuple[Outcome, str]:
        if not request.operator:
            raise FlowRefused("a void with the customer's consent gives money back: a supervisor approves it "
                              "(sup=...)")
        steps.note("customer_consent", f"the customer agreed to cancel {sale.id} rather than sign; approved by "
                   f"{request.operator}", txn_id=sale.id, operator=request.operator)
        outcome, last = self.give_back(ctx, steps, sale, void_step="void_unsigned", refund_step="refund_unsigned")
        if steps.dry_run or last.status == "done":
            return outcome, "" if steps.dry_run else "with the customer's consent"
        return unfinished(last.status, last.detail)

    @staticmethod
    def _previous(ctx: FlowContext, steps: StepRunner) -> Outcome | None:
        """The outcome the sale's incident last reached (None: new, or none yet)."""
        if steps.incident_id is None:
            return None
        last = None
        for ev in ctx.journal.flow_events(steps.incident_id):
            if ev["kind"] == "flow_outcome":
                last = json.loads(ev["detail"]).get("outcome")
        try:
            return Outcome(last) if last else None
        except ValueError:
            return None
