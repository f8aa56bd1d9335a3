"""Issue 12 (part): the encrypting PIN pad driver against the EPP simulator on a real pty. The PIN is keyed on
the simulator's control channel (the cardholder), never through posguard; posguard only ever holds the
encrypted format-0 block."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from firmware_sim.rig.sims import PinPadSim, pin_pad
from posguard.drivers.pinpad import (
    KeyCheckFailed,
    NoWorkingKey,
    PinBypassed,
    PinEntryCancelled,
    PinEntryTimeout,
    PinPad,
    PinPadNotResponding,
    open_pin_pad,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import psec.des
    import psec.pinblock

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the simulator's test TMK
PIN_KEY = bytes.fromhex("2315208C9110AD402315208C9110AD40")  # a test working key
PAN = "4761739001010119"


def _tdes(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psec.des.decrypt_tdes_ecb(key, data) if decrypt else psec.des.encrypt_tdes_ecb(key, data)


def _under_tmk(key: bytes) -> tuple[bytes, bytes]:
    return _tdes(TMK, key), _tdes(key, bytes(8))[:4]


@pytest.fixture
def sim() -> Iterator[PinPadSim]:
    with pin_pad(TMK) as s:
        yield s


@pytest.fixture
def pad(sim: PinPadSim) -> Iterator[PinPad]:
    p = open_pin_pad(str(sim.link))
    try:
        p.load_working_key(*_under_tmk(PIN_KEY))
        yield p
    finally:
        p.close()


def _entry(pad: PinPad, sim: PinPadSim, **kw: Any) -> Future[bytes]:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(pad.get_pin_block, PAN, **kw)
    deadline = time.monotonic() + 10
    while not sim.pad_status()["pending"]:  # the pad shows "enter PIN"
        assert time.monotonic() < deadline and not future.done(), future
        time.sleep(0.01)
    pool.shutdown(wait=False)
    return future


def test_format_0_known_answer() -> None:
    """ISO 9564-1 format 0: 0 | length | PIN | F padding, XOR 0000 | 12 PAN digits before the check digit."""
    assert psec.pinblock.encode_pinblock_iso_0("1234", "4111111111111111").hex().upper() == "041225EEEEEEEEEE"


def test_the_pin_comes_back_only_as_an_encrypted_block(pad: PinPad, sim: PinPadSim) -> None:
    assert pad.info()["keys"] == "1"
    entry = _entry(pad, sim)
    sim.key_pin("4321")
    block = entry.result(10)
    assert len(block) == 8 and b"4321" not in block
    clear = _tdes(PIN_KEY, block, decrypt=True)  # what the host does with its copy of the PIN key
    assert clear[:1].hex().upper() == "04"  # format 0, four digits
    assert psec.pinblock.decode_pinblock_iso_0(clear, PAN) == "4321"
    assert PAN not in repr(pad) and block.hex() not in repr(pad)


def test_a_working_key_with_a_wrong_check_value_is_refused(sim: PinPadSim) -> None:
    pad = open_pin_pad(str(sim.link))
    try:
        key, check = _under_tmk(PIN_KEY)
        with pytest.raises(KeyCheckFailed) as err:
            pad.load_working_key(key, bytes(4))
        assert "check value" in str(err.value) and "sign on" in err.value.hint
        with pytest.raises(NoWorkingKey):
            pad.get_pin_block(PAN, timeout=5)
        pad.load_working_key(key, check)
    finally:
        pad.close()


@pytest.mark.parametrize(("action", "error", "words"), [
    ("cancel", PinEntryCancelled, "cancelled by the cardholder"),
    ("expire", PinEntryTimeout, "did not enter the PIN in time"),
    ("bypass", PinBypassed, "without a PIN"),
])
def test_each_way_an_entry_ends_without_a_pin(pad: PinPad, sim: PinPadSim, action: str,
                                              error: type[Exception], words: str) -> None:
    entry = _entry(pad, sim)
    getattr(sim, action)()
    with pytest.raises(error) as err:
        entry.result(10)
    assert words in str(err.value) and PAN not in str(err.value)
    entry = _entry(pad, sim)  # and the pad takes the next entry
    sim.key_pin("1234")
    assert len(entry.result(10)) == 8


def test_the_terminal_cancels_an_entry(pad: PinPad, sim: PinPadSim) -> None:
    stop = threading.Event()
    entry = _entry(pad, sim, cancel=stop)
    stop.set()  # the operator's cancel, or SIGTERM
    with pytest.raises(PinEntryCancelled) as err:
        entry.result(10)
    assert err.value.by == "terminal"
    assert sim.pad_status()["pending"] is False


def test_a_damaged_answer_is_never_taken(pad: PinPad, sim: PinPadSim) -> None:
    sim.fault("noise flip=1.0")  # every byte of the pad's next answer has a bit flipped on the line
    pad.command_timeout = 0.3
    with pytest.raises(PinPadNotResponding):  # a damaged answer is dropped, never taken for an answer
        pad.info()
    assert pad.counters.errors.get("frame", 0) + pad.counters.errors.get("timeout", 0) >= 1
    assert pad.info()["model"] == "POSGUARD-EPP-SIM"  # the line is clean again: the next command works


def test_an_unplugged_pad_is_a_typed_error(pad: PinPad, sim: PinPadSim) -> None:
    sim.unplug()
    with pytest.raises(PinPadNotResponding) as err:
        pad.info()
    assert "pinpad" not in err.value.hint or "cable" in err.value.hint


def test_a_missing_port_names_it() -> None:
    with pytest.raises(PinPadNotResponding) as err:
        open_pin_pad("/dev/no-such-pin-pad")
    assert "/dev/no-such-pin-pad" in str(err.value) and "pinpad.port" in err.value.hint
