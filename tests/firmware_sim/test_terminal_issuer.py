"""posguard's EMV session (read_card at a real amount, then complete) against the card simulator in process, with
the host simulator's issuer in between over real TCP: the issuer verifies the terminal's ARQC and the card accepts
the issuer's ARPC with a TC."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime

import pytest

from firmware_sim.card import Card
from firmware_sim.host import HostSimulator, SimConfig
from posguard.emv import complete, read_card
from posguard.emv.terminal import EmvTerminal, Transaction
from tests.drivers.twin_sim import TOKEN_KEY
from tests.emv.test_engine_card import AppletReader
from tests.firmware_sim import emv
from tests.firmware_sim.issuer_kit import PANS, find_91
from tests.host_sim.wire import WireClient, cup_sale

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

CFG = EmvTerminal(pan_token_key=TOKEN_KEY)


def txn(amount: int, un: str) -> Transaction:
    return Transaction(amount=amount, when=datetime(2026, 5, 1, 10, 30, 0), unpredictable_number=bytes.fromhex(un))


@pytest.mark.parametrize("profile", sorted(PANS))
def test_terminal_arqc_at_the_real_amount_verifies_and_the_arpc_gives_tc(profile: str) -> None:
    reader = AppletReader(Card(profile))
    with HostSimulator(SimConfig(dialect="cup")) as sim, closing(_client(sim)) as client:
        for stan, (amount, un) in enumerate([(12345, "CAFEBABE"), (50000, "0BADF00D")], start=1):
            session = read_card(reader, CFG, txn(amount, un))
            assert emv.tlv_find(session.field55, "9F02") == bytes.fromhex(f"{amount:012d}")
            req = cup_sale(stan, amount, pan=PANS[profile]) | {"55": session.field55.hex().upper()}
            req |= _pin_owed(client, session.cvm_results, PANS[profile])
            resp = client.exchange(req)
            assert resp["39"] == "00", sim.ledger.find(stan=f"{stan:06d}")[0].note
            issuer_data = find_91(resp.get("55", ""))
            assert (issuer_data is None) is (profile == "mastercard_nocvm")  # AIP 1800: no issuer auth
            final = complete(reader, session, host_approved=True, response_code="00", issuer_auth_data=issuer_data)
            assert (final.cryptogram_type, final.approved, final.declined_by_card) == ("TC", True, False)
            assert final.atc == session.atc
            reader.power_off()
        # the same field 55 again is a replay: the issuer refuses it
        assert client.exchange(req | {"11": "000009"})["39"] == "05"
        assert "is not greater than the last one seen" in sim.ledger.find(stan="000009")[0].note


def test_terminal_gets_aac_when_the_host_sends_a_bad_arpc() -> None:
    reader = AppletReader(Card("unionpay_debit_pin"))
    with HostSimulator(SimConfig(dialect="cup")) as sim, closing(_client(sim)) as client:
        sim.add_fault("bad_arpc", mti="0200")
        session = read_card(reader, CFG, txn(7000, "12345678"))
        resp = client.exchange(cup_sale(1, 7000, pan=PANS["unionpay_debit_pin"]) | {"55": session.field55.hex()}
                               | _pin_owed(client, session.cvm_results, PANS["unionpay_debit_pin"]))
        assert resp["39"] == "00"
        final = complete(reader, session, host_approved=True, issuer_auth_data=find_91(resp["55"]))
        assert (final.cryptogram_type, final.declined_by_card) == ("AAC", True)


def test_the_amount_zero_read_of_today_is_declined_by_the_issuer() -> None:
    """What issue 11 found: a card read at amount 0 and a sale of 25.00 — the issuer sees 9F02 != field 4."""
    reader = AppletReader(Card("visa_credit_sig"))
    with HostSimulator(SimConfig(dialect="cup")) as sim, closing(_client(sim)) as client:
        session = read_card(reader, CFG, txn(0, "12345678"))
        resp = client.exchange(cup_sale(1, 2500, pan=PANS["visa_credit_sig"]) | {"55": session.field55.hex()})
        assert resp["39"] == "13"
        assert "field 55.9F02 = 000000000000 differs from field 4 = 000000002500" in sim.ledger.find(kind="sale")[0].note


def _client(sim: HostSimulator) -> WireClient:
    client = WireClient(sim.address, "cup")
    client.sign_on()  # a strict acquirer: working keys first, every request MACed with them
    return client


CARD_PIN = "1234"  # the PIN of the card file's test cards (firmware_sim/host/cardfile.json): the cardholder keys it


def _pin_owed(client: WireClient, cvm_results: bytes, pan: str) -> dict[str, str]:
    """What the terminal owes when the card chose online PIN (9F34 method 02, EMV Book 4 A4): field 52 from the
    PIN pad and CUP 22.3 = 1 — the strict host refuses the CVM without them."""
    if cvm_results[0] & 0x3F != 0x02:
        return {}
    return {"22": "051", "52": client.pin_block(pan, CARD_PIN)}
