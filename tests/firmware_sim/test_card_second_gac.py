"""The card applet as a real card: ATC, the cryptogram's inputs, issuer authentication at the second GENERATE AC
(tag 91 in CDOL2 or EXTERNAL AUTHENTICATE), issuer scripts with a secure-messaging MAC, offline PIN counter.

The expected ARPCs and script MACs are computed here with pyemv (EMV Book 2 8.2.1, 9.2.3), not with the card's
own ``crypto`` module, so a bug in the card cannot hide behind itself.
"""

from __future__ import annotations

import warnings

import pytest
from pyemv import ac as emv_ac
from pyemv import kd as emv_kd
from pyemv import sm as emv_sm

from firmware_sim.card import Card
from tests.firmware_sim import emv

AMOUNT = 1000
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


def _sk(card: Card, r: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return emv_kd.derive_common_sk(bytes.fromhex(card.profile["master_key"]), r)


def arpc(card: Card, atc: bytes, arqc: bytes, arc: bytes = b"00") -> bytes:
    """Issuer authentication data 91 = ARPC method 1 || ARC, computed with pyemv."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return emv_ac.generate_arpc_1(_sk(card, atc + bytes(6)), arqc, arc) + arc


def script(card: Card, header: bytes, data: bytes, atc: bytes, arqc: bytes, *, bad_mac: bool = False) -> bytes:
    lc = bytes([len(data) + 8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mac = emv_sm.generate_command_mac(_sk(card, arqc), header + lc + atc + arqc + data)
    if bad_mac:
        mac = bytes([mac[0] ^ 0x80]) + mac[1:]
    return header + lc + data + mac


def send_of(card: Card) -> emv.Send:
    def send(raw: bytes) -> tuple[bytes, int]:
        response = card.transmit(raw)
        return response[:-2], int.from_bytes(response[-2:], "big")
    return send


class Terminal:
    """Drives one card through read, first GENERATE AC and the second one (plain bytes, tests' own TLV)."""

    def __init__(self, card: Card) -> None:
        self.card = card
        card.power_on()
        self.found = emv.read_application(self.send)
        self.first: dict[str, bytes] = {}

    def send(self, raw: bytes) -> tuple[bytes, int]:
        response = self.card.transmit(raw)
        return response[:-2], int.from_bytes(response[-2:], "big")

    def gac1(self, amount: int = AMOUNT, un: int = 0x12345678) -> dict[str, bytes]:
        self.first = emv.generate_ac(self.send, self.found["8C"], 0x80, amount, un)
        return self.first

    def gac2(self, p1: int = 0x40, issuer_data: bytes | None = None, arc: bytes = b"00",
             amount: int = AMOUNT) -> tuple[dict[str, bytes], int]:
        values = emv.terminal_values(amount)
        values["8A"] = arc
        if issuer_data is not None:
            values["91"] = issuer_data
        data = emv.dol_data(self.found["8D"], values)
        resp, sw = emv.exchange(self.send, emv.apdu(0x80, 0xAE, p1, 0x00, data))
        return {tag: emv.tlv_find(resp, tag) or b"" for tag in ("9F27", "9F36", "9F26", "9F10")}, sw

    def external_authenticate(self, issuer_data: bytes) -> int:
        return emv.exchange(self.send, emv.apdu(0x00, 0x82, 0x00, 0x00, issuer_data, le=None))[1]

    def good_arpc(self, arc: bytes = b"00") -> bytes:
        return arpc(self.card, self.first["9F36"], self.first["9F26"], arc)


def cvr(answer: dict[str, bytes]) -> bytes:
    return answer["9F10"][-4:]


# -- ATC and the first GENERATE AC ---------------------------------------------------------------------------
def test_atc_increases_at_every_generate_ac_and_survives_power_cycles() -> None:
    card = Card("visa_credit_sig")
    seen = []
    for _ in range(3):
        t = Terminal(card)
        seen.append(int.from_bytes(t.gac1()["9F36"], "big"))
        card.power_off()
    assert seen == [17, 18, 19]  # profile ATC 16, +1 per GENERATE AC, never reset by a power cycle
    assert card.status()["atc"] == 19


def test_an_exhausted_atc_refuses_generate_ac_instead_of_wrapping() -> None:
    t = Terminal(Card("visa_credit_sig", atc=0xFFFF))
    data = emv.dol_data(t.found["8C"], emv.terminal_values(AMOUNT))
    assert emv.exchange(t.send, emv.apdu(0x80, 0xAE, 0x80, 0x00, data))[1] == 0x6985
    assert t.card.applet.memory.atc == 0xFFFF


def test_generate_ac_without_gpo_is_refused_and_a_wrong_length_too() -> None:
    card = Card("mastercard_nocvm")
    card.power_on()
    send = send_of(card)
    emv.exchange(send, emv.apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000041010")))
    cdol_len = sum(length for _, length in card.profile["cdol1"])
    assert emv.exchange(send, emv.apdu(0x80, 0xAE, 0x80, 0x00, bytes(cdol_len)))[1] == 0x6985  # no GPO yet
    t = Terminal(Card("mastercard_nocvm"))
    assert emv.exchange(t.send, emv.apdu(0x80, 0xAE, 0x80, 0x00, bytes(cdol_len - 1)))[1] == 0x6700


@pytest.mark.parametrize("change", ["amount", "unpredictable_number"])
def test_the_arqc_covers_the_amount_and_the_unpredictable_number(change: str) -> None:
    """Two identical cards at the same ATC: same data -> same ARQC; 9F02 or 9F37 changed -> another ARQC."""
    base = Terminal(Card("visa_credit_sig")).gac1(1000, 0x11111111)
    same = Terminal(Card("visa_credit_sig")).gac1(1000, 0x11111111)
    other_args = (1001, 0x11111111) if change == "amount" else (1000, 0x22222222)
    other = Terminal(Card("visa_credit_sig")).gac1(*other_args)
    assert base["9F36"] == same["9F36"] == other["9F36"]
    assert base["9F26"] == same["9F26"]
    assert base["9F26"] != other["9F26"]


def test_atc_replay_fault_makes_the_card_reuse_its_atc() -> None:
    card = Card("visa_credit_sig", faults=["atc_replay ins=AE after=1"])
    first = Terminal(card).gac1()
    card.power_off()
    second = Terminal(card).gac1()
    assert first["9F36"] == second["9F36"] == (17).to_bytes(2, "big")
    card.power_off()
    assert Terminal(card).gac1()["9F36"] == (18).to_bytes(2, "big")  # the fault fired once


# -- issuer authentication in CDOL2 (tag 91) ----------------------------------------------------------------
def test_unionpay_cdol2_carries_91_and_a_good_arpc_gives_tc() -> None:
    t = Terminal(Card("unionpay_debit_pin"))
    assert t.found["8D"].startswith(bytes.fromhex("910A"))
    t.gac1()
    answer, sw = t.gac2(issuer_data=t.good_arpc())
    assert sw == 0x9000 and answer["9F27"] == b"\x40"
    assert answer["9F36"] == t.first["9F36"]  # the second AC uses the same ATC
    assert cvr(answer)[2] & 0xC0 == 0  # issuer authentication neither failed nor missing


def test_a_bad_arpc_gives_aac_and_the_cvr_says_issuer_authentication_failed() -> None:
    t = Terminal(Card("unionpay_debit_pin"))
    t.gac1()
    bad = bytearray(t.good_arpc())
    bad[0] ^= 0x01
    answer, sw = t.gac2(issuer_data=bytes(bad))
    assert sw == 0x9000 and answer["9F27"] == b"\x00"
    assert cvr(answer)[2] & 0x80


def test_a_profile_may_tolerate_a_failed_arpc_but_still_records_it() -> None:
    t = Terminal(Card("unionpay_debit_pin", issuer_auth_failure="approve"))
    t.gac1()
    answer, _ = t.gac2(issuer_data=bytes(8) + b"00")
    assert answer["9F27"] == b"\x40" and cvr(answer)[2] & 0x80


def test_no_issuer_authentication_data_is_tolerated_or_declined_per_profile() -> None:
    t = Terminal(Card("unionpay_debit_pin"))
    t.gac1()
    answer, _ = t.gac2()  # 91 zero-filled: the host sent none
    assert answer["9F27"] == b"\x40" and cvr(answer)[2] & 0x40
    strict = Terminal(Card("unionpay_debit_pin", issuer_auth_missing="decline"))
    strict.gac1()
    assert strict.gac2()[0]["9F27"] == b"\x00"


def test_an_arc_that_is_not_an_approval_makes_the_card_decline_a_tc_request() -> None:
    t = Terminal(Card("unionpay_debit_pin"))
    t.gac1()
    answer, _ = t.gac2(issuer_data=t.good_arpc(b"51"), arc=b"00")
    assert answer["9F27"] == b"\x00"


def test_a_tc_request_with_a_declining_8a_gets_aac_but_unable_to_go_online_may_approve() -> None:
    t = Terminal(Card("mastercard_nocvm"))
    t.gac1()
    assert t.gac2(arc=b"51")[0]["9F27"] == b"\x00"
    offline = Terminal(Card("mastercard_nocvm"))
    offline.gac1()
    assert offline.gac2(arc=b"Z3")[0]["9F27"] == b"\x40"


def test_card_decline_at_the_second_gac_after_a_host_approval() -> None:
    t = Terminal(Card("unionpay_debit_pin", second_gac="decline"))
    t.gac1()
    answer, sw = t.gac2(issuer_data=t.good_arpc())
    assert sw == 0x9000 and answer["9F27"] == b"\x00"


def test_host_decline_gets_aac_and_no_third_generate_ac() -> None:
    t = Terminal(Card("visa_credit_sig"))
    t.gac1()
    answer, _ = t.gac2(p1=0x00, arc=b"05")
    assert answer["9F27"] == b"\x00"
    assert t.gac2()[1] == 0x6985


# -- EXTERNAL AUTHENTICATE (CDOL2 without 91) ------------------------------------------------------------------
def test_external_authenticate_good_then_tc() -> None:
    t = Terminal(Card("visa_credit_sig"))
    assert "91" not in [tag for tag, _ in t.card.profile["cdol2"]]
    assert t.external_authenticate(bytes(10)) == 0x6985  # before the ARQC
    t.gac1()
    assert t.external_authenticate(t.good_arpc()) == 0x9000
    assert t.external_authenticate(t.good_arpc()) == 0x6985  # once per transaction
    answer, _ = t.gac2()
    assert answer["9F27"] == b"\x40" and cvr(answer)[2] & 0xC0 == 0


def test_external_authenticate_failing_answers_6300_then_aac() -> None:
    t = Terminal(Card("visa_credit_sig"))
    t.gac1()
    assert t.external_authenticate(bytes(8) + b"00") == 0x6300
    answer, _ = t.gac2()
    assert answer["9F27"] == b"\x00" and cvr(answer)[2] & 0x80


def test_external_authenticate_is_refused_when_the_aip_has_no_issuer_authentication() -> None:
    t = Terminal(Card("mastercard_nocvm"))  # AIP 1800
    t.gac1()
    assert t.external_authenticate(t.good_arpc()) == 0x6985
    assert t.gac2()[0]["9F27"] == b"\x40"


# -- issuer scripts ----------------------------------------------------------------------------------------------
def _block_pin(t: Terminal) -> list[int]:
    wrong = bytes.fromhex("249999FFFFFFFFFF")
    return [emv.exchange(t.send, emv.apdu(0x00, 0x20, 0x00, 0x80, wrong, le=None))[1] for _ in range(4)]


def test_offline_pin_try_counter_counts_down_and_blocks() -> None:
    t = Terminal(Card("unionpay_debit_pin"))
    assert emv.exchange(t.send, emv.apdu(0x00, 0x20, 0x00, 0x80, le=None))[1] == 0x63C3
    assert _block_pin(t) == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    right = bytes.fromhex("241234FFFFFFFFFF")
    assert emv.exchange(t.send, emv.apdu(0x00, 0x20, 0x00, 0x80, right, le=None))[1] == 0x6983


def test_pin_unblock_script_with_a_good_mac_resets_the_counter() -> None:
    card = Card("unionpay_debit_pin")
    t = Terminal(card)
    _block_pin(t)
    t.gac1()
    t.gac2(issuer_data=t.good_arpc())
    command = script(card, bytes.fromhex("84240000"), b"", t.first["9F36"], t.first["9F26"])
    assert emv.exchange(t.send, command)[1] == 0x9000  # a 72 script, after the second GENERATE AC
    assert card.applet.memory.pin_tries == 3
    card.power_off()
    nxt = Terminal(card).gac1()
    assert cvr(nxt)[3] == 0x10  # the next ARQC reports one script command, none failed


def test_a_script_with_a_wrong_or_missing_mac_is_not_executed() -> None:
    card = Card("unionpay_debit_pin")
    t = Terminal(card)
    _block_pin(t)
    t.gac1()
    bad = script(card, bytes.fromhex("84240000"), b"", t.first["9F36"], t.first["9F26"], bad_mac=True)
    assert emv.exchange(t.send, bad)[1] == 0x6988
    assert emv.exchange(t.send, bytes.fromhex("8424000004AABBCCDD"))[1] == 0x6987
    assert card.applet.memory.pin_tries == 0
    answer, _ = t.gac2(issuer_data=t.good_arpc())  # a 71 script ran before the second GENERATE AC
    assert cvr(answer)[3] == 0x28  # two script commands, one failed


def test_a_script_before_any_arqc_is_refused() -> None:
    card = Card("visa_credit_sig")
    Terminal(card)
    assert emv.exchange(send_of(card),
                        bytes.fromhex("84240000080102030405060708"))[1] == 0x6985


def test_put_data_and_update_record_scripts_change_what_the_card_answers() -> None:
    card = Card("visa_credit_sig")
    t = Terminal(card)
    t.gac1()
    atc, arqc = t.first["9F36"], t.first["9F26"]
    assert emv.exchange(t.send, script(card, bytes.fromhex("84DA9F58"), b"\x03", atc, arqc))[1] == 0x9000
    data, sw = emv.exchange(t.send, emv.apdu(0x80, 0xCA, 0x9F, 0x58))
    assert sw == 0x9000 and emv.tlv_find(data, "9F58") == b"\x03"
    inner = bytes.fromhex("5F2008") + b"NEW/NAME"
    record = bytes([0x70, len(inner)]) + inner
    assert emv.exchange(t.send, script(card, bytes.fromhex("84DC010C"), record, atc, arqc))[1] == 0x9000
    assert emv.exchange(t.send, emv.apdu(0x00, 0xB2, 0x01, 0x0C))[0] == record
    assert emv.exchange(t.send, script(card, bytes.fromhex("84DC090C"), record, atc, arqc))[1] == 0x6A83


def test_application_block_script_blocks_the_next_transaction() -> None:
    card = Card("mastercard_nocvm")
    t = Terminal(card)
    t.gac1()
    command = script(card, bytes.fromhex("841E0000"), b"", t.first["9F36"], t.first["9F26"])
    assert emv.exchange(t.send, command)[1] == 0x9000
    card.power_off()
    card.power_on()
    send = send_of(card)
    assert emv.exchange(send, emv.apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000041010")))[1] == 0x6283
    assert emv.exchange(send, emv.apdu(0x80, 0xA8, 0x00, 0x00, bytes.fromhex("830300") + bytes(2)))[1] == 0x6985
