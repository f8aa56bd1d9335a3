"""Property: whatever sale/refund/settle/correction sequence a day holds, the customer pays the intended total.

Each example is a day on the real acquirer simulator over loopback TCP (virtual clock): a charge, zero or more
partial refunds for goods brought back (each lowers the intended total), a settlement at any point, then the
correction the mistake calls for. The money is read from the *host's* books — approved sales less approved
refunds, over every card of the customer — so a leg that charged or gave back the original instead of what
stood is caught.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posguard.flows import FlowRequest
from tests.engine.conftest import OTHER_PAN, card
from tests.flows.conftest import DIALECTS, Desk, desk_for

UNIT = 100  # whole currency units keep the examples readable


@dataclass(frozen=True)
class Day:
    dialect: str
    kind: str  # wrong_amount | wrong_card | duplicate_charge
    intended: int  # what the customer meant to pay before anything was brought back
    charged: int  # what the operator keyed (wrong_amount: differs from intended)
    returns: tuple[int, ...]  # goods brought back, refunded before the correction
    settle_at: int  # settle after this many refunds (-1: never)


@st.composite
def days(draw: st.DrawFn) -> Day:
    kind = draw(st.sampled_from(["wrong_amount", "wrong_card", "duplicate_charge"]))
    intended = draw(st.integers(2, 400)) * UNIT
    charged = intended
    if kind == "wrong_amount":
        charged = draw(st.integers(2, 400).filter(lambda x: x * UNIT != intended)) * UNIT
    returns: list[int] = []
    room = min(intended, charged) - UNIT  # something always stays charged
    for _ in range(draw(st.integers(0, 2))):
        if room < UNIT:
            break
        r = draw(st.integers(1, room // UNIT)) * UNIT
        returns.append(r)
        room -= r
    settle_at = draw(st.integers(-1, len(returns)))
    return Day(draw(st.sampled_from(DIALECTS)), kind, intended, charged, tuple(returns), settle_at)


def paid_at_host(desk: Desk) -> int:
    """What the customer's cards were charged in the end, as the acquirer books it."""
    total = 0
    for e in desk.ledger(status="approved"):
        if e.kind == "sale":
            total += e.amount or 0
        elif e.kind == "refund":
            total -= e.amount or 0
    return total


def live_day(day: Day) -> tuple[int, int, str]:
    """Run the day; returns (paid at the host, intended total, outcome)."""
    with tempfile.TemporaryDirectory() as tmp, desk_for(day.dialect, Path(tmp)) as desk:
        first = desk.engine.sale(card(), day.charged)
        assert first.approved, first
        extra = desk.engine.sale(card(), day.charged) if day.kind == "duplicate_charge" else None
        intended = day.intended
        for i, r in enumerate(day.returns):
            if i == day.settle_at:
                desk.settle()
            assert desk.engine.refund(first.txn_id, r).approved
            intended -= r
        if day.settle_at == len(day.returns):
            desk.settle()
        if day.kind == "wrong_amount":
            request = FlowRequest("wrong_amount", (first.txn_id,), intended_amount=intended, right_card=card())
        elif day.kind == "wrong_card":
            request = FlowRequest("wrong_card", (first.txn_id,), right_card=card(OTHER_PAN), original_card=card())
        else:
            assert extra is not None
            request = FlowRequest("duplicate_charge", (first.txn_id, extra.txn_id), operator_confirmed=True)
        out = desk.run(request)
        return paid_at_host(desk), intended, str(out.outcome)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(days())
def test_the_customer_pays_the_intended_total(day: Day) -> None:
    paid, intended, outcome = live_day(day)
    assert outcome in ("corrected", "refunded", "voided"), (day, outcome)
    assert paid == intended, (day, paid, intended)


def test_wrong_card_after_a_partial_refund_charges_what_stood() -> None:
    """The issue's case: sale 100, refund 30, settled; wrong card -> refund 70, new sale 70 (not 100)."""
    day = Day("cup", "wrong_card", 100_00, 100_00, (30_00,), 1)
    with tempfile.TemporaryDirectory() as tmp, desk_for(day.dialect, Path(tmp)) as desk:
        sale = desk.engine.sale(card(), 100_00)
        assert desk.engine.refund(sale.txn_id, 30_00).approved
        desk.settle()
        out = desk.run(FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN), original_card=card()))
        assert out.outcome == "corrected", out.reason
        assert [s.name for s in out.steps] == ["check_original", "refund_wrong_card", "sale_right_card"]
        refund, resale = desk.wire(out)
        assert refund["4"] == "000000007000" and resale["4"] == "000000007000"
        assert paid_at_host(desk) == 70_00


def test_partly_refunded_charge_before_settlement_is_refunded_not_voided() -> None:
    """A void must be full; on a partly refunded charge it would give the refunded part back twice."""
    with tempfile.TemporaryDirectory() as tmp, desk_for("iso87ascii", Path(tmp)) as desk:
        sale = desk.engine.sale(card(), 100_00)
        assert desk.engine.refund(sale.txn_id, 30_00).approved
        out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=50_00, right_card=card()))
        assert out.outcome == "refunded", out.reason
        (refund,) = desk.wire(out)
        assert refund["3"] == "200000" and refund["4"] == "000000002000"
        assert paid_at_host(desk) == 50_00
