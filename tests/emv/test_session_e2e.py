"""The EMV card session end to end: real pcscd + vsmartcard-vpcd + the simulated card in a subprocess."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from firmware_sim.rig.sims import VpcdCard
from posguard.drivers.errors import CardMute, CardRemoved
from posguard.drivers.pcsc import PcscReader
from posguard.emv import (
    CardDataError,
    CardDeclined,
    CardStatusError,
    NoSupportedApplication,
    complete,
    read_card,
)
from posguard.emv.session import FIELD55_SALE_TAGS, CardSession
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.iso8583.tlv import parse_tlv
from posguard.sensitive import pan_token
from tests.drivers.twin_sim import TOKEN_KEY

pytestmark = pytest.mark.pcscd

PANS = {"visa_credit_sig": "4761739001010119", "unionpay_debit_pin": "6250947000000014",
        "mastercard_nocvm": "5413330089010434"}
UN = bytes.fromhex("CAFEBABE")
TXN = Transaction(amount=12345, when=datetime(2026, 5, 1, 10, 30, 0), unpredictable_number=UN)
CFG = EmvTerminal(pan_token_key=TOKEN_KEY)


@pytest.fixture
def reader() -> Iterator[PcscReader]:
    r = PcscReader("Virtual PCD 00 00", apdu_timeout=0.5)
    yield r
    r.close()


def session(reader: PcscReader, txn: Transaction = TXN) -> CardSession:
    reader.wait_for_card(5)
    return read_card(reader, CFG, txn)


@pytest.mark.parametrize(("profile", "cvm", "cvm_results", "signature", "aid", "apdus"), [
    # SELECT PSE, READ PSE 1, READ PSE 2 (6A83), SELECT AID, GPO, 3 x READ RECORD, GENERATE AC
    ("visa_credit_sig", "signature", "1E0000", True, "A0000000031010", 9),
    ("unionpay_debit_pin", "online_pin", "420300", False, "A000000333010101", 10),  # 2 PSE entries
    ("mastercard_nocvm", "none", "1F0002", False, "A0000000041010", 9),
])
def test_each_profile_reads_to_arqc(card_factory: Callable[..., VpcdCard], reader: PcscReader, profile: str,
                                    cvm: str, cvm_results: str, signature: bool, aid: str, apdus: int) -> None:
    card_factory(profile)
    s = session(reader)
    assert s.cvm_required == cvm
    assert s.cvm_results.hex().upper() == cvm_results
    assert s.signature_required is signature
    assert s.aid == aid and s.selection_method == "PSE"
    assert s.cryptogram_type == "ARQC"
    assert s.apdu_count == apdus  # exactly the AFL's records, nothing redundant
    pan = PANS[profile]
    assert s.masked_pan == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert s.pan_token == pan_token(pan, TOKEN_KEY)
    assert s.expiry == "2812"
    for text in (repr(s), str(s), json.dumps(s.to_dict()), s.field55.hex().upper()):
        assert pan not in text
        assert pan not in text.replace(" ", "")


def test_field55_has_the_sale_tags_in_order_with_terminal_values(card_factory: Callable[..., VpcdCard],
                                                                  reader: PcscReader) -> None:
    card_factory("visa_credit_sig")
    s = session(reader)
    items = parse_tlv(s.field55)
    assert tuple(i.tag for i in items) == FIELD55_SALE_TAGS
    v = {i.tag: i.value for i in items}
    assert v["9F02"].hex() == "000000012345"
    assert v["9F37"] == UN
    assert v["9A"].hex() == "260501" and v["9C"] == b"\x00"
    assert v["9F34"] == s.cvm_results
    assert v["84"].hex().upper() == s.aid
    assert v["9F27"] == b"\x80" and len(v["9F26"]) == 8
    assert int.from_bytes(v["9F36"], "big") == s.atc
    assert v["95"] == s.tvr


def test_second_generate_ac_approves_with_tc(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("unionpay_debit_pin")
    s = session(reader)
    final = complete(reader, s, host_approved=True, response_code="00")
    assert final.cryptogram_type == "TC" and final.approved and not final.declined_by_card
    assert dict((t.tag, t.value) for t in parse_tlv(final.field55))["9F27"] == b"\x40"


def test_card_decline_at_second_generate_ac_is_reported(card_factory: Callable[..., VpcdCard],
                                                        reader: PcscReader) -> None:
    card_factory("visa_credit_sig", second_gac="decline")
    s = session(reader)
    final = complete(reader, s, host_approved=True)
    assert final.cryptogram_type == "AAC" and not final.approved and final.declined_by_card
    assert [t.tag for t in parse_tlv(final.reversal_field55)] == ["95", "9F10", "9F1E", "9F36"]


def test_host_decline_asks_for_aac(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("visa_credit_sig")
    final = complete(reader, session(reader), host_approved=False, response_code="05")
    assert final.cryptogram_type == "AAC" and not final.declined_by_card


def test_offline_decline_at_first_generate_ac(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("visa_credit_sig", first_gac="aac")
    with pytest.raises(CardDeclined, match="GENERATE AC 1"):
        session(reader)


def test_gpo_refusal_moves_to_the_next_application(card_factory: Callable[..., VpcdCard],
                                                   reader: PcscReader) -> None:
    card_factory("unionpay_debit_pin", faults=["sw sw=6985 ins=A8"])
    s = session(reader)
    assert s.aid == "A000000333010102" and s.label == "UnionPay Credit"


def test_gpo_refusal_of_the_only_application(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("visa_credit_sig", faults=["sw sw=6985 ins=A8 times=0"])
    with pytest.raises(NoSupportedApplication):
        session(reader)


def test_no_pse_falls_back_to_the_aid_list(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("mastercard_nocvm", faults=["sw sw=6A82 ins=A4"])  # only the first SELECT (PSE) fails
    s = session(reader)
    assert s.selection_method == "AID list" and s.aid == "A0000000041010"


# mastercard_nocvm answers directly (no T=0 6Cxx round), so each READ RECORD is one fault event.
@pytest.mark.parametrize(("fault", "error", "stage"), [
    ("sw sw=6F00 ins=B2 after=2", CardStatusError, "READ RECORD SFI 1 record 1"),  # after 2 PSE reads
    ("corrupt_tlv ins=B2 after=1", CardDataError, "READ RECORD SFI 1 record 1"),  # after the PSE record
    ("sw sw=6A81 ins=AE", CardStatusError, "GENERATE AC 1"),
])
def test_card_faults_end_the_session_with_a_typed_error(card_factory: Callable[..., VpcdCard],
                                                        reader: PcscReader, fault: str, error: type[Exception],
                                                        stage: str) -> None:
    card_factory("mastercard_nocvm", faults=[fault])
    with pytest.raises(error) as e:
        session(reader)
    assert stage in str(e.value)
    assert PANS["mastercard_nocvm"] not in str(e.value)


def test_card_pulled_mid_session(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("visa_credit_sig", faults=["pull ins=B2 after=3"])
    t0 = time.monotonic()
    with pytest.raises(CardRemoved) as e:
        session(reader)
    assert time.monotonic() - t0 < 5
    assert any("READ RECORD" in n for n in e.value.__notes__)


def test_mute_card_is_bounded(card_factory: Callable[..., VpcdCard], reader: PcscReader) -> None:
    card_factory("visa_credit_sig", faults=["mute ins=AE"])
    reader.wait_for_card(5)
    t0 = time.monotonic()
    with pytest.raises(CardMute) as e:
        read_card(reader, CFG, TXN)
    assert time.monotonic() - t0 < 2.0  # apdu_timeout 0.5 s + the watchdog period
    assert any("GENERATE AC 1" in n for n in e.value.__notes__)


OFFLINE_PIN_TERMINAL = EmvTerminal(pan_token_key=TOKEN_KEY, capabilities=bytes.fromhex("E0E800"))
PIN_THEN_SIGNATURE = {"x": 0, "y": 0, "rules": [["41", "03"], ["1E", "03"]]}


@pytest.mark.parametrize(("pin", "cvm", "results", "tvr3"), [
    ("1234", "offline_pin", "410302", 0x00),  # VERIFY 9000
    ("9999", "signature", "1E0300", 0x00),  # VERIFY 63C2: apply next -> signature
    (None, "signature", "1E0300", 0x08),  # PIN not entered
])
def test_offline_pin_verify_on_the_card(card_factory: Callable[..., VpcdCard], reader: PcscReader,
                                        pin: str | None, cvm: str, results: str, tvr3: int) -> None:
    card_factory("visa_credit_sig", cvm_list=PIN_THEN_SIGNATURE)
    reader.wait_for_card(5)
    s = read_card(reader, OFFLINE_PIN_TERMINAL, TXN, pin_entry=lambda: pin)
    assert s.cvm_required == cvm and s.cvm_results.hex().upper() == results
    assert s.tvr[2] & 0x08 == tvr3
