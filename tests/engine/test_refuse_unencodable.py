"""Issue 10, finding "one operator line bricks the terminal": a request the dialect cannot encode (a 13-digit
amount, a card number keyed as the amount) is refused before anything is journaled, armed or sent."""

from __future__ import annotations

from typing import Any

import pytest

from posguard.engine.errors import RequestRefused
from tests.engine.conftest import VISA_PAN, card
from tests.engine.fakehost import FakeHost


@pytest.mark.parametrize("dialect", ["iso87ascii", "cup"])
@pytest.mark.parametrize("amount", [1_000_000_000_000, int(VISA_PAN)], ids=["13-digits", "pan-as-amount"])
def test_unencodable_amount_is_refused_before_the_journal(make_engine: Any, host: FakeHost, dialect: str,
                                                          amount: int) -> None:
    engine = make_engine(dialect)
    with pytest.raises(RequestRefused) as err:
        engine.sale(card(), amount)
    assert err.value.field == "4" and "field 4" in str(err.value)
    assert VISA_PAN not in str(err.value)
    assert engine.journal.find_txns() == [] and engine.journal.saf_items() == []
    assert host.wire == []
    assert VISA_PAN not in "".join(r["masked"] for r in engine.journal.messages())

    # the terminal goes on: the next sale is sent, and a restart recovers nothing odd
    assert engine.sale(card(), 1250).approved
    report = make_engine(dialect).recover()
    assert report.reversals_released == [] and report.still_pending == []
