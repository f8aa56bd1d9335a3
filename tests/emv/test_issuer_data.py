"""The card gets the host's answer: 91 by EXTERNAL AUTHENTICATE (or in CDOL2), scripts 71 before and 72 after the
second GENERATE AC, their results in 9F5B; a presentation at this transaction's amount (posguard.emv.presenter)."""

from __future__ import annotations

from datetime import datetime

import pytest

from firmware_sim.card import Card, get_profile
from posguard.emv.issuer import IssuerDataError, parse_issuer_data
from posguard.emv.presenter import present_chip
from posguard.emv.session import complete, read_card
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.iso8583.tlv import build_tlv, find_tag, parse_tlv
from posguard.presenting import CardRequest, HostAnswer
from tests.drivers.twin_sim import TOKEN_KEY
from tests.emv.test_engine_card import AppletReader

CFG = EmvTerminal(pan_token_key=TOKEN_KEY)
TXN = Transaction(amount=30_00, when=datetime(2026, 11, 30, 10, 0, 0), unpredictable_number=bytes.fromhex("01020304"))
ARPC = bytes.fromhex("1122334455667788") + b"00"
SCRIPT_A, SCRIPT_B = bytes.fromhex("0A0B0C0D"), bytes.fromhex("0E0F1011")
UPDATE = bytes.fromhex("84DC010C08") + bytes(8)  # UPDATE RECORD (secure messaging), the command never parsed
BLOCK = bytes.fromhex("841E000004") + bytes(4)  # APPLICATION BLOCK


class IssuerSideReader(AppletReader):
    """The applet, with EXTERNAL AUTHENTICATE and issuer script commands answered by ``answers`` (INS -> SW)."""

    def __init__(self, card: Card, answers: dict[int, int]) -> None:
        super().__init__(card)
        self.answers = answers
        self.log: list[str] = []

    def transmit_raw(self, apdu: bytes) -> bytes:
        if apdu[1] in self.answers:
            self.log.append(f"{apdu[1]:02X}")
            return self.answers[apdu[1]].to_bytes(2, "big")
        if apdu[1] == 0xAE:
            self.log.append("AE")
        return super().transmit_raw(apdu)


def answer_icc(*, scripts: bool = True) -> bytes:
    parts: list[tuple[str, bytes]] = [("91", ARPC)]
    if scripts:
        parts += [("71", build_tlv([("9F18", SCRIPT_A), ("86", UPDATE), ("86", BLOCK)])),
                  ("72", build_tlv([("9F18", SCRIPT_B), ("86", BLOCK)]))]
    return build_tlv(parts)


def test_issuer_data_is_read_out_of_the_answers_field_55() -> None:
    data = parse_issuer_data(answer_icc())
    assert data.auth_data == ARPC
    assert [(s.template, s.script_id, s.commands) for s in data.scripts] == [
        ("71", SCRIPT_A, (UPDATE, BLOCK)), ("72", SCRIPT_B, (BLOCK,))]
    assert parse_issuer_data(b"") == parse_issuer_data(None)
    with pytest.raises(IssuerDataError, match=r"55\.71\.9F18"):
        parse_issuer_data(build_tlv([("71", build_tlv([("9F18", b"\x01"), ("86", BLOCK)]))]))
    with pytest.raises(IssuerDataError) as err:
        parse_issuer_data(bytes.fromhex("9108112233"))  # 91 says 8 bytes, 3 follow
    assert err.value.path is not None and err.value.path.startswith("55")


def test_scripts_go_before_and_after_the_second_generate_ac_and_their_results_are_kept() -> None:
    reader = IssuerSideReader(Card("visa_credit_sig"), {0x82: 0x9000, 0xDC: 0x9000, 0x1E: 0x6A88})
    session = read_card(reader, CFG, TXN)
    data = parse_issuer_data(answer_icc())
    final = complete(reader, session, host_approved=True, response_code="00", issuer_auth_data=data.auth_data,
                     scripts=data.scripts)
    # AIP 1C00 says issuer authentication is supported and CDOL2 has no 91: EXTERNAL AUTHENTICATE first
    assert reader.log == ["AE", "82", "DC", "1E", "AE", "1E"]
    assert final.issuer_authenticated is True and final.cryptogram_type == "TC"
    # 9F5B: script A failed at its 2nd command (6A88), script B's only command failed too
    assert final.script_results == bytes((0x12,)) + SCRIPT_A + bytes((0x11,)) + SCRIPT_B
    assert final.tvr[4] & 0x30 == 0x30  # script processing failed before and after the final GENERATE AC
    tags = parse_tlv(final.field55)
    nine_f_5b = find_tag(tags, "9F5B")
    assert nine_f_5b is not None and nine_f_5b.value == final.script_results


def test_a_failed_issuer_authentication_is_in_the_tvr_the_card_gets() -> None:
    reader = IssuerSideReader(Card("visa_credit_sig"), {0x82: 0x6300})
    session = read_card(reader, CFG, TXN)
    final = complete(reader, session, host_approved=True, issuer_auth_data=ARPC)
    assert final.issuer_authenticated is False and final.tvr[4] & 0x40
    assert final.script_results == b""


def test_a_presentation_reads_at_the_amount_and_completes_with_the_hosts_answer() -> None:
    request = CardRequest("c1", 123_45)
    shown = present_chip(AppletReader(Card("mastercard_nocvm")), CFG, request)
    nine_f_02 = find_tag(parse_tlv(shown.card.field55), "9F02")
    assert nine_f_02 is not None and nine_f_02.value == bytes.fromhex("000000012345")
    assert shown.card.second_gac and shown.session.cryptogram_type == "ARQC"
    outcome = shown.complete(HostAnswer("00"))
    assert (outcome.cryptogram_type, outcome.declined_by_card, outcome.atc) == ("TC", False, shown.session.atc)
    unreachable = present_chip(AppletReader(Card("mastercard_nocvm")), CFG, request)
    late = unreachable.complete(HostAnswer("Z3"))
    assert (late.cryptogram_type, late.declined_by_card) == ("AAC", False)  # no approval: nothing to reverse
    declining = present_chip(AppletReader(Card(get_profile("mastercard_nocvm", second_gac="decline"))), CFG, request)
    said_no = declining.complete(HostAnswer("00"))
    assert (said_no.cryptogram_type, said_no.declined_by_card) == ("AAC", True)
