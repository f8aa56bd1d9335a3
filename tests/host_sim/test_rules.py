"""Approval rules are data: defaults, replacement at run time, JSON round trip."""

from __future__ import annotations

import pytest

from firmware_sim.host import DEFAULT_RULES, HostSimulator, Rule, RuleSet

from .wire import WireClient, cup_sale


@pytest.mark.parametrize(
    ("pan", "amount", "rc"),
    [
        ("4000000000000002", 100, "05"),
        ("4000000000009995", 100, "51"),
        ("9999991234567890", 100, "14"),
        ("6222021234567890123", 10_000_000, "61"),
        ("6222021234567890123", 0, "13"),
        ("6222021234567890123", 9_999_999, "00"),
    ],
)
def test_default_rules_decide_by_pan_and_amount(cup_sim: HostSimulator, cup_client: WireClient,
                                                pan: str, amount: int, rc: str):
    resp = cup_client.exchange(cup_sale(1, amount, pan=pan))
    assert resp["39"] == rc
    assert ("38" in resp) == (rc == "00")
    [entry] = cup_sim.ledger.find(kind="sale")
    assert entry.status == ("approved" if rc == "00" else "declined")


def test_rules_replaced_at_run_time_first_match_wins(cup_sim: HostSimulator, cup_client: WireClient):
    cup_sim.set_rules({"rules": [
        {"name": "bin limit", "pan_prefix": "622202", "min_amount": 5001, "rc": "51"},
        {"name": "tid blocked", "tid": "TERM0002", "rc": "58"},
    ]})
    assert cup_client.exchange(cup_sale(1, 5000))["39"] == "00"
    assert cup_client.exchange(cup_sale(2, 5001))["39"] == "51"
    assert cup_client.exchange(cup_sale(3, 10, tid="TERM0002"))["39"] == "58"


def test_duplicate_check_can_be_switched_off(cup_sim: HostSimulator, cup_client: WireClient):
    cup_sim.set_rules({"rules": [], "duplicate_check": False})
    assert cup_client.exchange(cup_sale(1, 100))["39"] == "00"
    assert cup_client.exchange(cup_sale(1, 100))["39"] == "00"


def test_ruleset_json_round_trip_and_validation():
    again = RuleSet.from_dict(DEFAULT_RULES.to_dict())
    assert again == DEFAULT_RULES
    assert RuleSet.from_json('{"rules": [{"rc": "05", "kinds": ["sale"]}]}').rules == [Rule(rc="05", kinds=("sale",))]
    with pytest.raises(ValueError, match="unknown rule keys"):
        RuleSet.from_dict({"rules": [{"rc": "05", "bin": "4"}]})
    with pytest.raises(ValueError, match="2 characters"):
        RuleSet.from_dict({"rules": [{"rc": "5"}]})
