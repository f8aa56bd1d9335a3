"""The issuer reads a reversal's field 55 into the reversal's ledger note and never declines a reversal for it
(firmware_sim/host/issuer.py ``Issuer.read_reversal``): which answer of the card it carries (the CVR in 9F10, byte 1
bits 8-7), the ATC against the last one authorised, a failed issuer authentication, the script results (DF31)."""

from __future__ import annotations

import pytest

from firmware_sim.host.issuer import Issuer
from tests.firmware_sim.issuer_kit import PANS, tlv

PAN = PANS["visa_credit_sig"]


def reversal(**tags: str) -> dict[str, str]:
    return {"t": "0400", "2": PAN, "55": b"".join(tlv(t, bytes.fromhex(v)) for t, v in tags.items()).hex().upper()}


@pytest.mark.parametrize(("cvr", "says"), [
    ("20008000", "card answer at GENERATE AC 2: AAC; issuer authentication failed"),
    ("60000000", "card answer at GENERATE AC 2: TC"),
    ("A0000000", "GENERATE AC 2 not requested (the first GENERATE AC's data)"),
])
def test_the_cvr_says_which_answer_the_reversal_carries(cvr: str, says: str) -> None:
    issuer = Issuer("cup")
    issuer.cards[PAN].last_atc = 17
    note = issuer.read_reversal(reversal(**{"95": "0000000000", "9F10": "06010A03" + cvr, "9F36": "0011"}), PAN)
    assert note == f"issuer: reversal 55: {says}; ATC 17 = the last authorised (17)"
    assert PAN not in " ".join(issuer.log) and issuer.log[-1].endswith(note)


def test_script_results_and_another_atc_are_noted() -> None:
    issuer = Issuer("iso87ascii")
    issuer.cards[PAN].last_atc = 20
    note = issuer.read_reversal(reversal(**{"9F10": "06010A0320001000", "9F36": "0011", "DF31": "2000000002"}), PAN)
    assert "ATC 17 != the last authorised (20)" in note and "script results DF31 2000000002" in note


@pytest.mark.parametrize(("req", "note"), [
    ({"t": "0400", "2": PAN}, "issuer: reversal without field 55"),
    ({"t": "0400", "2": PAN, "55": "9F1008AABB"}, "is not BER-TLV"),
    ({"t": "0400", "2": PAN, "55": "9F36020011"}, "no 9F10; ATC 17"),
])
def test_a_reversal_without_readable_chip_data_is_noted_not_refused(req: dict[str, str], note: str) -> None:
    assert note in Issuer("cup").read_reversal(req, PAN)
