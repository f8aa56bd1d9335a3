"""The card applet on its own (no pcscd): EMV commands, T=0 shaping, status words, card faults."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from firmware_sim.card import Card, ProfileError, get_profile, profile_names
from firmware_sim.card.crypto import retail_mac
from firmware_sim.card.profiles import luhn_ok
from tests.firmware_sim import emv

TEST_PANS = {"visa_credit_sig": "4761739001010119", "unionpay_debit_pin": "6250947000000014",
             "mastercard_nocvm": "5413330089010434"}


def powered(profile: str, **overrides: object) -> Card:
    card = Card(profile, **overrides)
    card.power_on()
    return card


def send_of(card: Card) -> emv.Send:
    def send(raw: bytes) -> tuple[bytes, int]:
        response = card.transmit(raw)
        return response[:-2], int.from_bytes(response[-2:], "big")
    return send


@pytest.mark.parametrize("profile", sorted(TEST_PANS))
def test_each_profile_reads_like_a_payment_card(profile: str) -> None:
    found = emv.read_application(send_of(powered(profile)))
    assert found["5A"].hex().rstrip("f") == TEST_PANS[profile]
    assert found["57"].hex().upper().startswith(TEST_PANS[profile] + "D2812")
    assert found["5F24"] == bytes.fromhex("281231")
    assert {"8C", "8D", "8E", "82", "94"} <= set(found)
    assert luhn_ok(TEST_PANS[profile])


def test_cvm_lists_ask_for_signature_online_pin_and_no_cvm() -> None:
    first_rule = {}
    for profile in TEST_PANS:
        cvm = emv.read_application(send_of(powered(profile)))["8E"]
        first_rule[profile] = cvm[8] & 0x3F
    assert first_rule == {"visa_credit_sig": 0x1E, "unionpay_debit_pin": 0x02, "mastercard_nocvm": 0x1F}


def test_unionpay_pse_lists_both_aids_with_priorities() -> None:
    send = send_of(powered("unionpay_debit_pin"))
    emv.exchange(send, emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))
    entries = []
    for number in (1, 2):
        record, sw = emv.exchange(send, emv.apdu(0x00, 0xB2, number, 0x0C))
        assert sw == 0x9000
        entries.append((emv.tlv_find(record, "4F"), emv.tlv_find(record, "87")))
    assert entries == [(bytes.fromhex("A000000333010101"), b"\x01"), (bytes.fromhex("A000000333010102"), b"\x02")]
    assert emv.exchange(send, emv.apdu(0x00, 0xB2, 3, 0x0C))[1] == 0x6A83


def test_t0_card_defers_case4_data_to_get_response_and_corrects_le_with_6c() -> None:
    card = powered("visa_credit_sig")
    assert card.transmit(emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE)) == bytes.fromhex("611C")
    part = card.transmit(bytes.fromhex("00C0000010"))
    assert part[-2:] == bytes.fromhex("610C") and len(part) == 18
    rest = card.transmit(bytes.fromhex("00C00000FF"))
    assert rest == bytes.fromhex("6C0C")
    rest = card.transmit(bytes.fromhex("00C000000C"))
    assert rest[-2:] == b"\x90\x00"
    assert emv.tlv_find(part[:-2] + rest[:-2], "88") == b"\x01"
    wrong_le = card.transmit(bytes.fromhex("00B2010C00"))
    assert wrong_le[0] == 0x6C
    record = card.transmit(bytes.fromhex("00B2010C") + wrong_le[1:])
    assert record[-2:] == b"\x90\x00" and record[0] == 0x70


def test_direct_profile_answers_without_procedure_bytes() -> None:
    card = powered("mastercard_nocvm")
    response = card.transmit(emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))
    assert response[0] == 0x6F and response[-2:] == b"\x90\x00"
    assert card.transmit(bytes.fromhex("00C0000010")) == bytes.fromhex("6D00")


def test_t0_behaviour_is_a_profile_option() -> None:
    card = powered("visa_credit_sig", t0_get_response=False)
    assert card.transmit(emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))[-2:] == b"\x90\x00"


@pytest.mark.parametrize(("apdu", "sw"), [
    ("00AA000000", 0x6D00),  # unknown INS
    ("00A4010000", 0x6A86),  # SELECT by file id: wrong P1
    ("00A4040007A000000099999900", 0x6A82),  # no such application
    ("80A8000002830000", 0x6985),  # GPO with nothing selected
    ("80CA9F9900", 0x6A88),  # GET DATA of an unknown tag
    ("00B2010000", 0x6A86),  # READ RECORD P2 without the SFI bits
])
def test_status_words(apdu: str, sw: int) -> None:
    card = powered("visa_credit_sig", t0_get_response=False)
    assert card.transmit(bytes.fromhex(apdu))[-2:] == sw.to_bytes(2, "big")


def test_record_and_file_not_found() -> None:
    send = send_of(powered("visa_credit_sig"))
    emv.read_application(send)
    assert emv.exchange(send, emv.apdu(0x00, 0xB2, 9, (1 << 3) | 4))[1] == 0x6A83
    assert emv.exchange(send, emv.apdu(0x00, 0xB2, 1, (7 << 3) | 4))[1] == 0x6A82


def test_gpo_checks_the_pdol_data_length() -> None:
    card = powered("visa_credit_sig", t0_get_response=False)
    card.transmit(emv.apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000031010")))
    assert card.transmit(bytes.fromhex("80A80000048302000000"))[-2:] == bytes.fromhex("6700")


def test_get_data_atc_and_pin_try_counter() -> None:
    card = powered("visa_credit_sig", t0_get_response=False)
    assert card.transmit(bytes.fromhex("80CA9F3600")) == bytes.fromhex("9F360200109000")
    assert card.transmit(bytes.fromhex("80CA9F1700")) == bytes.fromhex("9F1701039000")
    assert card.transmit(bytes.fromhex("80CA9F4F00"))[:3] == bytes.fromhex("9F4F0E")


def test_verify_counts_down_then_blocks() -> None:
    card = powered("unionpay_debit_pin", t0_get_response=False)
    card.transmit(emv.apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A000000333010101")))
    wrong = bytes.fromhex("002000800824" + "9999" + "FF" * 5)
    right = bytes.fromhex("002000800824" + "1234" + "FF" * 5)
    assert card.transmit(bytes.fromhex("00200080082499FFFFFFFFFFFF")) == bytes.fromhex("6A80")
    assert card.transmit(wrong) == bytes.fromhex("63C2")
    assert card.transmit(right) == bytes.fromhex("9000")
    assert [card.transmit(wrong) for _ in range(3)] == [bytes.fromhex(s) for s in ("63C2", "63C1", "63C0")]
    assert card.transmit(right) == bytes.fromhex("6983")
    assert card.transmit(bytes.fromhex("80CA9F1700")) == bytes.fromhex("9F1701009000")


def _arqc(card: Card, amount: int, unpredictable: int = 0x12345678) -> dict[str, bytes]:
    send = send_of(card)
    found = emv.read_application(send)
    return emv.generate_ac(send, found["8C"], 0x80, amount, unpredictable)


def test_arqc_changes_with_amount_and_atc_and_is_repeatable() -> None:
    card = powered("visa_credit_sig")
    first = _arqc(card, 1000)
    second = _arqc(card, 1000)
    other_amount = _arqc(powered("visa_credit_sig"), 1001)
    same_again = _arqc(powered("visa_credit_sig"), 1000)
    assert first["9F27"] == b"\x80"
    assert int.from_bytes(second["9F36"], "big") == int.from_bytes(first["9F36"], "big") + 1 == 18
    assert first["9F26"] != second["9F26"]  # same data, next ATC
    assert other_amount["9F26"] != first["9F26"]  # same ATC, other amount
    assert same_again["9F26"] == first["9F26"]  # deterministic
    assert len(first["9F26"]) == 8 and first["9F10"][:4] == bytes.fromhex("06010A03")


@pytest.mark.parametrize(("second_gac", "cid"), [("approve", 0x40), ("decline", 0x00)])
def test_second_generate_ac(second_gac: str, cid: int) -> None:
    card = powered("visa_credit_sig", second_gac=second_gac)
    send = send_of(card)
    found = emv.read_application(send)
    emv.generate_ac(send, found["8C"], 0x80, 1000)
    result = emv.generate_ac(send, found["8D"], 0x40, 1000)
    assert result["9F27"] == bytes([cid])
    third, sw = emv.exchange(send, emv.apdu(0x80, 0xAE, 0x40, 0x00, bytes(29)))
    assert sw == 0x6985


def test_generate_ac_rejects_a_wrong_cdol_length_and_rfu_p1() -> None:
    card = powered("mastercard_nocvm")
    send = send_of(card)
    found = emv.read_application(send)
    assert send(emv.apdu(0x80, 0xAE, 0x80, 0x00, bytes(10)))[1] == 0x6700
    assert send(emv.apdu(0x80, 0xAE, 0xC0, 0x00, emv.dol_data(found["8C"], {})))[1] == 0x6A86


def test_retail_mac_matches_triple_des_for_one_block() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    msg = b"1234567"  # one block once padded with 80
    enc = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    assert retail_mac(key, msg) == enc.update(msg + b"\x80") + enc.finalize()


def test_card_faults_sw_corrupt_mute_pull_delay() -> None:
    card = powered("mastercard_nocvm")
    card.faults.add("sw sw=6F00 ins=B2")
    send = send_of(card)
    send(emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))
    assert send(emv.apdu(0x00, 0xB2, 1, 0x0C)) == (b"", 0x6F00)
    record, sw = send(emv.apdu(0x00, 0xB2, 1, 0x0C))
    assert sw == 0x9000  # times=1: the fault is spent
    card.faults.add("corrupt_tlv delta=3")
    record, sw = send(emv.apdu(0x00, 0xB2, 1, 0x0C))
    assert sw == 0x9000 and record[1] == len(record) - 2 + 3
    with pytest.raises(ValueError):
        emv.tlv_find(record, "4F")
    card.faults.add("mute ins=CA after=1")
    assert card.process(bytes.fromhex("80CA9F3600")).response is not None
    assert card.process(bytes.fromhex("80CA9F3600")).response is None
    card.faults.add("delay seconds=0.25")
    assert card.process(bytes.fromhex("80CA9F3600")).delay == 0.25
    card.faults.add("pull")
    outcome = card.process(bytes.fromhex("80CA9F3600"))
    assert outcome.pulled and outcome.response is None and not card.powered


def test_profiles_are_printable_data_and_validated() -> None:
    assert profile_names() == sorted(TEST_PANS)
    with pytest.raises(ProfileError, match="Luhn"):
        get_profile("visa_credit_sig", pan="4111111111111112")
    with pytest.raises(ProfileError, match="unknown card profile"):
        get_profile("amex_gold")
    assert get_profile("visa_credit_sig", t0_get_response="false")["t0_get_response"] is False
