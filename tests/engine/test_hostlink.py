"""posguard's host link against the real acquirer simulator over loopback TCP, on a virtual clock."""

from __future__ import annotations

import time

import pytest

from posguard.engine.hostlink import (
    ConnectFailed,
    LinkDropped,
    LinkEventKind,
    MacFailure,
    ResponseMismatch,
    UndecodableResponse,
    reversal_reason,
)
from posguard.engine.mac import MacKey, MacScheme
from posguard.engine.ports import HostLink, HostTimeout, InvalidResponse
from posguard.engine.signon import echo_message, sign_on_message
from posguard.iso8583 import Message
from tests.host_sim.harness import linked

PAN = "6222021234567890123"
KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def cup_sale(stan: int, amount: int = 1000, pan: str = PAN) -> Message:
    # 22 = 022: swiped, no PIN in the message (CUP 22.3 = 2): it carries no field 52, which the host requires of 1
    return Message("0200", {
        "2": pan, "3": "000000", "4": f"{amount:012d}", "11": f"{stan:06d}", "22": "022", "25": "00",
        "41": "TERM0001", "42": "123456789012345", "49": "156", "60": "22000001000",
    }, "cup")


def cup_reversal(sale: Message, reason: str = "98") -> Message:
    rev = sale.copy()
    rev.mti = "0400"
    rev["39"] = reason
    return rev


def iso_sale(dialect: str, stan: int, amount: int = 1000) -> Message:
    return Message("0200", {
        "2": PAN, "3": "000000", "4": f"{amount:012d}", "7": "1123101010", "11": f"{stan:06d}",
        "22": "021", "25": "00", "41": "TERM0001", "42": "123456789012345", "49": "978",
    }, dialect)


def kinds(events) -> list[str]:
    return [str(e.kind) for e in events if e.kind not in (LinkEventKind.SENT, LinkEventKind.CONNECTED)]


def test_the_link_implements_the_engine_port():
    with linked() as (_, link, _, _):
        assert isinstance(link, HostLink)


def test_cup_sign_on_and_echo():
    with linked(sim_config={"working_keys_62": "AB" * 40}) as (sim, link, _, events):
        resp = link.net_exchange(sign_on_message(link.dialect, stan=1, tid="TERM0001", mid="123456789012345"))
        assert (resp.mti, resp.response_code) == ("0810", "00")
        assert resp["62"] == bytes.fromhex("AB" * 40)
        echo = echo_message(link.dialect, stan=2, tid="TERM0001", mid="123456789012345")
        answer = link.net_exchange(echo)
        assert (echo.mti, answer.mti, answer.response_code) == ("0820", "0830", "00")  # openpos logon.c: 0820
        assert [e["60"][8:11] for e in sim.received] == ["003", "301"]
        assert kinds(events) == ["response", "response"]


@pytest.mark.parametrize("dialect", ["iso87ascii", "iso87", "iso87bcd"])
@pytest.mark.parametrize("framing", ["binary2", "ascii4", "bcd2"])
def test_iso_dialects_and_framings_sign_on_echo_and_sale(dialect: str, framing: str):
    with linked(dialect=dialect, framing=framing) as (sim, link, clock, _):
        sign_on = sign_on_message(link.dialect, stan=1, tid="TERM0001", mid="123456789012345", when=clock.now())
        assert link.net_exchange(sign_on).response_code == "00"
        echo = echo_message(link.dialect, stan=2, tid="TERM0001", mid="123456789012345", when=clock.now())
        assert link.net_exchange(echo)["70"] == "301"
        resp = link.exchange(iso_sale(dialect, 3), timeout=30)
        assert (resp.mti, resp.response_code, resp.amount) == ("0210", "00", 1000)
        assert sim.ledger.find(kind="sale")[0].rrn == resp.rrn


@pytest.mark.parametrize("framing", ["binary2", "ascii4", "bcd2"])
def test_cup_sale_approved_in_every_framing(framing: str):
    with linked(framing=framing) as (sim, link, clock, _):
        resp = link.exchange(cup_sale(1), timeout=30)
        assert resp.approved and resp.rrn and resp.auth_code
        assert resp.header is not None and bytes(resp.header)[:5] == bytes.fromhex("6000000003")
        assert clock.monotonic() == 0.0  # answered without virtual time passing


def test_decline_is_returned_not_raised():
    with linked() as (_, link, _, _):
        resp = link.exchange(cup_sale(1, pan="4000000000000002"), timeout=30)
        assert (resp.response_code, resp.approved) == ("05", False)


def test_no_response_times_out_after_30_virtual_seconds_in_real_milliseconds():
    with linked() as (sim, link, clock, events):
        sim.add_fault("no_response")
        started = time.monotonic()
        with pytest.raises(HostTimeout) as err:
            link.exchange(cup_sale(1))
        assert clock.monotonic() == pytest.approx(30.0)
        assert time.monotonic() - started < 2.0
        assert reversal_reason(err.value) == "98"
        assert kinds(events) == ["timeout"]


def test_reversal_uses_the_shorter_reversal_timeout():
    with linked() as (sim, link, clock, _):
        sim.add_fault("no_response", mti="0400")
        with pytest.raises(HostTimeout):
            link.exchange(cup_reversal(cup_sale(1)))
        assert clock.monotonic() == pytest.approx(15.0)


def test_delayed_response_within_the_timeout_is_accepted():
    with linked() as (sim, link, clock, _):
        sim.add_fault("delay", delay=5.0)
        resp = link.exchange(cup_sale(1), timeout=30)
        assert resp.approved
        assert 5.0 <= clock.monotonic() <= 5.5


def test_late_approval_after_a_timeout_is_surfaced_and_never_returned():
    with linked() as (sim, link, clock, events):
        sim.add_fault("delay", mti="0200", delay=40.0)
        sale = cup_sale(7)
        with pytest.raises(HostTimeout):
            link.exchange(sale, timeout=30)
        # the engine now sends the reversal; the late 0210 arrives first and must not answer the 0400
        clock.advance(10.0)
        rev = link.exchange(cup_reversal(sale))
        assert (rev.mti, rev.response_code) == ("0410", "00")
        late = [e for e in events if e.kind is LinkEventKind.LATE_RESPONSE]
        assert len(late) == 1 and late[0].approved and late[0].mti == "0210" and late[0].stan == 7
        assert sim.ledger.find(kind="sale")[0].status == "reversed"


def test_late_approval_arriving_while_the_reversal_waits_is_not_taken_as_its_answer():
    with linked() as (sim, link, clock, events):
        sim.add_fault("delay", mti="0200", delay=40.0)  # 0210 at t=40
        sim.add_fault("delay", mti="0400", delay=12.0)  # 0410 at t=30+12=42
        sale = cup_sale(8)
        with pytest.raises(HostTimeout):
            link.exchange(sale, timeout=30)
        rev = link.exchange(cup_reversal(sale))
        assert (rev.mti, rev.response_code) == ("0410", "00")
        assert 42.0 <= clock.monotonic() <= 42.5
        assert kinds(events) == ["timeout", "late_response", "response"]


def test_a_late_answer_to_a_reversal_is_said_as_such_not_as_an_approval():
    """A 0400 that timed out and whose 0410 comes late: the host has the reversal; the live link says so in the
    words a replay uses (late_answer_detail), not "late approval ... the reversal must go ahead"."""
    with linked() as (sim, link, clock, events):
        sim.add_fault("no_response", mti="0200")
        sale = cup_sale(9)
        with pytest.raises(HostTimeout):
            link.exchange(sale, timeout=30)
        sim.add_fault("delay", mti="0400", delay=45.0)
        with pytest.raises(HostTimeout):
            link.exchange(cup_reversal(sale), timeout=30)
        [event] = link.poll(wait=20.0)
        assert (event.kind, event.mti, event.stan) == (LinkEventKind.LATE_RESPONSE, "0410", 9)
        assert event.detail == "late answer to a reversal that timed out: the host has the reversal"
        assert [e.detail for e in events if e.kind is LinkEventKind.LATE_RESPONSE] == [event.detail]


def test_late_response_seen_by_poll_while_idle():
    with linked() as (sim, link, clock, _):
        sim.add_fault("delay", delay=45.0)
        with pytest.raises(HostTimeout):
            link.exchange(cup_sale(3), timeout=30)
        assert link.poll(wait=10.0) == []  # at 40 s: still nothing
        [event] = link.poll(wait=10.0)
        assert event.kind is LinkEventKind.LATE_RESPONSE and event.approved


def test_disconnect_mid_message_is_a_link_drop_that_may_have_been_sent():
    with linked() as (sim, link, _, events):
        sim.add_fault("disconnect_mid")
        with pytest.raises(LinkDropped) as err:
            link.exchange(cup_sale(1))
        assert err.value.maybe_sent is True
        assert "middle of a response" in str(err.value)
        assert reversal_reason(err.value) == "96"
        assert kinds(events) == ["disconnected"]
        assert not link.connected


def test_disconnect_without_response_then_reconnect():
    with linked() as (sim, link, _, _):
        sim.add_fault("disconnect")
        with pytest.raises(LinkDropped, match="before a response"):
            link.exchange(cup_sale(1))
        assert link.exchange(cup_sale(2)).approved
        assert link.stats.connects == 2


def test_duplicate_response_is_reported_not_returned_twice():
    with linked() as (sim, link, _, events):
        sim.add_fault("duplicate")
        assert link.exchange(cup_sale(1)).approved
        link.poll(wait=1.0)
        assert kinds(events) == ["response", "duplicate_response"]


def test_response_with_another_stan_is_unmatched_and_the_request_times_out():
    with linked() as (sim, link, clock, events):
        sim.add_fault("other_stan")
        with pytest.raises(HostTimeout):
            link.exchange(cup_sale(1), timeout=30)
        assert kinds(events) == ["unmatched_response", "timeout"]
        assert clock.monotonic() == pytest.approx(30.0)


def test_wrong_response_code_is_passed_through():
    with linked() as (sim, link, _, _):
        sim.add_fault("wrong_rc", rc="96")
        assert link.exchange(cup_sale(1)).response_code == "96"


def test_response_with_another_amount_fails_validation():
    with linked() as (sim, link, _, events):
        sim.add_fault("wrong_amount")
        with pytest.raises(ResponseMismatch) as err:
            link.exchange(cup_sale(1))
        assert isinstance(err.value, InvalidResponse)
        assert any(v.startswith("field 4") for v in err.value.violations)
        assert kinds(events) == ["invalid_response"]


def test_undecodable_frame_is_an_invalid_response():
    with linked() as (sim, link, _, events):
        sim.add_fault("garbage")
        with pytest.raises(UndecodableResponse):
            link.exchange(cup_sale(1))
        assert kinds(events) == ["undecodable"]


def test_refused_connection_retries_with_backoff_and_sends_nothing():
    with linked(link_config={"connect_attempts": 3, "backoff": 1.0}) as (sim, link, clock, events):
        sim.refuse_connections()
        with pytest.raises(ConnectFailed) as err:
            link.exchange(cup_sale(1))
        assert err.value.maybe_sent is False
        assert clock.slept == [1.0, 2.0]
        assert kinds(events) == ["connect_failed"] * 3
        sim.accept_connections()
        assert link.exchange(cup_sale(1)).approved


def test_host_closing_an_idle_connection_is_noticed_before_sending():
    with linked() as (sim, link, _, _):
        assert link.exchange(cup_sale(1)).approved
        sim.drop_connections()
        assert link.exchange(cup_sale(2)).approved
        assert link.stats.connects == 2


@pytest.mark.parametrize("algorithm", ["x919", "cup-ecb"])
def test_mac_on_request_and_verified_on_response(algorithm: str):
    scheme = MacScheme(algorithm, MacKey(KEY))  # type: ignore[arg-type]
    with linked(sim_config={"mac_algorithm": algorithm, "mac_key": KEY, "require_mac": True},
                link_config={"mac": scheme}) as (sim, link, _, _):
        resp = link.exchange(cup_sale(1))
        assert resp.approved and "64" in resp
        assert sim.ledger.find(kind="sale")[0].status == "approved"


def test_corrupt_response_mac_is_a_mac_failure_with_reason_a0():
    scheme = MacScheme("x919", MacKey(KEY))
    with linked(sim_config={"mac_algorithm": "x919", "mac_key": KEY},
                link_config={"mac": scheme}) as (sim, link, _, events):
        sim.add_fault("corrupt_mac")
        with pytest.raises(MacFailure) as err:
            link.exchange(cup_sale(1))
        assert reversal_reason(err.value) == "A0"
        assert kinds(events) == ["mac_failure"]


def test_wrong_key_on_the_terminal_never_yields_an_approval():
    with linked(sim_config={"mac_algorithm": "x919", "mac_key": KEY},
                link_config={"mac": MacScheme("x919", MacKey(bytes(16)))}) as (sim, link, _, _):
        with pytest.raises(MacFailure):
            link.exchange(cup_sale(1))
        assert sim.ledger.find(kind="sale") == []  # the host answered A0 and booked nothing


def test_approval_without_a_mac_is_rejected_when_macs_are_configured():
    # an open host that never MACs (its strict default MACs every answer under the sign-on's key)
    with linked(sim_config={"security": "open"}, link_config={"mac": MacScheme("x919", MacKey(KEY))}) as (_, link, _, _):
        with pytest.raises(MacFailure, match="carries no MAC"):
            link.exchange(cup_sale(1))


def test_mac_in_iso87ascii_is_hex_text():
    scheme = MacScheme("x919", MacKey(KEY))
    with linked(dialect="iso87ascii", sim_config={"mac_algorithm": "x919", "mac_key": KEY, "require_mac": True},
                link_config={"mac": scheme}) as (_, link, _, _):
        assert link.exchange(iso_sale("iso87ascii", 1)).approved


def test_no_card_data_in_errors_events_or_reprs():
    with linked() as (sim, link, _, events):
        sim.add_fault("wrong_amount")
        with pytest.raises(ResponseMismatch) as err:
            link.exchange(cup_sale(1))
        texts = [str(err.value), repr(link), *(repr(e) for e in events), *(e.detail for e in events)]
        assert not any(PAN in t for t in texts)


def test_echo_fields_are_checked_even_when_a_dialect_declares_none():
    import dataclasses

    from posguard.iso8583 import get_dialect, register_dialect

    lax = dataclasses.replace(get_dialect("cup"), name="cup-lax-echo", echo_fields=())
    register_dialect(lax, replace=True)
    with linked(link_config={"dialect": "cup-lax-echo"}) as (sim, link, _, _):
        sim.add_fault("wrong_amount")
        sale = Message("0200", cup_sale(1).fields(), "cup-lax-echo")
        with pytest.raises(ResponseMismatch) as err:
            link.exchange(sale)
        assert err.value.violations == ("field 4: differs from the request",)


def test_sign_on_is_retried_after_a_timeout_with_backoff():
    with linked(link_config={"net_attempts": 3, "backoff": 1.0}) as (sim, link, clock, events):
        sim.add_fault("no_response", mti="0800")
        resp = link.net_exchange(sign_on_message(link.dialect, stan=1, tid="TERM0001", mid="123456789012345"))
        assert resp.response_code == "00"
        assert clock.slept == [1.0]
        assert clock.monotonic() == pytest.approx(31.0)
        assert kinds(events) == ["timeout", "response"]


def test_sign_on_gives_up_after_net_attempts():
    with linked(link_config={"net_attempts": 2, "backoff": 1.0}) as (sim, link, _, _):
        sim.add_fault("no_response", mti="0800", times=0)
        with pytest.raises(HostTimeout):
            link.net_exchange(sign_on_message(link.dialect, stan=1, tid="TERM0001", mid="123456789012345"))
        assert len(sim.received) == 2


def test_after_an_undecodable_answer_the_link_goes_on():
    with linked() as (sim, link, _, events):
        sim.add_fault("garbage", stan="2")
        assert link.exchange(cup_sale(1)).approved
        with pytest.raises(UndecodableResponse):
            link.exchange(cup_sale(2))
        assert link.exchange(cup_sale(3)).approved
        assert "undecodable" in kinds(events)
