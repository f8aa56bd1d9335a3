"""Issue 13: an approval the acquirer learns of only from the CUP detail upload (0320, 60.3 = 201/205) is booked
with the card organisation the terminal sends in field 63 (kept from the 0210, as a NEWPOS UnionPay terminal's batch
upload does) and the currency of field 49, so the report and the CUP 0500's domestic/foreign split count it on the
right side. The host says why it refuses a detail it cannot book (RC 30, the ledger's note)."""

from __future__ import annotations

import pytest

from firmware_sim.host import HostSimulator
from firmware_sim.host.report import rows

from .wire import WireClient


def _detail(stan: int, amount: int, **extra: str) -> dict[str, str]:
    """A chip detail upload (205) of a sale of STAN 1 the host never booked; no PAN unless given."""
    return {"t": "0320", "3": "000000", "4": f"{amount:012d}", "11": f"{stan:06d}", "41": "TERM0001",
            "42": "123456789012345", "37": "999999000001", "38": "123456", "60": "22000001205",
            "61": "000001000001", **extra}


def test_a_detail_only_approval_is_booked_with_the_uploads_card_organisation(cup_sim: HostSimulator,
                                                                            cup_client: WireClient) -> None:
    answer = cup_client.exchange(_detail(2, 2000, **{"49": "156", "63": "VIS"}))
    assert answer["39"] == "25"  # the host lacked it: booked now, from the detail
    [booked] = cup_sim.ledger.find(kind="sale")
    assert (booked.status, booked.card_org, booked.side, booked.currency, booked.stan) == (
        "approved", "VIS", "foreign", "156", "000001")
    assert cup_sim.ledger.totals_by_side("TERM0001")["foreign"].sale_amount == 2000
    [row] = rows(cup_sim.ledger, "cup", "TERM0001")
    assert (row["card_org"], row["side"], row["currency"]) == ("VIS", "foreign", "156")


def test_without_field_63_the_pan_tells_the_organisation(cup_sim: HostSimulator, cup_client: WireClient) -> None:
    assert cup_client.exchange(_detail(2, 2000, **{"49": "156", "2": "5413330089010434"}))["39"] == "25"
    [booked] = cup_sim.ledger.find(kind="sale")
    assert (booked.card_org, booked.side) == ("MCC", "foreign")


@pytest.mark.parametrize(("extra", "why"), [
    ({"49": "156", "63": "XYZ"}, "field 63 card organisation 'XYZ' is not one of CUP, VIS"),
    ({"63": "VIS"}, "field 49 (currency) '' is not ISO 4217 numeric"),
    ({"49": "156"}, "neither field 63 (card organisation) nor field 2"),
])
def test_a_detail_the_host_cannot_book_is_refused_30_saying_why(extra: dict[str, str], why: str,
                                                                cup_sim: HostSimulator, cup_client: WireClient) -> None:
    assert cup_client.exchange(_detail(2, 2000, **extra))["39"] == "30"
    assert cup_sim.ledger.find(kind="sale") == []
    [refused] = cup_sim.ledger.find(kind="batch_upload")
    assert refused.status == "declined" and why in refused.note
