"""MAC checking on the simulator side (keys are test keys)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.host import mac as sim_mac
from firmware_sim.host.dialects import HEADER_LEN, get_spec

from .wire import WireClient, cup_sale

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_sim_mac_known_answers():
    # ISO/IEC 9797-1:2011 Annex B.4 (MAC algorithm 3, padding method 1), leftmost 32 bits
    assert sim_mac.compute("x919", KEY, b"Now is the time for all ")[:4].hex() == "a1c72e74"
    assert sim_mac.compute("x919", KEY, b"Now is the time for it")[:4].hex() == "2e2b1428"
    # FIPS PUB 113 example (DES CBC-MAC, key 0123456789ABCDEF), leftmost 32 bits
    assert sim_mac.compute("cbc", bytes.fromhex("0123456789ABCDEF"),
                           b"7654321 Now is the time for ")[:4].hex() == "f1d30f68"


@pytest.fixture(params=["x919", "cup-ecb"])
def mac_sim(request: pytest.FixtureRequest) -> Iterator[tuple[HostSimulator, str]]:
    with HostSimulator(SimConfig(dialect="cup", mac_algorithm=request.param, mac_key=KEY)) as sim:
        yield sim, request.param


def _response_mac_ok(client: WireClient, algorithm: str, resp_raw: bytes) -> bool:
    data = resp_raw[HEADER_LEN["cup"] : -8]
    return resp_raw[-8:] == sim_mac.compute(algorithm, KEY, data)


def test_good_mac_is_accepted_and_the_response_is_maced(mac_sim: tuple[HostSimulator, str]):
    sim, algorithm = mac_sim
    client = WireClient(sim.address, "cup", mac_algorithm=algorithm, mac_key=KEY)
    client.send(cup_sale(1, 1000))
    raw = client.recv_raw()
    assert raw is not None
    import iso8583

    resp, _ = iso8583.decode(raw, get_spec("cup"))
    assert resp["39"] == "00" and "64" in resp
    assert _response_mac_ok(client, algorithm, raw)
    client.close()


def test_bad_mac_is_answered_a0_and_not_booked(mac_sim: tuple[HostSimulator, str]):
    sim, algorithm = mac_sim
    client = WireClient(sim.address, "cup", mac_algorithm=algorithm, mac_key=bytes(16))
    assert client.exchange(cup_sale(1, 1000))["39"] == "A0"
    assert sim.ledger.find(kind="sale") == []
    client.close()


def test_corrupt_mac_fault_flips_a_bit_of_the_response_mac(mac_sim: tuple[HostSimulator, str]):
    sim, algorithm = mac_sim
    sim.add_fault("corrupt_mac")
    client = WireClient(sim.address, "cup", mac_algorithm=algorithm, mac_key=KEY)
    client.send(cup_sale(1, 1000))
    raw = client.recv_raw()
    assert raw is not None and not _response_mac_ok(client, algorithm, raw)
    client.close()
