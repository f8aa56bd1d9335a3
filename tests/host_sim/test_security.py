"""The simulator's strict default (issue 12 §5), driven by the tiny pyiso8583 terminal of ``wire.py``
(independent of posguard): fresh working keys under the terminal's TMK at every sign-on, RC 77 before a
sign-on / with stale keys / after a sign-off, RC A0 for a missing or bad MAC with nothing booked, and MACed
answers under the issued key."""

from __future__ import annotations

from collections.abc import Iterator

import iso8583
import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.host import mac as sim_mac
from firmware_sim.host.dialects import BINARY_IS_RAW, HEADER_LEN
from firmware_sim.host.keys import TEST_TMK, kcv4, tdes_ecb

from .wire import WireClient, cup_sale, iso_sale

DIALECTS = ["cup", "iso87ascii", "iso87bcd"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback: object) -> None:
        raise AssertionError("no delayed answers here")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _sim(dialect: str, clock: Clock, **kw: object) -> HostSimulator:
    return HostSimulator(SimConfig(dialect=dialect, **kw), scheduler=clock)  # type: ignore[arg-type]


@pytest.fixture(params=DIALECTS)
def strict(request: pytest.FixtureRequest, clock: Clock) -> Iterator[tuple[HostSimulator, WireClient]]:
    with _sim(request.param, clock, key_life=600.0) as sim:
        client = WireClient(sim.address, request.param)
        yield sim, client
        client.close()


def sale(dialect: str, stan: int, amount: int = 1000) -> dict[str, str]:
    return cup_sale(stan, amount) if dialect == "cup" else iso_sale(stan, amount)


def _response_mac_ok(client: WireClient, raw: bytes) -> bool:
    doc, _ = iso8583.decode(raw, client.spec)
    f = "128" if "128" in doc else "64"
    wire = 8 if BINARY_IS_RAW[client.dialect] else 16
    data = raw[HEADER_LEN[client.dialect] : len(raw) - wire]
    assert client.mac_algorithm and client.mac_key
    return bool(doc[f].upper() == sim_mac.compute(client.mac_algorithm, client.mac_key, data).hex().upper())


def test_nothing_before_a_sign_on(strict: tuple[HostSimulator, WireClient]) -> None:
    sim, client = strict
    assert client.exchange(sale(client.dialect, 1))["39"] == "77"
    assert sim.ledger.find(kind="sale") == []
    assert sim.refusals[-1][3:] == ("77", "not signed on: no working keys issued to this terminal")


def test_sign_on_issues_fresh_keys_under_the_tmk_each_time(strict: tuple[HostSimulator, WireClient]) -> None:
    sim, client = strict
    first = client.sign_on()
    key1 = client.mac_key
    second = client.sign_on(stan=999_998)
    assert key1 != client.mac_key and first[client.dialect == "cup" and "62" or "48"] != second.get(
        "62" if client.dialect == "cup" else "48")
    issued = sim.processor.working_keys("TERM0001")
    assert issued is not None and issued.mac_key == client.mac_key and issued.serial == 2
    assert len(sim.keys.history) == 2 and "mac_key" not in repr(issued) and client.mac_key.hex() not in repr(issued)
    if client.dialect == "cup":
        assert second["60"][2:8] == "000001"  # the host's batch number in 60.2


@pytest.mark.parametrize("code,size,parts", [("001", 24, 2), ("003", 40, 2), ("004", 60, 3)])
def test_cup_key_block_layouts(clock: Clock, code: str, size: int, parts: int) -> None:
    """60.3 = 001 single-length keys (24 bytes), 003 double-length (40), 004 with a track key (60); in 003/004
    the MAC key is single-length — 8 bytes, 8 zero bytes, its single-DES KCV — as openpos util.c
    UTIL_Double_StoreNewKey and cash2one unionpaypos.cpp CheckKey read it (docs/keys-and-mac.md)."""
    with _sim("cup", clock) as sim:
        client = WireClient(sim.address, "cup")
        block = bytes.fromhex(client.sign_on(code=code)["62"])
        client.close()
        assert len(block) == size
        step = size // parts
        tmk = bytes.fromhex(TEST_TMK)
        for i in range(parts):
            part = block[i * step : (i + 1) * step]
            key = part[:-4]
            if i == 1 and code != "001":
                assert key[8:] == bytes(8)
                key = key[:8]
            assert kcv4(tdes_ecb(tmk, key, decrypt=True)) == part[-4:]


def test_a_maced_sale_is_booked_and_its_answer_maced(strict: tuple[HostSimulator, WireClient]) -> None:
    sim, client = strict
    client.sign_on()
    client.send(sale(client.dialect, 1))
    raw = client.recv_raw()
    assert raw is not None and _response_mac_ok(client, raw)
    doc, _ = iso8583.decode(raw, client.spec)
    assert doc["39"] == "00" and len(sim.ledger.find(kind="sale")) == 1


def test_missing_or_bad_mac_is_a0_and_nothing_is_booked(strict: tuple[HostSimulator, WireClient]) -> None:
    sim, client = strict
    client.sign_on()
    key = client.mac_key
    client.mac_key = None
    assert client.exchange(sale(client.dialect, 1))["39"] == "A0"
    assert sim.refusals[-1][4].startswith("no MAC in field")
    client.mac_key = bytes(16)
    assert client.exchange(sale(client.dialect, 2))["39"] == "A0"
    assert sim.refusals[-1][4] == "the MAC does not verify under the terminal's working MAC key"
    assert sim.ledger.find(kind="sale") == []
    client.mac_key = key
    assert client.exchange(sale(client.dialect, 3))["39"] == "00"


def test_stale_keys_and_sign_off_mean_77(strict: tuple[HostSimulator, WireClient], clock: Clock) -> None:
    sim, client = strict
    client.sign_on()
    clock.t += 601
    assert client.exchange(sale(client.dialect, 1))["39"] == "77"
    assert "older than the host's key life" in sim.refusals[-1][4]
    client.sign_on(stan=999_998)
    assert client.exchange(sale(client.dialect, 2))["39"] == "00"
    off = {"t": "0820" if client.dialect == "cup" else "0800", "11": "999997", "41": "TERM0001",
           "42": "123456789012345"}
    off.update({"60": "00000001002"} if client.dialect == "cup" else {"7": "1120090000", "70": "002"})
    assert client.exchange(off)["39"] == "00"
    assert sim.keys.state("TERM0001") == "not_signed_on"
    assert client.exchange(sale(client.dialect, 3))["39"] == "77"


def test_each_terminal_has_its_own_tmk(clock: Clock) -> None:
    other = "0202020202020202FEFEFEFEFEFEFEFE"
    with _sim("cup", clock, terminal_keys={"TERM0001": other}) as sim:
        client = WireClient(sim.address, "cup")
        with pytest.raises(AssertionError, match="check value"):
            client.sign_on()  # the test TMK does not open keys sent under this terminal's own TMK
        client.close()
        client = WireClient(sim.address, "cup")
        client.sign_on(tmk=other)
        assert client.exchange(cup_sale(1, 100))["39"] == "00"
        client.close()


def test_security_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="strict"):
        SimConfig(security="lenient")
