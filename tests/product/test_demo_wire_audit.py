"""The acquirer's audit of a recorded demo day (issue 11 section 3): ``posguard demo --record`` for each dialect
family, then every outgoing authorisation decoded by pyiso8583 (tests/product/wire_audit.py): 9F02 equals
field 4, no ARQC and no card ATC sent twice, every swiped sale carries field 35 (since swipe-tc); one card read per
sale, and the card's TC for every approved chip sale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.product.conftest import ROOT, clear_pan_hits
from tests.product.wire_audit import (
    Auth,
    amount_problems,
    authorisations,
    local_time_problems,
    mac_problems,
    pin_problems,
    replay_problems,
    swipe_problems,
)

DIALECTS = ("cup", "iso87ascii")


@pytest.fixture(scope="module", params=DIALECTS)
def recorded_day(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[str, Path, str, list[Auth]]:
    dialect = str(request.param)
    record = tmp_path_factory.mktemp(f"audit-{dialect}") / "day.jsonl"
    proc = subprocess.run([sys.executable, "-m", "posguard.cli", "demo", "--dialect", dialect, "--reader", "twin",
                           "--record", str(record)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dialect, record, proc.stdout, authorisations(record, dialect)


def test_every_authorisation_carries_the_amount_it_was_made_for(recorded_day: tuple[str, Path, str, list[Auth]]
                                                                ) -> None:
    _dialect, record, _out, auths = recorded_day
    chip = [a for a in auths if a.icc]
    assert len(chip) >= 10, f"the day sends a dozen chip sales, found {len(chip)}"
    assert all("9F02" in a.icc and "9F26" in a.icc and "9F36" in a.icc for a in chip)
    assert amount_problems(auths) == []
    assert clear_pan_hits(record.read_bytes()) == []


def test_no_cryptogram_and_no_card_atc_is_sent_twice(recorded_day: tuple[str, Path, str, list[Auth]]) -> None:
    _dialect, _record, _out, auths = recorded_day
    assert replay_problems(auths) == []
    per_card: dict[str, list[int]] = {}
    for a in auths:
        if "9F36" in a.icc:
            per_card.setdefault(a.pan, []).append(int(a.icc["9F36"].hex(), 16))
    assert any(len(atcs) > 2 for atcs in per_card.values())  # cards are used again during the day...
    for atcs in per_card.values():
        assert atcs == sorted(set(atcs))  # ...and each use has a new, higher ATC


def test_the_demo_reads_the_card_for_each_sale(recorded_day: tuple[str, Path, str, list[Auth]]) -> None:
    _dialect, record, out, auths = recorded_day
    reads = [line for line in out.splitlines() if "card read for sale" in line]
    records = [json.loads(line) for line in record.read_text().splitlines()[1:]]
    cards = [r for r in records if r["k"] == "card" and r.get("entry_mode") == "chip"]
    outcomes = [r for r in records if r["k"] == "card_outcome"]
    chip_sales = [a for a in auths if a.icc]
    assert len(reads) == len(cards) >= len(chip_sales)  # a read per presentation; every chip sale had its own
    assert [c["presentation"] for c in cards] == sorted({c["presentation"] for c in cards})
    assert {o["presentation"] for o in outcomes} <= {c["presentation"] for c in cards}
    # the card's second GENERATE AC: a TC for every chip sale the host approved (no card in the day declines)
    approved = [a for a in chip_sales if a.response_code == "00"]
    assert approved and sum(o["cryptogram"] == "TC" for o in outcomes) == len(approved)
    assert all("ARQC atc=" in line for line in reads)


def test_every_swiped_sale_carries_its_track_2(recorded_day: tuple[str, Path, str, list[Auth]]) -> None:
    _dialect, _record, _out, auths = recorded_day
    assert [a for a in auths if a.entry_mode[:2] in ("02", "90")], "the day has a swiped sale"
    assert swipe_problems(auths) == []


def test_every_message_that_needs_a_mac_carries_one(recorded_day: tuple[str, Path, str, list[Auth]]) -> None:
    dialect, record, _out, _auths = recorded_day
    assert mac_problems(record, dialect) == []


def test_every_online_pin_sale_carries_an_accepted_pin_block(recorded_day: tuple[str, Path, str, list[Auth]]
                                                             ) -> None:
    dialect, _record, out, auths = recorded_day
    pin_sales = [a for a in auths if a.icc.get("9F34", b"\0")[0] & 0x3F == 0x02]
    assert len(pin_sales) >= 2, "the day has UnionPay debit sales with online PIN"
    assert pin_problems(auths, dialect) == []
    assert [a.response_code for a in pin_sales if a.response_code][:1] == ["00"]  # the first one, normal trading
    assert "PIN pad: the sign-on's working PIN key loaded" in out


def test_local_date_and_time_are_the_terminals_zone(recorded_day: tuple[str, Path, str, list[Auth]]) -> None:
    dialect, record, _out, _auths = recorded_day
    assert local_time_problems(record, dialect, "Asia/Shanghai") == []
