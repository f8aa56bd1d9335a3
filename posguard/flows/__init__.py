"""Correction flows: one module per incident kind, each reading like the supervisor's procedure.

The contract other parts of posguard code against::

    from posguard.flows import FLOWS, FlowContext, FlowRequest
    outcome = FLOWS["wrong_card"]().run(FlowContext(engine, journal, "cup", policies, clock),
                                        FlowRequest("wrong_card", ("TERM0001-00000001",), right_card=card))

``run(..., dry_run=True)`` returns the steps and the (card-data-free) messages it would send, and sends and
writes nothing. ``Flow.resume(ctx, incident_id)`` continues an incident a crash interrupted.
"""

from __future__ import annotations

from posguard.flows.base import (
    CAUSES,
    INCIDENT_KINDS,
    Flow,
    FlowContext,
    FlowOutcome,
    FlowPolicies,
    FlowRefused,
    FlowRequest,
    Step,
)
from posguard.flows.duplicate import DuplicateChargeFlow
from posguard.flows.outcomes import Outcome
from posguard.flows.reversal import ReversalFlow
from posguard.flows.unsettled import UnsettledFlow
from posguard.flows.unsigned import UnsignedFlow
from posguard.flows.void_mismatch import VoidMismatchFlow
from posguard.flows.wrong_amount import WrongAmountFlow
from posguard.flows.wrong_card import WrongCardFlow

__all__ = ["FLOWS", "Flow", "FlowContext", "FlowRequest", "FlowOutcome", "FlowPolicies", "FlowRefused", "Step",
           "INCIDENT_KINDS", "CAUSES", "Outcome", "run_flow"]

FLOWS: dict[str, type[Flow]] = {
    "duplicate_charge": DuplicateChargeFlow,
    "unsigned": UnsignedFlow,
    "void_mismatch": VoidMismatchFlow,
    "unsettled": UnsettledFlow,
    "wrong_card": WrongCardFlow,
    "wrong_amount": WrongAmountFlow,
    "reversal": ReversalFlow,
}


def run_flow(ctx: FlowContext, request: FlowRequest, *, dry_run: bool = False) -> FlowOutcome:
    """Run the flow registered for ``request.kind``."""
    try:
        flow = FLOWS[request.kind]
    except KeyError:
        raise FlowRefused(f"no correction flow for {request.kind!r}; known: {', '.join(FLOWS)}") from None
    return flow().run(ctx, request, dry_run=dry_run)
