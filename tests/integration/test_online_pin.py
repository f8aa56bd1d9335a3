"""Issue 12 §3/§5/§6: online PIN in the sale, end to end on real parts.

The UnionPay debit card (CVM list "online PIN if supported, apply next; signature if supported; no CVM") in the
simulated card behind the real pcscd + vpcd; the encrypting PIN pad simulator on a real pty, the cardholder's
keys pressed on its control channel; the engine over the real TCP host link to the acquirer simulator, which
decrypts field 52 with its PIN key and compares the PIN with the card's (firmware_sim.host.pin). Both dialect
families: CUP and ISO 8583 (iso87). The CUP pad gets its working key from a real sign-on (field 62, under the
TMK the pad holds); the terminal never decrypts it.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from firmware_sim.rig.sims import PinPadSim, VpcdCard, pin_pad
from posguard.clock import VirtualClock
from posguard.drivers.pcsc import PcscReader
from posguard.drivers.pinpad import PinPad, open_pin_pad
from posguard.emv import read_card
from posguard.emv.engine_card import card_data
from posguard.emv.online_pin import OnlinePin, PinEntryAborted, load_pin_key
from posguard.emv.session import CardSession
from posguard.emv.terminal import EmvTerminal, Transaction, terminal_capabilities
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine, TxnResult
from posguard.engine.journal import Journal
from posguard.engine.keys import TerminalMasterKey, kcv4
from posguard.iso8583.tlv import parse_tlv
from tests.engine.conftest import TERMINAL
from tests.host_sim.harness import linked
from tests.rig.fixtures import *  # noqa: F403 - the reader rig (card_factory)
from tests.secret_sweep import register_secret

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import psec.des

pytestmark = pytest.mark.pcscd

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the pad's (and this terminal's) test master key
OTHER_KEY = bytes.fromhex("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8")  # a PIN key the host does not have
PAN = "6250947000000014"  # firmware_sim.card profile unionpay_debit_pin
CARD_PIN = "842917"
WRONG_PIN = "550371"
for _secret in (TMK, OTHER_KEY):
    register_secret(_secret)
register_secret(CARD_PIN.encode(), WRONG_PIN.encode())


def _tdes(key: bytes, data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(psec.des.encrypt_tdes_ecb(key, data))





@dataclass
class Lane:
    dialect: str
    engine: TransactionEngine
    sim: HostSimulator
    clock: VirtualClock
    pad: PinPad
    pad_sim: PinPadSim
    reader: PcscReader

    def terminal(self, *, pin_pad: bool = True) -> EmvTerminal:
        return EmvTerminal(pan_token_key=TERMINAL.token_key, terminal_id=TERMINAL.terminal_id,
                           capabilities=terminal_capabilities(pin_pad=pin_pad), timezone="Asia/Shanghai")

    def read(self, *, online_pin: OnlinePin | None, pin_pad: bool = True) -> CardSession:
        self.reader.wait_for_card(5)
        txn = Transaction(amount=88_00, when=datetime.fromtimestamp(self.clock.now(), UTC))
        session = read_card(self.reader, self.terminal(pin_pad=pin_pad), txn, online_pin=online_pin)
        if session.pin_block is not None:
            register_secret(session.pin_block.reveal())  # the sweep looks for it in every file written
        return session

    def sale(self, session: CardSession) -> TxnResult:
        return self.engine.sale(card_data(session), 88_00)

    def host_sales(self) -> list[Any]:
        return self.sim.ledger.find(kind="sale")


@contextmanager
def lane(dialect: str, tmp_path: Path, card: VpcdCard, **sim_config: Any) -> Iterator[Lane]:
    # the host issues fresh working keys at every sign-on, under this terminal's TMK (CUP field 62, ISO 0800/70
    # field 48); the PIN key goes to the pad as it came, and the host checks field 52 with the key it issued.
    # The PIN-block and local-date checks are the host's defaults (issue 12 §5): not configured here
    config: dict[str, Any] = {"terminal_keys": {TERMINAL.terminal_id: TMK.hex().upper()}, "card_pins": {PAN: CARD_PIN},
                              "pin_tries": 3, **sim_config}
    terminal = replace(TERMINAL, tmk=TerminalMasterKey(TMK), timezone="Asia/Shanghai")
    with pin_pad(TMK) as pad_sim, linked(dialect=dialect, sim_config=config) as (sim, link, clock, _events):
        journal = Journal(tmp_path / "journal.db", clock=clock)
        pad = open_pin_pad(str(pad_sim.link))
        reader = PcscReader("Virtual PCD 00 00", apdu_timeout=0.5)
        try:
            engine = TransactionEngine(journal, link, dialect, terminal, clock, Detectors.default(clock))
            engine.sign_on()
            assert engine.working_keys is not None
            issued = sim.processor.working_keys(TERMINAL.terminal_id)
            assert issued is not None
            for key in (issued.pin_key, issued.mac_key):
                register_secret(key)  # the sweep looks for the keys this sign-on issued in every file written
            load_pin_key(pad, engine.working_keys)
            yield Lane(dialect, engine, sim, clock, pad, pad_sim, reader)
        finally:
            reader.close()
            pad.close()
            journal.close()


def cardholder(pad_sim: PinPadSim, action: Callable[[PinPadSim], object]) -> threading.Thread:
    """The customer at the pad: waits until the pad shows "enter PIN", then does ``action``."""

    def run() -> None:
        deadline = time.monotonic() + 20
        while not pad_sim.pad_status()["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        action(pad_sim)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def keys(pin: str) -> Callable[[PinPadSim], object]:
    return lambda p: p.key_pin(pin)


@pytest.fixture(params=["cup", "iso87", "iso87ascii"])
def t(request: pytest.FixtureRequest, tmp_path: Path, card_factory: Callable[..., VpcdCard]) -> Iterator[Lane]:
    card = card_factory("unionpay_debit_pin")
    with lane(request.param, tmp_path, card) as t:
        yield t


def _tags(session: CardSession) -> dict[str, bytes]:
    return {i.tag: i.value for i in parse_tlv(session.field55)}


def test_pin_approved_carries_52_53_26_and_the_pin_digit(t: Lane) -> None:
    entry = OnlinePin(t.pad, timeout=30)
    cardholder(t.pad_sim, keys(CARD_PIN))
    session = t.read(online_pin=entry)
    assert entry.outcome == "entered" and session.cvm_required == "online_pin"
    assert session.cvm_results.hex().upper() == "420300"  # online PIN, result unknown: the issuer verifies
    assert session.tvr[2] & 0x04  # TVR byte 3: online PIN entered
    assert _tags(session)["9F33"] == bytes.fromhex("E06800")  # announced online PIN: there is a pad
    block = session.pin_block
    assert block is not None and "PinBlock(<8 bytes>)" == repr(block)
    assert block.reveal().hex() not in repr(card_data(session)) and "PIN block" in repr(card_data(session))
    sale = t.sale(session)
    assert sale.approved, sale.operator_message
    [request] = [m for m in t.sim.received if m["t"] == "0200"]
    assert request["52"] == "<16 chars>" and request["53"] == ("2600000000000000" if t.dialect == "cup"
                                                                else "2001010100000000")
    assert request["26"] == "12"
    if t.dialect == "cup":
        assert request["22"] == "051"  # third digit 1: PIN included
    [charge] = t.host_sales()
    assert charge.status == "approved" and charge.rc == "00"
    # the journal keeps 52/53 hidden; the armed reversal (sealed) carries neither
    masked = " ".join(str(row["masked"]) for row in t.engine.journal.messages(sale.txn_id))
    assert block.reveal().hex().upper() not in masked.upper() and '"52": "****' in masked


def test_wrong_pin_is_55_and_no_reversal(t: Lane) -> None:
    cardholder(t.pad_sim, keys(WRONG_PIN))
    sale = t.sale(t.read(online_pin=OnlinePin(t.pad)))
    assert sale.response_code == "55" and not sale.approved
    assert "wrong PIN" in sale.operator_message and "nothing was charged" in sale.operator_message
    assert t.engine.journal.get_txn(sale.txn_id).state == "declined"
    assert not [m for m in t.sim.received if m["t"].startswith("04")]  # declined: nothing to reverse
    [charge] = t.host_sales()
    assert charge.status == "declined" and "wrong PIN, try 1 of 3" in (charge.note or "")


def test_tries_exceeded_is_75_then_even_the_right_pin_is_refused(t: Lane) -> None:
    answers = []
    for pin in (WRONG_PIN, WRONG_PIN, WRONG_PIN, CARD_PIN):
        cardholder(t.pad_sim, keys(pin))
        answers.append(t.sale(t.read(online_pin=OnlinePin(t.pad))))
    assert [a.response_code for a in answers] == ["55", "55", "75", "75"]
    assert "PIN tries exceeded" in answers[2].operator_message
    assert not [m for m in t.sim.received if m["t"].startswith("04")]


def test_pad_timeout_ends_the_session_and_sends_nothing(t: Lane) -> None:
    entry = OnlinePin(t.pad)
    cardholder(t.pad_sim, lambda p: p.expire())
    with pytest.raises(PinEntryAborted) as caught:
        t.read(online_pin=entry)
    assert caught.value.reason == "timeout" and entry.outcome == "timeout" and entry.block is None
    assert "nothing was sent" in str(caught.value)
    assert not [m for m in t.sim.received if m["t"] in ("0200", "0100")]


def test_cardholder_cancel_ends_the_session_and_sends_nothing(t: Lane) -> None:
    cardholder(t.pad_sim, lambda p: p.cancel())
    with pytest.raises(PinEntryAborted) as caught:
        t.read(online_pin=OnlinePin(t.pad))
    assert caught.value.reason == "cancelled" and "cardholder" in str(caught.value)
    assert not [m for m in t.sim.received if m["t"] in ("0200", "0100")]


def test_bypass_falls_to_signature_with_the_tvr_bit(t: Lane) -> None:
    entry = OnlinePin(t.pad)
    cardholder(t.pad_sim, lambda p: p.bypass())
    session = t.read(online_pin=entry)
    assert entry.outcome == "bypassed" and session.pin_block is None
    assert session.cvm_required == "signature" and session.cvm_results.hex().upper() == "1E0300"
    assert session.tvr[2] & 0x08  # PIN pad present, PIN not entered (EMV Book 3 Annex C5)
    sale = t.sale(session)
    assert sale.approved and t.engine.journal.get_txn(sale.txn_id).signature == "pending"
    [request] = [m for m in t.sim.received if m["t"] == "0200"]
    assert "52" not in request and "53" not in request
    if t.dialect == "cup":
        assert request["22"] == "052"  # no PIN included


def test_no_pin_pad_announces_no_pin_and_the_card_falls_back_to_signature(t: Lane) -> None:
    session = t.read(online_pin=None, pin_pad=False)
    assert _tags(session)["9F33"] == bytes.fromhex("E02800")  # neither online nor offline enciphered PIN
    assert session.cvm_required == "signature" and session.cvm_results.hex().upper() == "1E0300"
    # 42 03 is "online PIN if the terminal supports it": skipped, not failed, so no TVR byte-3 bit
    assert session.tvr[2] == 0 and session.cvm_trace[0] == "rule 4203: condition not satisfied"
    assert not t.pad_sim.pad_status()["pending"]
    sale = t.sale(session)
    assert sale.approved and t.engine.journal.get_txn(sale.txn_id).signature == "pending"


def test_a_pin_cvm_without_a_pin_block_is_declined_by_the_host(t: Lane) -> None:
    """A terminal that announces online PIN but sends no block (the bug of issue 12): the host refuses it."""
    session = t.read(online_pin=None, pin_pad=True)
    assert session.cvm_required == "online_pin" and session.pin_block is None
    sale = t.sale(session)
    assert sale.response_code == "55" and not sale.approved
    [charge] = t.host_sales()
    assert "field 52 is absent" in (charge.note or "")


def test_a_block_under_another_key_is_a_pin_format_error(t: Lane) -> None:
    t.pad.load_working_key(_tdes(TMK, OTHER_KEY), kcv4(OTHER_KEY))
    cardholder(t.pad_sim, keys(CARD_PIN))
    sale = t.sale(t.read(online_pin=OnlinePin(t.pad)))
    assert sale.response_code == ("99" if t.dialect == "cup" else "81")
    assert "working key is not the host's" in sale.operator_message
    [charge] = t.host_sales()
    assert "not an ISO 9564 format-0 block under the host's PIN key" in (charge.note or "")


def test_the_operators_cancel_ends_the_pin_entry_and_sends_nothing(t: Lane) -> None:
    """The service's ``cancel`` sets the event the entry watches: the pad is told to cancel (by the terminal)."""
    cancel = threading.Event()
    cardholder(t.pad_sim, lambda _p: cancel.set())
    with pytest.raises(PinEntryAborted) as caught:
        t.read(online_pin=OnlinePin(t.pad, cancel=cancel))
    assert caught.value.reason == "cancelled" and "by the terminal" in str(caught.value)
    assert not [m for m in t.sim.received if m["t"] in ("0200", "0100")]


def test_a_pin_sale_without_an_answer_is_reversed_without_the_pin_block(t: Lane) -> None:
    """The saved reversal is the request less 52/53 (pos-flows.md) and 26 (openpos ``trans.c``): on the wire and
    in the journal's SAF copy; the host accepts it (a 26 or 53 without 52 is a format error, RC 30)."""
    cardholder(t.pad_sim, keys(CARD_PIN))
    session = t.read(online_pin=OnlinePin(t.pad))
    t.sim.add_fault("no_response", mti="0200")
    sale = t.sale(session)
    assert sale.state == "reversed", sale.operator_message
    [request] = [m for m in t.sim.received if m["t"] == "0200"]
    [reversal] = [m for m in t.sim.received if m["t"] == "0400"]
    assert "52" in request and "52" not in reversal and "53" not in reversal
    assert "26" in request and "26" not in reversal
    [host_sale] = t.host_sales()
    assert host_sale.status == "reversed"
    assert session.pin_block is not None
    block = session.pin_block.reveal()
    stored = [v if isinstance(v, bytes) else str(v).encode() for row in t.engine.journal.query(
        "SELECT * FROM saf_queue") for v in row]
    assert stored and not [v for v in stored if block in v or block.hex().upper().encode() in v.upper()]
