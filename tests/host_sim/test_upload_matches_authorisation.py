"""acq-audit: a batch upload (0320: CUP TC 203, detail 201/205; international detail) must repeat what the host
authorised under its RRN — the card (2), the amount (4) and the POS entry mode (22, with the CUP PIN digit):
``emv-keys.md`` (A) 10, the acquirer matches the upload to the authorisation. Otherwise RC 22 (abnormal related
transaction, ``pos-flows.md`` (B)), the ledger saying which field, nothing booked or changed."""

from __future__ import annotations

import pytest

from firmware_sim.host import HostSimulator

from .wire import OTHER_PAN, PAN, WireClient, cup_sale


def _upload(sale: dict[str, str], answer: dict[str, str], code: str, **change: str) -> dict[str, str]:
    """The terminal's 0320 of an approved CUP sale, as posguard builds it (profiles.upload_fields)."""
    doc = {"t": "0320", "2": sale["2"], "3": "000000", "4": sale["4"], "11": "000090", "22": sale["22"],
           "37": answer["37"], "38": answer["38"], "41": "TERM0001", "42": "123456789012345",
           "60": f"22000001{code}", "61": "000001" + sale["11"], "49": "156", "63": "CUP"}
    doc.update(change)
    return doc


@pytest.mark.parametrize("code", ["203", "205"])
def test_an_upload_that_repeats_the_authorisation_is_acknowledged(code: str, cup_client: WireClient) -> None:
    sale = cup_sale(1, 8800)  # a chip sale without PIN: 22 = 052
    answer = cup_client.exchange(sale)
    assert answer["39"] == "00"
    assert cup_client.exchange(_upload(sale, answer, code))["39"] == "00"


@pytest.mark.parametrize(("change", "why"), [
    ({"22": "051"}, "field 22 051 is not the authorisation's 052"),  # the PIN digit differs (posguard's bug,
    ({"22": "022"}, "field 22 022 is not the authorisation's 052"),  # the other way round), another entry mode
    ({"4": "000000009900"}, "field 4 9900 is not the authorised amount 8800"),
    ({"2": OTHER_PAN}, "field 2 is not the authorised card"),
])
@pytest.mark.parametrize("code", ["203", "205"])
def test_an_upload_that_differs_from_the_authorisation_is_refused_22(
        code: str, change: dict[str, str], why: str, cup_sim: HostSimulator, cup_client: WireClient) -> None:
    sale = cup_sale(1, 8800)
    answer = cup_client.exchange(sale)
    assert cup_client.exchange(_upload(sale, answer, code, **change))["39"] == "22"
    [refused] = cup_sim.ledger.find(kind="batch_upload")
    assert refused.status == "declined" and refused.note == f"upload refused: {why}"
    assert PAN not in refused.note and OTHER_PAN not in refused.note
    [booked] = cup_sim.ledger.find(kind="sale")
    assert (booked.status, booked.amount) == ("approved", 8800)  # the authorisation stands unchanged
