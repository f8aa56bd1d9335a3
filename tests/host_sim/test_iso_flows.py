"""The simulator in the international dialects (iso87ascii, iso87, iso87bcd) and each framing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.host import HostSimulator, SimConfig

from .wire import WireClient, iso_reversal, iso_sale

ISO_DIALECTS = ("iso87ascii", "iso87", "iso87bcd")


@pytest.fixture(params=[(d, f) for d in ISO_DIALECTS for f in ("binary2", "ascii4", "bcd2")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def iso(request: pytest.FixtureRequest) -> Iterator[tuple[HostSimulator, WireClient]]:
    dialect, framing = request.param
    with HostSimulator(SimConfig(dialect=dialect, framing=framing, security="open")) as sim:
        client = WireClient(sim.address, dialect, framing)
        yield sim, client
        client.close()


def test_sale_void_refund_reversal_in_every_dialect_and_framing(iso: tuple[HostSimulator, WireClient]):
    sim, client = iso
    sale = client.exchange(iso_sale(1, 1234))
    assert (sale["t"], sale["39"], sale["4"], sale["11"]) == ("0210", "00", "000000001234", "000001")
    void = client.exchange(dict(iso_sale(2, 1234, proc="020000"), **{"37": sale["37"]}))
    assert void["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].status == "voided"
    refund = client.exchange(iso_sale(3, 500, proc="200000"))  # stand-alone refund
    assert refund["39"] == "00"
    req = iso_sale(4, 900)
    client.exchange(req)
    rev = client.exchange(iso_reversal(req))
    assert (rev["t"], rev["39"]) == ("0410", "00")
    assert sim.ledger.find(stan="000004", kind="sale")[0].status == "reversed"


@pytest.fixture
def iso87() -> Iterator[tuple[HostSimulator, WireClient]]:
    with HostSimulator(SimConfig(dialect="iso87", security="open")) as sim:
        client = WireClient(sim.address, "iso87")
        yield sim, client
        client.close()


def test_network_management_by_field_70(iso87: tuple[HostSimulator, WireClient]):
    _, client = iso87
    for code in ("001", "301", "002"):
        resp = client.exchange({"t": "0800", "7": "1123101010", "11": "000010", "41": "TERM0001", "70": code})
        assert (resp["t"], resp["39"], resp["70"]) == ("0810", "00", code)


def test_reversal_needs_field_90_and_matches_the_original_mti_and_stan(iso87: tuple[HostSimulator, WireClient]):
    sim, client = iso87
    req = iso_sale(11, 100)
    client.exchange(req)
    no90 = dict(req, t="0400")
    assert client.exchange(no90)["39"] == "30"
    other = iso_reversal(dict(req, **{"11": "000012"}))
    assert client.exchange(other)["39"] == "25"
    advice = iso_reversal(req, mti="0420")
    resp = client.exchange(advice)
    assert (resp["t"], resp["39"]) == ("0430", "00")
    assert client.exchange(iso_reversal(req, mti="0421"))["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].status == "reversed"


def test_iso_settlement_95_when_unbalanced_then_upload_and_close(iso87: tuple[HostSimulator, WireClient]):
    sim, client = iso87
    client.exchange(iso_sale(1, 1000))
    client.exchange(iso_sale(2, 500, proc="200000"))

    def settle(proc: str, sales_n: int, sales: int, refunds_n: int, refunds: int) -> str:
        return str(client.exchange({
            "t": "0500", "3": proc, "11": "000099", "41": "TERM0001", "42": "123456789012345",
            "74": f"{refunds_n:010d}", "76": f"{sales_n:010d}", "86": f"{refunds:016d}", "88": f"{sales:016d}",
        })["39"])

    assert settle("920000", 1, 999, 1, 500) == "95"
    upload = dict(iso_sale(1, 1000, mti="0320"))
    assert client.exchange(upload)["t"] == "0330"
    assert settle("960000", 1, 1000, 1, 500) == "00"
    assert sim.ledger.totals("TERM0001").sale_count == 0


def test_iso_settlement_balanced_closes_the_batch(iso87: tuple[HostSimulator, WireClient]):
    sim, client = iso87
    client.exchange(iso_sale(1, 1000))
    resp = client.exchange({"t": "0500", "3": "920000", "11": "000002", "41": "TERM0001",
                            "74": "0" * 10, "76": f"{1:010d}", "86": "0" * 16, "88": f"{1000:016d}"})
    assert resp["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].batch_closed


def test_unknown_transaction_gets_12(iso87: tuple[HostSimulator, WireClient]):
    _, client = iso87
    assert client.exchange(iso_sale(1, 100, proc="990000"))["39"] == "12"


def test_reversal_of_a_refund_takes_it_off_the_original(iso87: tuple[HostSimulator, WireClient]):
    sim, client = iso87
    sale = client.exchange(iso_sale(1, 1000))
    refund_req = dict(iso_sale(2, 400, proc="200000"), **{"37": sale["37"]})
    assert client.exchange(refund_req)["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].refunded == 400
    assert client.exchange(iso_reversal(refund_req))["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].refunded == 0
    assert sim.ledger.find(kind="refund")[0].status == "reversed"


def test_a_reversal_with_another_amount_or_pan_is_refused(iso: tuple[HostSimulator, WireClient]):
    """Matched by field 90, the reversal still carries its original's PAN and amount: else 14 / 13, nothing undone."""
    sim, client = iso
    sale = iso_sale(1, 1234)
    assert client.exchange(sale)["39"] == "00"
    assert client.exchange(dict(iso_reversal(sale), **{"11": "000002", "4": f"{1000:012d}"}))["39"] == "13"
    assert client.exchange(dict(iso_reversal(sale), **{"11": "000003", "2": "4000000000000002"}))["39"] == "14"
    assert sim.ledger.find(kind="sale")[0].status == "approved"
    assert client.exchange(dict(iso_reversal(sale), **{"11": "000004"}))["39"] == "00"
    assert sim.ledger.find(kind="sale")[0].status == "reversed"
