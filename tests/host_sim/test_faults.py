"""Each scripted fault, observed on the wire by a pyiso8583 terminal.

Waiting: the test first waits for the simulator to finish handling the request (``wait_handled``), so
"nothing arrives" is checked with a short real read timeout against an idle peer, not a guess.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import iso8583
import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.host.dialects import get_spec

from .wire import ManualScheduler, WireClient, cup_sale

QUIET = 0.05  # real seconds to confirm silence from a peer that has finished handling the request


@pytest.fixture
def clock() -> ManualScheduler:
    return ManualScheduler()


@pytest.fixture
def sim(clock: ManualScheduler) -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="cup", security="open"), scheduler=clock) as s:
        yield s


@pytest.fixture
def client(sim: HostSimulator) -> Iterator[WireClient]:
    c = WireClient(sim.address, "cup")
    yield c
    c.close()


def test_no_response_still_books_the_sale(sim: HostSimulator, client: WireClient):
    sim.add_fault("no_response", mti="0200")
    client.send(cup_sale(1, 1000))
    assert sim.wait_handled(1)
    assert client.recv(QUIET) is None
    assert sim.ledger.find(kind="sale")[0].status == "approved"  # the host did approve it
    assert client.exchange(cup_sale(2, 1000))["39"] == "00"  # fault used up


def test_drop_ignores_the_request_entirely(sim: HostSimulator, client: WireClient):
    sim.add_fault("drop")
    client.send(cup_sale(1, 1000))
    assert sim.wait_handled(1)
    assert client.recv(QUIET) is None
    assert sim.ledger.find(kind="sale") == []


def test_delayed_response_arrives_when_the_scheduler_reaches_it(sim: HostSimulator, client: WireClient,
                                                               clock: ManualScheduler):
    sim.add_fault("delay", mti="0200", delay=40.0)
    client.send(cup_sale(1, 1000))
    assert sim.wait_handled(1)
    clock.advance(39.0)
    assert client.recv(QUIET) is None
    clock.advance(1.0)
    resp = client.recv()
    assert resp is not None and resp["39"] == "00"


def test_disconnect_mid_message_sends_a_partial_frame_then_closes(sim: HostSimulator, client: WireClient):
    sim.add_fault("disconnect_mid")
    client.send(cup_sale(1, 1000))
    client.sock.settimeout(2.0)
    data = b""
    while chunk := client.sock.recv(4096):
        data += chunk
    length = int.from_bytes(data[:2], "big")
    assert 0 < len(data) - 2 < length


def test_disconnect_without_response(sim: HostSimulator, client: WireClient):
    sim.add_fault("disconnect")
    client.send(cup_sale(1, 1000))
    client.sock.settimeout(2.0)
    assert client.sock.recv(4096) == b""


def test_duplicate_response_is_sent_twice(sim: HostSimulator, client: WireClient):
    sim.add_fault("duplicate")
    first = client.exchange(cup_sale(1, 1000))
    second = client.recv()
    assert second == first


def test_other_stan_wrong_rc_wrong_amount(sim: HostSimulator, client: WireClient):
    sim.add_fault("other_stan", stan="1")
    sim.add_fault("wrong_rc", stan="2", rc="96")
    sim.add_fault("wrong_amount", stan="3")
    assert client.exchange(cup_sale(1, 1000))["11"] == "000002"
    assert client.exchange(cup_sale(2, 1000))["39"] == "96"
    assert client.exchange(cup_sale(3, 1000))["4"] == "000000001001"


def test_fault_times_and_matching(sim: HostSimulator, client: WireClient):
    sim.add_fault("wrong_rc", rc="91", mti="0200", proc_prefix="00", times=2)
    assert client.exchange(cup_sale(1, 10))["39"] == "91"
    assert client.exchange(cup_sale(2, 10))["39"] == "91"
    assert client.exchange(cup_sale(3, 10))["39"] == "00"
    sim.add_fault("wrong_rc", rc="91", times=0)  # until cleared
    assert client.exchange(cup_sale(4, 10))["39"] == "91"
    sim.clear_faults()
    assert client.exchange(cup_sale(5, 10))["39"] == "00"
    assert [a["kind"] for a in sim.faults.applied] == ["wrong_rc"] * 3


def test_garbage_frame_does_not_decode(sim: HostSimulator, client: WireClient):
    sim.add_fault("garbage")
    client.send(cup_sale(1, 10))
    raw = client.recv_raw()
    assert raw is not None
    with pytest.raises(iso8583.DecodeError):
        iso8583.decode(raw, get_spec("cup"))


def test_refusing_connections_then_accepting_again_on_the_same_port(sim: HostSimulator):
    port = sim.port
    sim.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0)
    sim.accept_connections()
    assert sim.port == port
    c = WireClient(sim.address, "cup")
    assert c.exchange(cup_sale(1, 10))["39"] == "00"
    c.close()


def test_unknown_fault_kind_is_rejected(sim: HostSimulator):
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.add_fault("explode")
