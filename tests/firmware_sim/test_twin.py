"""The GemPC Twin firmware driven by the real libccidtwin driver inside pcscd, through pyscard."""

from __future__ import annotations

import time

import pytest
from smartcard.Exceptions import CardConnectionException

from firmware_sim.rig.pcscd import TWIN_READER, RigError, list_readers
from firmware_sim.rig.sims import connected, transmit
from tests.firmware_sim import bounded, emv

pytestmark = pytest.mark.pcscd


def sender(conn):  # type: ignore[no-untyped-def]
    return lambda raw: transmit(conn, raw)


@pytest.mark.parametrize(("profile", "atr", "protocol"), [
    ("visa_credit_sig", "3B680000504F534755415244", 1),
    ("mastercard_nocvm", "3BE800008131FE45504F534755415244EA", 2),
])
def test_libccidtwin_reads_the_atr_and_runs_emv(twin_factory, profile, atr, protocol) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory(profile)
    assert twin.atr.hex().upper() == atr
    with connected(twin.reader) as conn:
        assert conn.getProtocol() == protocol
        send = sender(conn)
        found = emv.read_application(send)
        first = emv.generate_ac(send, found["8C"], 0x80, 4200)
        assert first["9F27"] == b"\x80" and len(first["9F26"]) == 8
    commands = twin.status()["commands"]
    assert commands["Escape"] >= 2 and commands["IccPowerOn"] >= 1 and commands["XfrBlock"] >= 8


def test_t0_procedure_bytes_over_the_serial_reader(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig")
    with connected(twin.reader, "T0") as conn:
        assert transmit(conn, emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))[1] == 0x611C
        assert transmit(conn, "00B2010C00") == (b"", 0x6C1D)


def test_card_movements_are_seen_by_pcscd(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig")
    twin.remove()
    twin.insert("mastercard_nocvm")
    assert twin.atr.hex().upper().startswith("3BE8")


def test_a_reader_without_echo_is_dropped_by_the_driver(pcscd_rig) -> None:  # type: ignore[no-untyped-def]
    from firmware_sim.rig.sims import twin_reader

    with pytest.raises(RigError, match="did not list"):
        with twin_reader("visa_credit_sig", echo=False, rig=pcscd_rig, timeout=3.0):
            pass
    pcscd_rig.ensure(vpcd=True)  # the rig recovers: pcscd runs again, without the dead reader
    readers = list_readers()
    assert readers is not None and TWIN_READER not in readers


def test_card_pulled_mid_command(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig", faults=["pull ins=CA"])
    with connected(twin.reader) as conn:
        call = bounded.start(lambda: transmit(conn, "80CA9F3605"))
        assert call.wait(5.0)
        assert isinstance(call.error, CardConnectionException)
    twin.wait_absent(timeout=3.0)


def test_mute_card_is_reported_by_the_reader(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig", faults=["mute ins=CA timeout=0.3"])
    with connected(twin.reader) as conn:
        call = bounded.start(lambda: transmit(conn, "80CA9F3605"))
        assert call.wait(5.0), "the reader must give up on a mute card"
        assert isinstance(call.error, CardConnectionException)
        assert call.elapsed >= 0.3


def test_slow_card(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig", faults=["delay seconds=0.3 ins=CA"])
    with connected(twin.reader) as conn:
        started = time.monotonic()
        assert transmit(conn, "80CA9F3605")[1] == 0x9000
        assert 0.3 <= time.monotonic() - started < 2.0


def test_wrong_status_word(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig", faults=["sw sw=6F00 ins=CA"])
    with connected(twin.reader) as conn:
        assert transmit(conn, "80CA9F3605") == (b"", 0x6F00)


def test_line_noise_breaks_an_exchange_then_the_line_recovers(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig")
    with connected(twin.reader) as conn:
        twin.fault("noise garbage=1 times=2")
        call = bounded.start(lambda: transmit(conn, "80CA9F3605"))
        assert call.wait(8.0)
        assert isinstance(call.error, CardConnectionException)
    assert twin.status()["faults"][0].endswith("fired=2")


def test_unplugged_reader_fails_the_exchange(twin_factory) -> None:  # type: ignore[no-untyped-def]
    twin = twin_factory("visa_credit_sig")
    with connected(twin.reader) as conn:
        twin.unplug()
        call = bounded.start(lambda: transmit(conn, "80CA9F3605"))
        assert call.wait(8.0)
        assert isinstance(call.error, CardConnectionException)
    assert not twin.link.exists()
