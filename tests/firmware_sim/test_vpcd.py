"""Cards in the real pcscd + vsmartcard-vpcd, seen through third-party tools and pyscard."""

from __future__ import annotations

import subprocess
import time

import pytest
from smartcard.Exceptions import CardConnectionException, NoCardException

from firmware_sim.rig.pcscd import VPCD_READER, pcsc_env
from firmware_sim.rig.sims import connected, transmit
from tests.firmware_sim import bounded, emv

pytestmark = pytest.mark.pcscd

VISA_ATR = "3B680000504F534755415244"
MASTERCARD_ATR = "3BE800008131FE45504F534755415244EA"


def sender(conn):  # type: ignore[no-untyped-def]
    return lambda raw: transmit(conn, raw)


def test_pcsc_scan_lists_the_virtual_reader(pcscd_rig) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(["pcsc_scan", "-r"], capture_output=True, text=True, env=pcsc_env(), timeout=10)
    assert out.returncode == 0
    assert f"0: {VPCD_READER}" in out.stdout


def test_clients_honour_the_private_socket(pcscd_rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**pcsc_env(), "PCSCLITE_CSOCK_NAME": str(tmp_path / "nobody.comm")}
    out = subprocess.run(["pcsc_scan", "-r"], capture_output=True, text=True, env=env, timeout=10)
    assert out.returncode != 0  # a client on another socket does not find our daemon


def test_opensc_tool_prints_our_atr(visa_card) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run(["opensc-tool", "-r", VPCD_READER, "-a"], capture_output=True, text=True,
                         env=pcsc_env(), timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().replace(":", "").upper() == VISA_ATR


@pytest.mark.parametrize(("profile", "pan", "protocol"), [
    ("visa_credit_sig", "4761739001010119", "T0"),
    ("unionpay_debit_pin", "6250947000000014", "T0"),
    ("mastercard_nocvm", "5413330089010434", "T1"),
])
def test_emv_flow_through_pyscard(card_factory, profile, pan, protocol) -> None:  # type: ignore[no-untyped-def]
    card = card_factory(profile)
    with connected(card.reader) as conn:
        assert conn.getProtocol() == {"T0": 1, "T1": 2}[protocol]
        send = sender(conn)
        found = emv.read_application(send)
        assert found["5A"].hex().rstrip("f") == pan
        first = emv.generate_ac(send, found["8C"], 0x80, 2500)
        assert first["9F27"] == b"\x80"
        second = emv.generate_ac(send, found["8D"], 0x40, 2500)
        assert second["9F27"] == b"\x40"
    assert card.status()["atc"] == 17


def test_arqc_changes_with_amount_and_atc_over_pcscd(visa_card) -> None:  # type: ignore[no-untyped-def]
    cryptograms = []
    with connected(visa_card.reader) as conn:
        send = sender(conn)
        for amount in (1000, 1000, 1001):
            found = emv.read_application(send)
            cryptograms.append(emv.generate_ac(send, found["8C"], 0x80, amount))
    atcs = [int.from_bytes(c["9F36"], "big") for c in cryptograms]
    assert atcs == [17, 18, 19]
    assert len({c["9F26"] for c in cryptograms}) == 3


def test_t0_procedure_bytes_reach_the_application(visa_card) -> None:  # type: ignore[no-untyped-def]
    with connected(visa_card.reader, "T0") as conn:
        assert transmit(conn, emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE)) == (b"", 0x611C)
        data, sw = transmit(conn, "00C000001C")
        assert sw == 0x9000 and data[0] == 0x6F
        assert transmit(conn, "00B2010C00") == (b"", 0x6C1D)
        data, sw = transmit(conn, "00B2010C1D")
        assert sw == 0x9000 and len(data) == 0x1D


def test_swap_and_remove(visa_card) -> None:  # type: ignore[no-untyped-def]
    assert visa_card.atr.hex().upper() == VISA_ATR
    visa_card.swap("mastercard_nocvm")
    assert visa_card.atr.hex().upper() == MASTERCARD_ATR
    visa_card.remove()
    with pytest.raises(NoCardException):
        with connected(visa_card.reader):
            pass
    visa_card.insert("visa_credit_sig")
    assert visa_card.atr.hex().upper() == VISA_ATR


def test_two_slots_hold_two_cards(card_factory) -> None:  # type: ignore[no-untyped-def]
    first = card_factory("visa_credit_sig")
    second = card_factory("unionpay_debit_pin", slot=1)
    assert second.reader == "Virtual PCD 00 01"
    with connected(second.reader) as conn:
        assert emv.read_application(sender(conn))["4F"] == bytes.fromhex("A000000333010101")
    assert first.atr.hex().upper() == VISA_ATR


def test_wrong_status_word_and_corrupt_record(card_factory) -> None:  # type: ignore[no-untyped-def]
    card = card_factory("mastercard_nocvm", faults=["sw sw=6A81 ins=B2"])
    with connected(card.reader) as conn:
        transmit(conn, emv.apdu(0x00, 0xA4, 0x04, 0x00, emv.PSE))
        assert transmit(conn, "00B2010C00") == (b"", 0x6A81)
        card.fault("corrupt_tlv delta=7")
        record, sw = transmit(conn, "00B2010C00")
        assert sw == 0x9000
        with pytest.raises(ValueError, match="claims"):
            emv.tlv_find(record, "4F")


def test_slow_card(card_factory) -> None:  # type: ignore[no-untyped-def]
    card = card_factory("mastercard_nocvm", faults=["delay seconds=0.3 ins=CA"])
    with connected(card.reader) as conn:
        started = time.monotonic()
        assert transmit(conn, "80CA9F3600")[1] == 0x9000
        assert 0.3 <= time.monotonic() - started < 2.0
        started = time.monotonic()
        transmit(conn, "80CA9F3600")
        assert time.monotonic() - started < 0.2


def test_card_pulled_mid_command(card_factory) -> None:  # type: ignore[no-untyped-def]
    card = card_factory("mastercard_nocvm", faults=["pull ins=CA"])
    with connected(card.reader) as conn:
        call = bounded.start(lambda: transmit(conn, "80CA9F3600"))
        assert call.wait(5.0), "transmit did not return after the card was pulled"
        assert isinstance(call.error, CardConnectionException)
    card.wait_absent(timeout=3.0)
    assert card.status()["last_event"] == "card pulled mid-command"


def test_mute_card_blocks_until_removed(card_factory) -> None:  # type: ignore[no-untyped-def]
    card = card_factory("mastercard_nocvm", faults=["mute ins=CA"])
    with connected(card.reader) as conn:
        call = bounded.start(lambda: transmit(conn, "80CA9F3600"))
        assert not call.wait(0.5), "a mute card must not answer"
        card.remove(wait=False)
        assert call.wait(5.0), "transmit stayed blocked after the mute card was removed"
        assert isinstance(call.error, CardConnectionException)


def test_unplug_and_replug(card_factory) -> None:  # type: ignore[no-untyped-def]
    card = card_factory("visa_credit_sig")
    card.unplug()
    card.wait_absent(timeout=3.0)
    time.sleep(0.5)  # unplugged stays unplugged: nothing reconnects on its own
    assert card.status()["connected"] is False
    card.command("replug")
    card.wait_present(timeout=3.0)
