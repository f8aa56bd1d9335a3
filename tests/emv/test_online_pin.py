"""The online-PIN performer and the CVM walk, on the in-process card applet (no transport) and a scripted pad
standing in for the driver's typed outcomes (the real pad on a pty: tests/integration/test_online_pin.py)."""

from __future__ import annotations

import pickle
import threading
from datetime import datetime
from typing import Any

import pytest

from firmware_sim.card import Card
from posguard.card import CardData
from posguard.drivers.pinpad import (
    NoWorkingKey,
    PinBypassed,
    PinEntryCancelled,
    PinEntryTimeout,
    PinPadError,
    PinPadNotResponding,
)
from posguard.emv import read_card
from posguard.emv.engine_card import card_data
from posguard.emv.online_pin import OnlinePin, PinEntryAborted, load_pin_key
from posguard.emv.terminal import EmvTerminal, Transaction, terminal_capabilities
from posguard.sensitive import PinBlock
from tests.emv.test_engine_card import AppletReader
from tests.secret_sweep import register_secret

TOKEN_KEY = b"K" * 32
BLOCK = bytes.fromhex("3C5A7E9102B4D6F8")  # what the scripted pad "encrypts"
register_secret(BLOCK)
TXN = Transaction(amount=100_00, when=datetime(2026, 5, 1, 10, 30, 0), unpredictable_number=bytes(4))


class ScriptedPad:
    """Answers ``get_pin_block`` with a block or raises one of the driver's errors."""

    def __init__(self, outcome: bytes | PinPadError) -> None:
        self.outcome = outcome
        self.asked: list[str] = []
        self.loaded: list[tuple[bytes, bytes, int]] = []

    def get_pin_block(self, pan: Any, *, slot: int = 1, timeout: int = 30, min_len: int = 4, max_len: int = 12,
                      cancel: threading.Event | None = None) -> bytes:
        self.asked.append(pan.masked)
        if isinstance(self.outcome, PinPadError):
            raise self.outcome
        return self.outcome

    def load_working_key(self, key_under_tmk: bytes, check_value: bytes, *, slot: int = 1) -> None:
        self.loaded.append((key_under_tmk, check_value, slot))


def _read(pad: ScriptedPad | None, *, pin_pad: bool = True) -> Any:
    entry = OnlinePin(pad) if pad is not None else None
    terminal = EmvTerminal(pan_token_key=TOKEN_KEY, capabilities=terminal_capabilities(pin_pad=pin_pad))
    session = read_card(AppletReader(Card("unionpay_debit_pin")), terminal, TXN, online_pin=entry)
    return session, entry


def test_a_block_makes_online_pin_with_the_tvr_bit() -> None:
    pad = ScriptedPad(BLOCK)
    session, entry = _read(pad)
    assert pad.asked == ["625094******0014"]  # the pad got the PAN; the test saw only its masked form
    assert session.cvm_required == "online_pin" and session.cvm_results == bytes.fromhex("420300")
    assert session.tvr[2] == 0x04 and entry.outcome == "entered"
    assert session.pin_block == PinBlock(BLOCK)
    card = card_data(session)
    assert card.pin_block == PinBlock(BLOCK)
    for text in (repr(session), str(session), repr(card), str(session.to_dict())):
        assert BLOCK.hex() not in text.lower()


@pytest.mark.parametrize(("error", "tvr3"), [
    (PinBypassed("bypass"), 0x08),  # PIN pad present, PIN not entered
    (NoWorkingKey("no key"), 0x10),  # PIN pad not present or not working
    (PinPadNotResponding("gone"), 0x10),
])
def test_bypass_or_a_pad_not_working_moves_to_the_next_rule(error: PinPadError, tvr3: int) -> None:
    session, _entry = _read(ScriptedPad(error))
    assert session.cvm_required == "signature" and session.cvm_results == bytes.fromhex("1E0300")
    assert session.tvr[2] == tvr3 and session.pin_block is None
    assert session.cvm_trace[0] == "rule 4203: online PIN not entered"


@pytest.mark.parametrize(("error", "reason"), [
    (PinEntryTimeout("timeout"), "timeout"),
    (PinEntryCancelled("cancel", by="terminal"), "cancelled"),
])
def test_timeout_and_cancel_end_the_session(error: PinPadError, reason: str) -> None:
    with pytest.raises(PinEntryAborted) as caught:
        _read(ScriptedPad(error))
    assert caught.value.reason == reason and caught.value.stage == "online PIN entry"


def test_without_a_pad_online_pin_is_not_announced_and_the_pad_is_not_asked() -> None:
    session, _ = _read(None, pin_pad=False)
    assert session.cvm_required == "signature" and session.pin_block is None


def test_a_pin_block_is_never_printed_or_pickled() -> None:
    block = PinBlock(BLOCK)
    assert repr(block) == str(block) == "PinBlock(<8 bytes>)" and f"{block}" == "PinBlock(<8 bytes>)"
    with pytest.raises(TypeError):
        pickle.dumps(block)
    card = CardData.from_pan("6250947000000014", TOKEN_KEY)
    with pytest.raises(TypeError):
        pickle.dumps(type(card)(card.pan, card.pan_token, pin_block=block))
    with pytest.raises(ValueError):
        PinBlock(b"short")


def test_the_pin_key_goes_to_the_pad_as_it_came() -> None:
    class Keys:
        pin_under_tmk = bytes(range(16))
        pin_kcv = bytes.fromhex("01020304")

    pad = ScriptedPad(BLOCK)
    load_pin_key(pad, Keys())
    assert pad.loaded == [(bytes(range(16)), bytes.fromhex("01020304"), 1)]
