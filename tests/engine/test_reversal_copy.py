"""The 0400 is the saved request without what belongs to the cardholder's presence: the track data (35/36) and
the PIN block with the fields that describe it (52, 53 and 26, the PIN capture code).

``../shared/reference/pos-flows.md`` (B) reversal mechanics: "a saved copy of the request without 35/36/52/53";
openpos ``appsrc/trans.c``, where the reversal is saved, removes 26 with them (26 says how many PIN digits the
terminal takes: without the block it describes nothing, and the reversal is not PIN-verified). Found by the
acquirer's audit (tests/product/acquirer_audit.py ``reversal_copy_problems``): the reversal of the demo's
timed-out online-PIN sale carried 26 = 12 without 52.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from posguard.iso8583.message import Message
from posguard.iso8583.tlv import build_tlv
from posguard.sensitive import PinBlock
from tests.engine.conftest import MONDAY_0900, TERMINAL, TOKEN_KEY
from tests.engine.fakehost import FakeHost

UNIONPAY_PAN = "6250947000000014"
ONLINE_PIN = bytes.fromhex("420300")  # 9F34: online PIN, result unknown (the issuer verifies)


def online_pin_card(amount: int) -> CardData:
    icc = build_tlv([("9F26", bytes.fromhex("0102030405060708")), ("9F27", b"\x80"), ("9F34", ONLINE_PIN),
                     ("9F36", b"\x00\x21"), ("95", bytes(5)), ("9F10", bytes.fromhex("0110A00003220000")),
                     ("9F02", bytes.fromhex(f"{amount:012d}"))])
    card = CardData.from_pan(UNIONPAY_PAN, TOKEN_KEY, expiry="2812", field55=icc, cvm_results=ONLINE_PIN,
                             scheme="unionpay")
    return replace(card, pin_block=PinBlock(bytes.fromhex("A1B2C3D4E5F60718")))


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_the_reversal_of_an_online_pin_sale_carries_no_pin_field(tmp_path: Path, dialect: str) -> None:
    clock = VirtualClock(start=MONDAY_0900)
    sent: list[Message] = []
    host = FakeHost(clock, on_exchange=sent.append).then("lost_response")  # booked, the answer lost: reverse
    engine = TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), host, dialect, TERMINAL, clock,
                               Detectors.default(clock))
    try:
        sale = engine.sale(online_pin_card(88_00), 88_00)
        assert sale.state == "reversed", sale.operator_message
    finally:
        engine.journal.close()
    [request] = [m for m in sent if m.mti == "0200"]
    [reversal] = [m for m in sent if m.mti == "0400"]
    assert {"26", "52", "53"} <= set(request.keys())  # the PIN travelled in the authorisation...
    assert not {"26", "35", "36", "52", "53"} & set(reversal.keys()), reversal.keys()  # ...not in its 0400
    assert reversal["22"] == request["22"]  # the reversal repeats how the card came in (openpos keeps 22)
