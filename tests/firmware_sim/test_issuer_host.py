"""The issuer inside the host simulator, over real loopback TCP with raw pyiso8583 requests (CUP and ISO)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest

from firmware_sim.card import Card
from firmware_sim.host import HostSimulator, SimConfig
from tests.firmware_sim import emv
from tests.firmware_sim.issuer_kit import PANS, ChipRead, find_91
from tests.host_sim.wire import WireClient, cup_refund, cup_reversal, cup_sale, cup_void, iso_sale

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

UP = PANS["unionpay_debit_pin"]
VISA = PANS["visa_credit_sig"]
SWIPED_T2 = "D28122011000000000000"  # YYMM 2812, service code 201 (chip card), discretionary data


@pytest.fixture
def cup() -> Iterator[tuple[HostSimulator, WireClient]]:
    with HostSimulator(SimConfig(dialect="cup")) as sim:
        client = WireClient(sim.address, "cup")
        client.sign_on()  # a strict acquirer: working keys first, every request MACed with them
        yield sim, client
        client.close()


def chip_sale(stan: int, read: ChipRead, *, pan: str = UP, amount: int | None = None, **fields: str) -> dict[str, str]:
    req = cup_sale(stan, read.amount if amount is None else amount, pan=pan)
    req["55"] = read.field55()
    req["23"] = "001"
    req.update(fields)
    return req


def note_of(sim: HostSimulator, stan: int) -> str:
    [entry] = [e for e in sim.ledger.find(stan=f"{stan:06d}") if e.kind in ("sale", "preauth")]
    return entry.note


def test_approved_chip_sale_carries_91_and_the_card_answers_tc(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    card = Card("unionpay_debit_pin")
    read = ChipRead.at(card, 4200)
    resp = client.exchange(chip_sale(1, read))
    assert resp["39"] == "00"
    issuer_data = find_91(resp["55"])
    assert issuer_data is not None and len(issuer_data) == 10 and issuer_data[8:] == b"00"
    assert read.second_gac(issuer_data) == b"\x40"
    assert note_of(sim, 1) == "issuer: checks passed"
    assert "55" in sim.sent[-1] and UP not in repr(sim.received) + repr(sim.sent)


@pytest.mark.parametrize(("case", "rc", "why"), [
    ("no_55", "30", "chip entry (22=052) without field 55"),
    ("amount", "13", "field 55.9F02 = 000000001000 differs from field 4 = 000000001500"),
    ("arqc", "05", "the ARQC (55.9F26) does not verify at ATC 17"),
    ("swipe_no_35", "30", "swiped entry (22=022) without field 35"),
    ("chip_swiped", "45", "chip card (service code 201) swiped without the fallback entry mode (22=022)"),
])
def test_each_decline_reason_over_the_wire(cup: tuple[HostSimulator, WireClient], case: str, rc: str,
                                           why: str) -> None:
    sim, client = cup
    read = ChipRead.at(Card("unionpay_debit_pin"), 1000)
    req = {
        "no_55": {k: v for k, v in chip_sale(1, read).items() if k != "55"},
        "amount": chip_sale(1, read, amount=1500),
        "arqc": chip_sale(1, read, **{"55": read.field55(**{"9F1A": bytes.fromhex("0840")})}),
        "swipe_no_35": {k: v for k, v in cup_sale(1, 1000, pan=UP).items()} | {"22": "022"},
        "chip_swiped": cup_sale(1, 1000, pan=UP) | {"22": "022", "35": UP + SWIPED_T2},
    }[case]
    resp = client.exchange(req)
    assert resp["39"] == rc
    assert "55" not in resp
    assert why in note_of(sim, 1)
    assert sim.ledger.find(stan="000001")[0].status == "declined"


def test_fallback_swipe_with_track2_is_left_to_the_rules(cup: tuple[HostSimulator, WireClient]) -> None:
    _sim, client = cup
    # 22.3 = 2: these requests carry no PIN block (the strict host refuses a 22.3 = 1 without field 52)
    assert client.exchange(cup_sale(1, 1000, pan=UP) | {"22": "802", "35": UP + SWIPED_T2})["39"] == "00"
    sale = cup_sale(2, 1000, pan=UP) | {"22": "022", "35": UP + SWIPED_T2, "60": "2200000100052"}  # 60.5 = 2
    assert client.exchange(sale)["39"] == "00"


def test_atc_replay_from_the_card_is_declined(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    card = Card("unionpay_debit_pin", faults=["atc_replay ins=AE after=1"])
    first = ChipRead.at(card, 1000)
    assert client.exchange(chip_sale(1, first))["39"] == "00"
    card.power_off()
    replay = ChipRead.at(card, 1000, un=0x0BADCAFE)  # a new, valid ARQC, but at the same ATC
    assert replay.values["9F36"] == first.values["9F36"] and replay.values["9F26"] != first.values["9F26"]
    assert client.exchange(chip_sale(2, replay))["39"] == "05"
    assert "ATC 17 is not greater than the last one seen (17)" in note_of(sim, 2)
    card.power_off()
    assert client.exchange(chip_sale(3, ChipRead.at(card, 1000)))["39"] == "00"  # ATC 18 goes through


def test_bad_arpc_fault_makes_the_card_decline_after_approval(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    sim.add_fault("bad_arpc", mti="0200")
    read = ChipRead.at(Card("unionpay_debit_pin"), 3000)
    resp = client.exchange(chip_sale(1, read))
    assert resp["39"] == "00"
    assert read.second_gac(find_91(resp["55"])) == b"\x00"  # the terminal must now reverse the sale


@pytest.mark.parametrize("template", ["71", "72"])
def test_issuer_script_in_the_answer_runs_on_the_card(cup: tuple[HostSimulator, WireClient], template: str) -> None:
    sim, client = cup
    sim.add_fault("issuer_script", mti="0200", template=template)
    card = Card("unionpay_debit_pin", pin_tries=3)
    card.applet.memory.pin_tries = 0  # blocked: the issuer unblocks it
    read = ChipRead.at(card, 5000)
    resp = client.exchange(chip_sale(1, read))
    assert resp["39"] == "00" and emv.tlv_find(bytes.fromhex(resp["55"]), template) is not None
    if template == "71":
        assert read.script_sw(resp["55"], "71") == [0x9000]
        assert read.second_gac(find_91(resp["55"])) == b"\x40"
    else:
        assert read.second_gac(find_91(resp["55"])) == b"\x40"
        assert read.script_sw(resp["55"], "72") == [0x9000]
    assert card.applet.memory.pin_tries == 3


def test_a_script_with_a_wrong_mac_is_refused_by_the_card(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    sim.add_fault("issuer_script", mti="0200", command="bad_mac")
    read = ChipRead.at(Card("unionpay_debit_pin"), 5000)
    resp = client.exchange(chip_sale(1, read))
    assert read.second_gac(find_91(resp["55"])) == b"\x40"
    assert read.script_sw(resp["55"], "72") == [0x6988]


def test_wrong_9f02_fault_is_declined_13(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    sim.add_fault("wrong_9f02", mti="0200")
    resp = client.exchange(chip_sale(1, ChipRead.at(Card("unionpay_debit_pin"), 1000)))
    assert resp["39"] == "13" and "55.9F02 = 000000001001 differs from field 4" in note_of(sim, 1)


def test_voids_refunds_and_reversals_need_no_arqc(cup: tuple[HostSimulator, WireClient]) -> None:
    _sim, client = cup
    card = Card("unionpay_debit_pin")
    sale = client.exchange(chip_sale(1, ChipRead.at(card, 1000)))
    assert client.exchange(cup_void(2, 1000, sale["37"], sale["38"], 1, pan=UP))["39"] == "00"
    card.power_off()
    second = chip_sale(3, ChipRead.at(card, 2000))
    sale2 = client.exchange(second)
    assert client.exchange(cup_refund(4, 500, sale2["37"], 3, pan=UP))["39"] == "00"
    assert client.exchange(cup_reversal(second))["39"] == "00"


def test_preauth_is_checked_like_a_sale(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    read = ChipRead.at(Card("unionpay_debit_pin"), 1000)
    req = chip_sale(1, read, amount=999) | {"t": "0100", "3": "030000", "60": "10000001000"}
    assert client.exchange(req)["39"] == "13"
    assert "differs from field 4" in note_of(sim, 1)


def test_unknown_cards_keep_the_rules_unless_strict() -> None:
    sale = cup_sale(1, 1000)  # the host_sim tests' PAN, not in the card file: no field 55 needed
    with HostSimulator(SimConfig(dialect="cup")) as sim:
        with closing(_signed_on(sim, "cup")) as client:
            assert client.exchange(sale)["39"] == "00"
    with HostSimulator(SimConfig(dialect="cup", issuer_strict_unknown=True)) as sim:
        with closing(_signed_on(sim, "cup")) as client:
            assert client.exchange(sale)["39"] == "14"
        assert "not in the issuer's card file" in sim.ledger.find(kind="sale")[0].note
    with HostSimulator(SimConfig(dialect="cup", issuer=False)) as sim:
        with closing(_signed_on(sim, "cup")) as client:
            assert client.exchange(cup_sale(1, 1000, pan=UP))["39"] == "00"  # no issuer: rules only


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87", "iso87bcd"])
def test_iso_dialects_verify_the_arqc_and_answer_91(dialect: str) -> None:
    with HostSimulator(SimConfig(dialect=dialect)) as sim:
        with closing(_signed_on(sim, dialect)) as client:
            read = ChipRead.at(Card("visa_credit_sig"), 1234)
            req = iso_sale(1, 1234, pan=VISA) | {"55": read.field55()}
            resp = client.exchange(req)
            assert resp["39"] == "00", sim.ledger.find(stan="000001")[0].note
            assert read.second_gac(find_91(resp["55"])) == b"\x40"  # through EXTERNAL AUTHENTICATE
            swiped = iso_sale(2, 100, pan=VISA) | {"22": "901", "35": VISA + SWIPED_T2}
            assert client.exchange(swiped)["39"] == "12"
            assert client.exchange(iso_sale(3, 1234, pan=VISA) | {"55": read.field55()})["39"] == "05"


def test_the_control_channel_shows_the_issuer_log_masked(cup: tuple[HostSimulator, WireClient]) -> None:
    sim, client = cup
    client.exchange(cup_sale(1, 1000, pan=UP) | {"22": "022"})
    reply = sim.control({"cmd": "issuer"})
    assert reply["ok"] and reply["enabled"]
    assert reply["log"] == ["625094******0014 30 issuer: swiped entry (22=022) without field 35"]


def _signed_on(sim: HostSimulator, dialect: str) -> WireClient:
    """A client of a strict acquirer: signed on, its requests MACed with the issued key."""
    client = WireClient(sim.address, dialect)
    client.sign_on()
    return client
