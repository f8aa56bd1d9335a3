"""PcscReader through a real pcscd with vsmartcard-vpcd and simulated cards in subprocesses."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from smartcard.scard import _scard

from firmware_sim.rig.pcscd import PcscdRig
from firmware_sim.rig.sims import VpcdCard
from posguard.drivers.errors import (
    CardMute,
    CardRemoved,
    CardStillPresent,
    NoCard,
    NoReader,
    ReaderBusy,
    ReaderTimeout,
    ServiceUnavailable,
    TransportError,
)
from posguard.drivers.pcsc import PcscReader, list_readers, translate_error
from posguard.drivers.reader import CardEvent

pytestmark = pytest.mark.pcscd

SELECT_PSE = bytes.fromhex("00A404000E315041592E5359532E444446303100")
READ_PSE_1 = bytes.fromhex("00B2010C00")
READER = "Virtual PCD 00 00"


def test_list_readers_shows_card_and_atr(visa_card: VpcdCard) -> None:
    infos = {r.name: r for r in list_readers()}
    assert infos[READER].card_present and infos[READER].atr == visa_card.atr
    assert infos["Virtual PCD 00 01"].card_present is False and infos["Virtual PCD 00 01"].atr is None
    assert infos[READER].to_dict()["atr"] == visa_card.atr.hex().upper()


def test_prefix_name_and_t0_procedure_through_pcscd(visa_card: VpcdCard) -> None:
    with PcscReader("Virtual PCD") as r:
        assert r.name == READER
        assert r.power_on() == visa_card.atr
        assert r.protocol == "T=0"
        fci = r.transmit(SELECT_PSE)  # card answers 61xx: GET RESPONSE is automatic
        assert fci.ok and fci.data[0] == 0x6F and fci.data[2] == 0x84
        rec = r.transmit(READ_PSE_1)  # Le 00 -> 6Cxx -> resent with the right Le
        assert rec.ok and rec.data[0] == 0x70


def test_t1_style_card_answers_directly(mastercard_card: VpcdCard) -> None:
    with PcscReader(READER) as r:
        r.power_on()
        assert r.transmit_raw(SELECT_PSE)[-2:] == b"\x90\x00"


def test_insertion_and_removal_events(card_factory: Callable[..., VpcdCard]) -> None:
    card = card_factory("mastercard_nocvm", inserted=False)
    with PcscReader(READER) as r:
        t0 = time.monotonic()
        with pytest.raises(NoCard, match="insert"):
            r.wait_for_card(0.3)
        assert time.monotonic() - t0 < 1.0
        card.insert(wait=False)
        assert r.wait_for_event(5) is CardEvent.INSERTED
        r.wait_for_card(1)
        assert r.card_present()
        with pytest.raises(CardStillPresent):
            r.wait_for_removal(0.2)
        card.remove(wait=False)
        r.wait_for_removal(5)
        assert not r.card_present()


def test_card_pulled_during_a_command(card_factory: Callable[..., VpcdCard]) -> None:
    card_factory("mastercard_nocvm", faults=["pull ins=B2"])
    with PcscReader(READER) as r:
        r.power_on()
        r.transmit(SELECT_PSE)
        t0 = time.monotonic()
        with pytest.raises(CardRemoved, match="pulled out too early"):
            r.transmit(READ_PSE_1)
        assert time.monotonic() - t0 < 2.0


def test_mute_card_is_cut_by_the_apdu_watchdog(card_factory: Callable[..., VpcdCard]) -> None:
    card_factory("mastercard_nocvm", faults=["mute ins=A4"])
    with PcscReader(READER, apdu_timeout=0.4) as r:
        r.power_on()
        t0 = time.monotonic()
        with pytest.raises(CardMute, match="did not answer within 0.4 s"):
            r.transmit(SELECT_PSE)
        assert time.monotonic() - t0 < 1.5
        assert r.card_present()  # the reader object is still usable (new PC/SC context)


def test_a_reader_still_busy_with_a_mute_card_fails_the_next_power_on_instead_of_hanging(
        card_factory: Callable[..., VpcdCard]) -> None:
    """After a mute card, pcscd keeps waiting on the reader, and a plain SCardConnect waited with it for good (the
    next sale hung the service). The power-on calls are bounded by apdu_timeout as commands are: a ReaderTimeout
    naming the reader and what to do. (The thread only guards the test against the old hang.)"""
    import threading

    card_factory("mastercard_nocvm", faults=["mute times=0"])
    r = PcscReader(READER, apdu_timeout=0.4)
    r.power_on()
    with pytest.raises(CardMute):
        r.transmit(SELECT_PSE)
    outcome: list[BaseException] = []

    def power_on_again() -> None:
        try:
            r.power_on()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=power_on_again, daemon=True)
    worker.start()
    worker.join(15)
    if worker.is_alive():  # r is left as it is: closing it would block too; the card's teardown frees pcscd
        pytest.fail("power_on hung on the busy reader")
    r.close()
    (err,) = outcome
    assert isinstance(err, ReaderTimeout) and "did not power the card on within 0.4 s" in str(err), err
    assert "remove the card" in err.hint and r.name in str(err)


def test_unknown_reader_is_no_reader_within_timeout(pcscd_rig: PcscdRig) -> None:
    with PcscReader("No Such Reader") as r:
        t0 = time.monotonic()
        with pytest.raises(NoReader, match="plugged in"):
            r.wait_for_card(0.3)
        assert time.monotonic() - t0 < 1.5


def test_pcscd_restart_is_survived(visa_card: VpcdCard, pcscd_rig: PcscdRig) -> None:
    with PcscReader(READER) as r:
        r.power_on()
        pcscd_rig.stop()
        with pytest.raises(ServiceUnavailable, match="pcscd"):
            r.transmit(SELECT_PSE)
        pcscd_rig.ensure(vpcd=True)
        r.wait_for_card(5)  # new context, reader found again, the card reconnects by itself
        r.power_on()
        assert r.transmit(SELECT_PSE).ok


@pytest.mark.parametrize(("code", "cls", "words"), [
    (_scard.SCARD_E_NO_SERVICE, ServiceUnavailable, "pcscd running"),
    (_scard.SCARD_W_REMOVED_CARD, CardRemoved, "pulled out"),
    (_scard.SCARD_W_UNRESPONSIVE_CARD, CardMute, "clean the chip"),
    (_scard.SCARD_E_SHARING_VIOLATION, ReaderBusy, "other programs"),
    (_scard.SCARD_E_UNKNOWN_READER, NoReader, "plugged in"),
    (_scard.SCARD_E_NO_SMARTCARD, NoCard, "insert"),
    (0x80100099, TransportError, "cable"),
])
def test_pcsc_codes_become_typed_errors_with_guidance(code: int, cls: type, words: str) -> None:
    err = translate_error(code, "transmit", "R1")
    assert type(err) is cls and words in str(err) and err.code == code and "R1" in str(err)
