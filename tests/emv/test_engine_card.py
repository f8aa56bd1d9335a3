"""card_data(): a real EMV session (posguard.emv against the in-process card applet) as the engine's input."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest

from firmware_sim.card import Card
from posguard.card import CardData
from posguard.drivers.reader import CardEvent, Reader
from posguard.emv import read_card
from posguard.emv.engine_card import card_data
from posguard.emv.session import CardSession
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.iso8583.tlv import parse_tlv
from posguard.sensitive import Pan, pan_token
from tests.drivers.twin_sim import TOKEN_KEY

TXN = Transaction(amount=12345, when=datetime(2026, 5, 1, 10, 30, 0), unpredictable_number=bytes.fromhex("CAFEBABE"))
CFG = EmvTerminal(pan_token_key=TOKEN_KEY)
PANS = {"visa_credit_sig": "4761739001010119", "unionpay_debit_pin": "6250947000000014",
        "mastercard_nocvm": "5413330089010434"}


class AppletReader(Reader):
    """A reader whose slot holds the simulator's card object in this process (no transport)."""

    name = "in-process applet"

    def __init__(self, card: Card) -> None:
        self.card = card

    def card_present(self) -> bool:
        return True

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        return None

    def wait_for_card(self, timeout: float) -> None:
        return None

    def wait_for_removal(self, timeout: float) -> None:
        return None

    def power_on(self) -> bytes:
        return self.card.power_on()

    def transmit_raw(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)

    def power_off(self) -> None:
        self.card.power_off()

    def close(self) -> None:
        return None


def session(profile: str) -> CardSession:
    return read_card(AppletReader(Card(profile)), CFG, TXN)


@pytest.mark.parametrize(("profile", "cvm_results", "signature", "scheme"), [
    ("visa_credit_sig", "1E0000", True, "visa"),
    ("unionpay_debit_pin", "420300", False, "unionpay"),
    ("mastercard_nocvm", "1F0002", False, "mastercard"),
])
def test_card_data_maps_the_session(profile: str, cvm_results: str, signature: bool, scheme: str) -> None:
    s = session(profile)
    c = card_data(s)
    pan = PANS[profile]
    assert isinstance(c, CardData)
    assert isinstance(c.pan, Pan) and c.pan.reveal() == pan
    assert c.pan_masked == s.masked_pan == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert c.pan_token == s.pan_token == pan_token(pan, TOKEN_KEY)
    # the engine's own constructor with the same key gives the same token: matching works across both paths
    assert CardData.from_pan(pan, TOKEN_KEY).pan_token == c.pan_token
    assert c.expiry == s.expiry == "2812"
    assert c.field55 == s.field55 and c.field55
    tags = {t.tag: t.value for t in parse_tlv(c.field55)}
    assert tags["9F34"] == c.cvm_results == bytes.fromhex(cvm_results)
    assert c.cvm_results == s.cvm_results
    assert c.signature_required is signature is s.signature_required
    assert c.cvm_required is False  # 9F34 carries the decision for chip
    assert c.entry_mode == "chip"
    assert c.scheme == scheme


def test_no_clear_pan_in_the_printed_forms(caplog: pytest.LogCaptureFixture) -> None:
    s = session("visa_credit_sig")
    c = card_data(s)
    pan = PANS["visa_credit_sig"]
    logging.getLogger("posguard.test").warning("card %s / %r", c, c)
    for text in (repr(c), str(c), f"{c}", format(c), caplog.text, repr(c.pan), str(c.pan), c.pan_masked,
                 json.dumps({"pan": c.pan_masked, "token": c.pan_token})):
        assert pan not in text
        assert pan not in text.replace(" ", "")
    assert "476173******0119" in repr(c)
    assert "9F34=1E0000" in repr(c)


def test_a_session_without_pan_is_refused() -> None:
    s = session("mastercard_nocvm")
    hollow = CardSession(**{**{f: getattr(s, f) for f in s.__dataclass_fields__ if f != "pan"}})
    with pytest.raises(ValueError, match="no PAN"):
        card_data(hollow)
