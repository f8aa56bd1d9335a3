"""Issue 10, "a host that stalls mid-answer jams the link": against the real simulator in its hostile modes
(half an answer then silence, an answer dripped a byte at a time and never finished, a frame header announcing
the largest length, garbage), the sale's outcome at the host and in the journal agree and no charge stands
without its reversal. The reversal never follows its original into a stuck connection: it goes on a fresh one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posguard.engine.hostlink import LinkEventKind
from tests.engine.conftest import card
from tests.integration.test_engine_with_host_sim import DIALECTS, till

#: hostile answer -> (what the link reports, connections used): a stuck connection is dropped before the
#: reversal; an impossible frame length or garbage is reported at once; garbage in a whole frame leaves the
#: connection clean, so the reversal may use it
HOSTILE = {
    "half_then_silence": (LinkEventKind.DISCONNECTED, 2),
    "drip": (LinkEventKind.DISCONNECTED, 2),
    "oversized": (LinkEventKind.UNDECODABLE, 2),
    "garbage": (LinkEventKind.UNDECODABLE, 1),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_answer_to_a_sale_ends_reversed_on_a_fresh_connection(dialect: str, kind: str,
                                                                        tmp_path: Path) -> None:
    with till(dialect, tmp_path) as t:
        t.sim.add_fault(kind, mti="0200", delay=1.0)
        sale = t.engine.sale(card(), 42_00)

        assert sale.state == "reversed", sale.operator_message
        [charge] = t.sim.ledger.find(kind="sale")
        assert charge.status == "reversed"  # the host's book and the journal agree
        assert t.charges() == []
        assert [i.state for i in t.journal.saf_items()] == ["acknowledged"]
        reported, connections = HOSTILE[kind]
        assert t.link.stats.connects == connections
        assert any(e.kind is reported for e in t.events)
        if reported is LinkEventKind.DISCONNECTED:
            [dropped] = [e for e in t.events if e.kind is LinkEventKind.DISCONNECTED]
            assert "stuck" in dropped.detail and dropped.mti in ("0400", "0420")  # dropped before the reversal

        # and the terminal trades on: the next sale is approved on the healthy connection
        assert t.engine.sale(card(), 5_00).approved
        assert len(t.sim.ledger.find(kind="sale", status="approved")) == 1
