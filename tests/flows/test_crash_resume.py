"""A crash at each step of each flow, then a restart on the same journal file and a resume.

For every scenario a clean run records the kill points the flow passes (its own write-ahead steps and the
engine's sends). Then, for each point, a fresh till runs the same day, crashes there (an exception raised by
the kill hook), restarts (journal reopened, new engine, ``recover()``), resumes the incident, and must end with
the same outcome, the same money on the host's books per card and the same state of the original.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from posguard.card import CardData
from posguard.flows import FlowOutcome, FlowRequest
from posguard.flows.base import FlowCrash
from tests.engine.conftest import OTHER_PAN, card
from tests.flows.conftest import DIALECTS, Desk, desk_for

Setup = Callable[[Desk], tuple[FlowRequest, str]]


def wrong_card_before(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(), 100_00)
    return FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN), original_card=card()), sale.txn_id


def wrong_card_after(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(), 100_00)
    desk.settle()
    return FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN)), sale.txn_id


def overcharge(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(), 120_00)
    return FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=100_00, right_card=card()), sale.txn_id


def duplicate(desk: Desk) -> tuple[FlowRequest, str]:
    desk.engine.sale(card(), 42_00, order_ref="ORDER-1")
    extra = desk.engine.sale(card(), 42_00, order_ref="ORDER-1")
    return FlowRequest("duplicate_charge", (extra.txn_id,)), extra.txn_id


def void_undone(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(), 60_00)
    void = desk.engine.void(sale.txn_id)
    desk.engine.reverse(void.txn_id)
    return FlowRequest("void_mismatch", (sale.txn_id,)), sale.txn_id


def unsettled(desk: Desk) -> tuple[FlowRequest, str]:
    desk.sim.add_fault("no_response", mti="0200")
    desk.sim.add_fault("no_response", mti="0400", times=0)
    lost = desk.engine.sale(card(), 10_00)
    desk.sim.clear_faults()
    desk.clock.advance(3600)
    return FlowRequest("unsettled"), lost.txn_id


def unsigned_void(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(signature=True), 20_00)  # the customer left; asked, they agree to cancel it
    return FlowRequest("unsigned", (sale.txn_id,), customer_present=False, follow_up="voided_with_consent",
                       operator="supervisor S01"), sale.txn_id


def unsigned_pad(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(signature=True), 20_00)
    return FlowRequest("unsigned", (sale.txn_id,), customer_present=True, signature=b"strokes"), sale.txn_id


def card_decline(desk: Desk) -> tuple[FlowRequest, str]:
    sale = desk.engine.sale(card(), 10_00)
    return FlowRequest("reversal", (sale.txn_id,), reason="card_decline"), sale.txn_id


SCENARIOS: dict[str, Setup] = {f.__name__: f for f in (wrong_card_before, wrong_card_after, overcharge, duplicate,
                                                        void_undone, unsettled, unsigned_void, unsigned_pad,
                                                        card_decline)}


def money(desk: Desk) -> dict[str | None, int]:
    """What each card pays on the host's books: approved sales minus approved refunds."""
    net: Counter[str | None] = Counter()
    for e in desk.ledger(status="approved"):
        if e.kind == "sale":
            net[e.pan_masked] += e.amount or 0
        elif e.kind == "refund":
            net[e.pan_masked] -= e.amount or 0
    return dict(net)


def _again(c: CardData | None) -> CardData | None:
    """The same card presented again: a new read, with a new cryptogram."""
    return None if c is None or not c.field55 else dataclasses.replace(c, field55=card(c.pan.reveal()).field55)


def reference(dialect: str, name: str, tmp_path: Path) -> tuple[FlowOutcome, dict[str | None, int], str, list[str]]:
    with desk_for(dialect, tmp_path / "ref") as desk:
        request, txn_id = SCENARIOS[name](desk)
        start = len(desk.points)
        out = desk.run(request)
        points = [p for p in desk.points[start:] if p.startswith(("flow.", "host."))]
        return out, money(desk), desk.journal.get_txn(txn_id).state, points


def crash_and_resume(dialect: str, name: str, point: str, tmp_path: Path) -> tuple[FlowOutcome, dict[str | None, int],
                                                                                 str]:
    with desk_for(dialect, tmp_path / "crash") as desk:
        request, txn_id = SCENARIOS[name](desk)
        desk.crash_at = point
        with pytest.raises(FlowCrash):
            desk.run(request)
        desk.restart()
        if point == "flow.before:open_incident":  # nothing journaled yet: the operator starts again
            out = desk.run(request)
        else:
            # after the restart the operator presents the cards again: a chip read is single-use
            out = desk.resume(desk.open_incident(), dataclasses.replace(
                request, incident_id=None, right_card=_again(request.right_card),
                original_card=_again(request.original_card)))
        return out, money(desk), desk.journal.get_txn(txn_id).state


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_crash_at_every_step_then_resume(dialect: str, name: str, tmp_path: Path) -> None:
    ref, ref_money, ref_state, points = reference(dialect, name, tmp_path)
    assert ref.outcome not in ("refused", "failed", "pending"), ref.reason
    flow_points = [p for p in points if p.startswith("flow.")]
    assert "flow.before:open_incident" in flow_points and "flow.after:close_incident" in flow_points
    for i, point in enumerate(dict.fromkeys(points)):
        out, got_money, state = crash_and_resume(dialect, name, point, tmp_path / str(i))
        assert (out.outcome, got_money, state) == (ref.outcome, ref_money, ref_state), f"crash at {point}"
