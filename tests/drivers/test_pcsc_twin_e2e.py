"""PcscReader on the GemPC Twin firmware served by pcscd's own libccidtwin driver (real CCID stack)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from firmware_sim.rig.sims import TwinReader as RigTwin
from posguard.drivers.errors import ReaderUnplugged
from posguard.drivers.pcsc import PcscReader
from posguard.emv import read_card
from posguard.emv.terminal import EmvTerminal, Transaction
from tests.drivers.twin_sim import TOKEN_KEY

pytestmark = pytest.mark.pcscd
CFG = EmvTerminal(pan_token_key=TOKEN_KEY)


def test_session_through_libccidtwin(twin_factory: Callable[..., RigTwin]) -> None:
    twin = twin_factory("unionpay_debit_pin")
    with PcscReader(twin.reader, apdu_timeout=3.0) as r:
        r.wait_for_card(5)
        s = read_card(r, CFG, Transaction(amount=100))
        assert s.cvm_required == "online_pin" and s.cvm_results.hex().upper() == "420300"


def test_unplugged_twin_under_pcscd_is_a_typed_error(twin_factory: Callable[..., RigTwin]) -> None:
    twin = twin_factory("visa_credit_sig")
    with PcscReader(twin.reader, apdu_timeout=3.0) as r:
        r.wait_for_card(5)
        r.power_on()
        twin.unplug()
        t0 = time.monotonic()
        with pytest.raises(ReaderUnplugged, match="cable"):
            for _ in range(3):
                r.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100"))
        assert time.monotonic() - t0 < 8
