"""The real engine over the real TcpHostLink against the real acquirer simulator (loopback, virtual clock).

Every scenario asserts on both books: the terminal's journal and the host simulator's ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.hostlink import LinkEvent, TcpHostLink
from posguard.engine.journal import Journal
from posguard.engine.mac import MacKey, MacScheme
from tests.engine.conftest import TERMINAL, card
from tests.engine.test_hostlink import KEY, kinds
from tests.host_sim.harness import linked

DIALECTS = ["iso87ascii", "cup"]
DECLINED_PAN = "4000000000000002"  # the simulator's default rules answer RC 05 for it
TID = TERMINAL.terminal_id


@dataclass
class Till:
    engine: TransactionEngine
    sim: HostSimulator
    link: TcpHostLink
    clock: VirtualClock
    events: list[LinkEvent]

    @property
    def journal(self) -> Journal:
        return self.engine.journal

    def charges(self) -> list[Any]:
        """Sales the host still holds as charged."""
        return self.sim.ledger.find(kind="sale", tid=TID, status="approved")


@contextmanager
def till(dialect: str, tmp_path: Path, **linked_kw: Any) -> Iterator[Till]:
    with linked(dialect=dialect, **linked_kw) as (sim, link, clock, events):
        journal = Journal(tmp_path / "journal.db", clock=clock)
        try:
            engine = TransactionEngine(journal, link, dialect, TERMINAL, clock, Detectors.default(clock))
            yield Till(engine, sim, link, clock, events)
        finally:
            journal.close()


def stan_of(entry: Any) -> int:
    return int(entry.stan)


@pytest.fixture(params=DIALECTS)
def t(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Till]:
    with till(request.param, tmp_path) as t:
        yield t


def test_sale_approved(t: Till) -> None:
    sale = t.engine.sale(card(), 12_34)
    assert sale.approved and sale.response_code == "00"
    assert t.journal.get_txn(sale.txn_id).state == "approved"
    [charge] = t.sim.ledger.find(kind="sale")
    assert charge.status == "approved" and stan_of(charge) == sale.stan and charge.amount == 12_34
    assert charge.rrn == sale.rrn
    totals = t.sim.ledger.totals(TID)
    assert (totals.sale_count, totals.sale_amount) == (1, 12_34)


def test_void_of_an_approved_sale(t: Till) -> None:
    sale = t.engine.sale(card(), 50_00)
    void = t.engine.void(sale.txn_id)
    assert void.approved
    assert t.journal.get_txn(sale.txn_id).state == "voided"
    [charge] = t.sim.ledger.find(kind="sale")
    assert charge.status == "voided" and stan_of(charge) == sale.stan
    [host_void] = t.sim.ledger.find(kind="void")
    assert host_void.status == "approved" and host_void.original_id == charge.id
    assert t.charges() == [] and t.sim.ledger.totals(TID).sale_amount == 0


def test_partial_refund(t: Till) -> None:
    sale = t.engine.sale(card(), 100_00)
    refund = t.engine.refund(sale.txn_id, 30_00)
    assert refund.approved
    original = t.journal.get_txn(sale.txn_id)
    assert original.state == "refunded_partial" and original.refunded_minor == 30_00
    [host_refund] = t.sim.ledger.find(kind="refund")
    assert host_refund.status == "approved" and host_refund.amount == 30_00 and stan_of(host_refund) == refund.stan
    totals = t.sim.ledger.totals(TID)
    assert (totals.sale_amount, totals.refund_amount) == (100_00, 30_00)


def test_no_response_on_the_sale_is_reversed(t: Till) -> None:
    t.sim.add_fault("no_response", mti="0200")
    sale = t.engine.sale(card(), 77_00)
    assert sale.state == "reversed", sale.operator_message
    assert t.clock.monotonic() == pytest.approx(30.0, abs=0.5)
    [charge] = t.sim.ledger.find(kind="sale")  # the host did charge; the terminal never heard
    assert charge.status == "reversed" and stan_of(charge) == sale.stan
    assert len(t.sim.ledger.find(kind="reversal")) == 1
    assert t.charges() == [] and t.sim.ledger.totals(TID).sale_amount == 0
    assert t.journal.incidents("outcome_unknown")
    assert [i.state for i in t.journal.saf_items()] == ["acknowledged"]


def test_decline_by_the_host_rules(t: Till) -> None:
    sale = t.engine.sale(card(DECLINED_PAN), 10_00)
    assert sale.state == "declined" and sale.response_code == "05"
    assert t.journal.saf_items()[0].state == "disarmed"
    [entry] = t.sim.ledger.find(kind="sale")
    assert entry.status == "declined" and entry.rc == "05" and t.charges() == []


def test_wrong_rc_declines_on_the_terminal_while_the_host_booked_an_approval(t: Till) -> None:
    """The host processed the sale as approved but answered RC 51: the books disagree until settlement."""
    t.sim.add_fault("wrong_rc", rc="51")
    sale = t.engine.sale(card(), 10_00)
    assert sale.state == "declined" and sale.response_code == "51"
    assert t.journal.saf_items()[0].state == "disarmed"  # a decline arms no reversal
    [entry] = t.sim.ledger.find(kind="sale")
    assert entry.status == "approved" and stan_of(entry) == sale.stan  # standing charge the terminal doesn't know
    settlement = t.engine.settle()  # reconciliation is where the disagreement surfaces
    assert settlement.totals["debit_minor"] == 0 and not settlement.balanced


@pytest.mark.parametrize("dialect", DIALECTS)
def test_corrupt_response_mac_is_reversed(dialect: str, tmp_path: Path) -> None:
    with till(dialect, tmp_path, sim_config={"mac_algorithm": "x919", "mac_key": KEY, "require_mac": True},
              link_config={"mac": MacScheme("x919", MacKey(KEY))}) as t:
        assert t.engine.sale(card(), 5_00).approved  # MACs good both ways
        t.sim.add_fault("corrupt_mac", mti="0200")
        sale = t.engine.sale(card(), 6_00)
        assert sale.state == "reversed", sale.operator_message
        assert "mac_failure" in kinds(t.events)
        entries = {e.amount: e for e in t.sim.ledger.find(kind="sale")}
        assert entries[5_00].status == "approved" and entries[6_00].status == "reversed"
        assert stan_of(entries[6_00]) == sale.stan
        assert t.sim.ledger.totals(TID).sale_amount == 5_00


def test_disconnect_mid_response_is_reversed(t: Till) -> None:
    t.sim.add_fault("disconnect_mid", mti="0200")
    sale = t.engine.sale(card(), 20_00)
    assert sale.state == "reversed", sale.operator_message
    assert "disconnected" in kinds(t.events)
    [charge] = t.sim.ledger.find(kind="sale")
    assert charge.status == "reversed" and stan_of(charge) == sale.stan and t.charges() == []
    assert t.link.stats.connects == 2  # the reversal went out on a fresh connection


def test_duplicate_response_is_booked_once(t: Till) -> None:
    t.sim.add_fault("duplicate")
    sale = t.engine.sale(card(), 15_00)
    assert sale.approved
    nxt = t.engine.sale(card(), 16_00)  # the stray second 0210 must not answer this one
    assert nxt.approved and nxt.stan != sale.stan
    assert "duplicate_response" in kinds(t.events)
    assert [t.journal.get_txn(x.txn_id).state for x in (sale, nxt)] == ["approved", "approved"]
    charges = t.charges()
    assert sorted((stan_of(c), c.amount) for c in charges) == sorted([(sale.stan, 15_00), (nxt.stan, 16_00)])


def test_response_with_another_stan_times_out_and_is_reversed(t: Till) -> None:
    t.sim.add_fault("other_stan", mti="0200")
    sale = t.engine.sale(card(), 25_00)
    assert sale.state == "reversed", sale.operator_message
    assert kinds(t.events)[:2] == ["unmatched_response", "timeout"]
    [charge] = t.sim.ledger.find(kind="sale")
    assert charge.status == "reversed" and stan_of(charge) == sale.stan and t.charges() == []

