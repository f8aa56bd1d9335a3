"""Our GemPC Twin serial driver against the Twin reader firmware on a pty (no pcscd in between)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from posguard.drivers.errors import CardMute, CardRemoved, NoCard, ReaderUnplugged
from posguard.drivers.reader import CardEvent
from posguard.drivers.twin.reader import TwinReader, probe
from posguard.emv import read_card
from posguard.emv.terminal import EmvTerminal, Transaction
from tests.drivers.twin_sim import TOKEN_KEY, TwinSim

CFG = EmvTerminal(pan_token_key=TOKEN_KEY)
TXN = Transaction(amount=500)


@pytest.mark.parametrize(("profile", "cvm"), [
    ("visa_credit_sig", "signature"), ("unionpay_debit_pin", "online_pin"), ("mastercard_nocvm", "none")])
def test_full_session_over_the_serial_line(twin_sim: Callable[..., TwinSim], profile: str, cvm: str) -> None:
    sim = twin_sim(profile)
    with TwinReader(str(sim.link), timeout=0.5) as r:
        assert r.firmware().startswith("GemPC Twin")
        r.wait_for_card(1)
        s = read_card(r, CFG, TXN)
        assert s.cvm_required == cvm and s.cryptogram_type == "ARQC"
        c = r.counters
        assert c.frames_sent == c.frames_received == c.echoes > 10
        assert c.lrc_errors == c.retransmissions == c.resyncs == c.naks_sent == 0


def test_reader_without_echo(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("visa_credit_sig", echo=False)
    with TwinReader(str(sim.link), timeout=0.5) as r:
        assert read_card(r, CFG, TXN).cvm_required == "signature"
        assert r.counters.echoes == 0


def test_line_noise_is_recovered_and_counted(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("unionpay_debit_pin", faults=("noise flip=0.004 garbage=0.3 times=0",), seed=7)
    with TwinReader(str(sim.link), timeout=0.5) as r:
        t0 = time.monotonic()
        s = read_card(r, CFG, TXN)
        assert s.cvm_required == "online_pin"
        assert time.monotonic() - t0 < 10
        c = r.counters.snapshot()
        assert c["resyncs"] > 0 and c["garbage_bytes"] > 0
        assert c["lrc_errors"] + c["broken_frames"] == c["naks_sent"] > 0


def test_mute_card(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("visa_credit_sig", faults=("mute ins=AE timeout=0.2",))
    with TwinReader(str(sim.link), timeout=0.5) as r:
        t0 = time.monotonic()
        with pytest.raises(CardMute) as e:
            read_card(r, CFG, TXN)
        assert time.monotonic() - t0 < 3
        assert e.value.code == 0xFE and any("GENERATE AC 1" in n for n in e.value.__notes__)


def test_card_pulled_mid_session(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("visa_credit_sig", faults=("pull ins=B2 after=3",))
    with TwinReader(str(sim.link), timeout=0.5) as r, pytest.raises(CardRemoved):
        read_card(r, CFG, TXN)


def test_reader_unplugged_mid_session(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("visa_credit_sig")
    r = TwinReader(str(sim.link), timeout=0.3, retries=1)
    try:
        r.power_on()
        sim.unplug()
        t0 = time.monotonic()
        with pytest.raises(ReaderUnplugged, match="cable"):
            for _ in range(3):  # the first write may still land in the pty buffer
                r.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))
        assert time.monotonic() - t0 < 3
    finally:
        r.close()


def test_card_insertion_and_removal(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("mastercard_nocvm", inserted=False)
    with TwinReader(str(sim.link), timeout=0.5) as r:
        assert not r.card_present()
        with pytest.raises(NoCard):
            r.wait_for_card(0.3)
        sim.insert("mastercard_nocvm")
        assert r.wait_for_event(2) is CardEvent.INSERTED
        assert r.power_on().startswith(b"\x3b")
        sim.remove()
        r.wait_for_removal(2)
        with pytest.raises(CardRemoved):
            r.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))


def test_probe_finds_the_twin_and_its_card(twin_sim: Callable[..., TwinSim]) -> None:
    sim = twin_sim("visa_credit_sig")
    info = probe(str(sim.link))
    assert info is not None and info.transport == "twin-serial" and info.card_present
    assert info.atr is not None and info.atr.startswith(b"\x3b") and "GemPC Twin" in info.detail


def test_probe_of_something_else_is_none(magstripe_factory: Callable[..., object]) -> None:
    mag = magstripe_factory()
    t0 = time.monotonic()
    assert probe(str(mag.link), timeout=0.2) is None  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 2
