"""Unsigned: a sale approved with a signature CVM and no signature on file.

Procedure:

1. find the sale and check a signature is owed (9F34 says signature; not exempt; not already signed);
2. customer present: capture the signature — an e-signature image from the signature pad, stored with the
   transaction (its SHA-256 in the journal, the image in the configured signature store), or the merchant
   copy re-signed on paper and recorded by the operator;
3. customer gone: per policy, keep the sale at the merchant's risk (recorded) or void it before settlement.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from posguard.engine.chart import CHART
from posguard.flows.base import Flow, FlowContext, FlowRefused, FlowRequest, StepRunner
from posguard.flows.outcomes import Outcome, unfinished

__all__ = ["UnsignedFlow"]

_OWED = ("signature_pending", "unsigned")


class UnsignedFlow(Flow):
    kind = "unsigned"
    default_cause = "operator_input"

    def procedure(self, ctx: FlowContext, request: FlowRequest, steps: StepRunner) -> tuple[Outcome, str]:
        engine, journal = ctx.engine, ctx.journal
        # 1. is a signature owed?
        sale = self.original(ctx, request)
        if sale.signature == "captured" or sale.state == "signed":
            steps.note("check_signature", f"{sale.id} is already signed; nothing to do", txn_id=sale.id)
            return Outcome.SIGNED, "already signed"
        if sale.state not in _OWED and sale.signature not in ("pending", "missing"):
            raise FlowRefused(f"{sale.id} ({sale.state}, signature {sale.signature}) owes no signature")
        steps.note("check_signature", f"{sale.id} owes a signature (9F34 {sale.cvm_results}, "
                   f"signature {sale.signature})", txn_id=sale.id)

        # 2. customer present: capture
        if request.customer_present:
            source = request.signature_source or ("pad" if request.signature else "paper")
            if source == "pad":
                if not request.signature:
                    raise FlowRefused("no e-signature image from the pad: capture it, or record a re-signed "
                                      "merchant copy (signature_source='paper')")
                digest = hashlib.sha256(request.signature).hexdigest()
                where = self._store(ctx, sale.id, request.signature) if not steps.dry_run else None
                steps.note("store_e_signature", f"e-signature {len(request.signature)} bytes sha256 {digest[:16]}… "
                           f"stored {'at ' + where if where else 'as hash only'}", txn_id=sale.id, sha256=digest,
                           path=where)
            elif source == "paper":
                steps.note("record_paper_signature", f"operator {request.operator or '?'} recorded the re-signed "
                           "merchant copy", txn_id=sale.id, operator=request.operator)
            else:
                raise FlowRefused(f"unknown signature source {source!r}; pad or paper")
            if not steps.dry_run and CHART.allows(sale.kind, journal.get_txn(sale.id).state, "sign"):
                engine.sign(sale.id)
            steps.note("mark_signed", f"{sale.id} marked signed", txn_id=sale.id)
            return Outcome.SIGNED, ""

        # 3. customer gone: keep or void, as the merchant configured
        policy = ctx.policies.unsigned_customer_gone
        if policy == "void" and self.settled(ctx, sale) and steps.done_before("void_unsigned") is None:
            raise FlowRefused(f"{sale.id} is in a settled batch: a void is no longer possible; keep the sale at "
                              "the merchant's risk, or refund it if the customer agrees")
        if policy == "void":
            last = steps.online("void_unsigned", kind="void", mti=engine.profile.spec("void").mti,
                                would=f"void {sale.id} for {sale.amount_minor}",
                                action=lambda: engine.void(sale.id),
                                match=lambda t: t.original_id == sale.id,
                                planned=lambda: self.planned_message(ctx, "void", sale, sale.amount_minor))
            if steps.dry_run:
                return Outcome.VOIDED.would, ""
            return (Outcome.VOIDED, "") if last.status == "done" else unfinished(last.status, last.detail)
        why = "the merchant's policy keeps unsigned sales"
        steps.note("keep_at_merchant_risk", f"{sale.id} kept unsigned at the merchant's risk ({why}); keep the "
                   "slip, expect a chargeback risk", txn_id=sale.id)
        return Outcome.KEPT_AT_MERCHANT_RISK, why

    @staticmethod
    def _store(ctx: FlowContext, txn_id: str, image: bytes) -> str | None:
        if not ctx.policies.signature_dir:
            return None
        folder = Path(ctx.policies.signature_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{txn_id}.sig"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image)
        return str(path)
