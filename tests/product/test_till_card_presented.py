"""The till asks for the card at every charge (posguard.presenting), against the host simulator over TCP: a
stored chip read is sent once only, a card that is not presented sends nothing, and a card pulled before its
second GENERATE AC after the host approved is reversed (the card never said yes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from posguard.card import CardData
from posguard.presenting import CardNotPresented, CardOutcome, CardRequest, HostAnswer
from posguard.service.till import Till
from tests.engine.conftest import card
from tests.flows.conftest import DIALECTS, desk_for


class PulledCard:
    """A chip card that leaves the reader before the second GENERATE AC."""

    def __init__(self, card: CardData) -> None:
        self.card = replace(card, second_gac=True)
        self.evidence: dict[str, object] = {}
        self.closed = False

    def complete(self, answer: HostAnswer) -> CardOutcome | None:
        raise OSError("card removed")

    def close(self) -> None:
        self.closed = True


class Presenter:
    def __init__(self) -> None:
        self.shown: list[PulledCard] = []

    def present(self, request: CardRequest) -> PulledCard:
        if request.ref != "c1":
            raise CardNotPresented("cancelled: no card was read and nothing was sent")
        self.shown.append(PulledCard(card()))
        return self.shown[-1]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_stored_chip_read_is_sent_once(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = Till(desk.engine, dialect=dialect)
        till.add_card("c1", card())
        first = till.do("sale", card="c1", amount=10_00)
        assert first is not None and first.approved
        assert till.do("sale", card="c1", amount=10_00) is None
        assert till.refusal is not None and f"already sent in {first.txn_id}" in till.refusal
        assert len(desk.ledger(kind="sale")) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_card_not_presented_sends_nothing(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = Till(desk.engine, dialect=dialect)
        till.presenter = Presenter()
        assert till.do("sale", card="c9", amount=10_00) is None
        assert till.refusal == "cancelled: no card was read and nothing was sent"
        assert desk.ledger() == [] and desk.journal.find_txns() == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_card_pulled_before_the_second_generate_ac_is_reversed(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        said: list[str] = []
        till = Till(desk.engine, dialect=dialect, say=said.append)
        till.presenter = presenter = Presenter()
        sale = till.do("sale", card="c1", amount=33_00)
        assert sale is not None and sale.response_code == "00" and sale.state == "reversed"
        assert presenter.shown[0].closed
        assert any("did not complete" in line and "card removed" in line for line in said)
        (inc,) = till.incidents
        assert (inc.kind, inc.rule) == ("reversal", "card_declined_after_approval")
        assert [e.status for e in desk.ledger(kind="sale")] == ["reversed"]
