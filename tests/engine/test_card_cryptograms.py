"""The engine and the card's cryptogram: single use (9F26, checked against the journal; the ATC is the issuer's), 9F02 =
field 4 before the wire, the reversal kept armed until the card's second GENERATE AC, card_completed /
card_declined, and kill -9 between the host's approval and the card's answer (recovery reverses)."""

from __future__ import annotations

import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.errors import CardAmountMismatch, CardDataRefused, CryptogramReused, EngineError
from posguard.engine.journal import Journal
from posguard.iso8583.tlv import build_tlv
from tests.engine.conftest import MONDAY_0900, TERMINAL, TOKEN_KEY, VISA_PAN, card
from tests.engine.fakehost import FakeHost


def chip(amount: int | None, ac: str = "0102030405060708", atc: int = 7, *, awaiting: bool = False) -> CardData:
    tags = [("9F26", bytes.fromhex(ac)), ("9F27", b"\x80"), ("9F36", atc.to_bytes(2, "big"))]
    if amount is not None:
        tags.append(("9F02", bytes.fromhex(f"{amount:012d}")))
    c = CardData.from_pan(VISA_PAN, TOKEN_KEY, expiry="2812", field55=build_tlv(tags), cvm_results=b"\x1f\x00\x02")
    return replace(c, second_gac=awaiting)


def make(tmp: Path, clock: VirtualClock | None = None) -> tuple[TransactionEngine, FakeHost]:
    clock = clock or VirtualClock(start=MONDAY_0900)
    host = FakeHost(clock, ledger_path=tmp / "host.json")
    return TransactionEngine(Journal(tmp / "journal.db", clock=clock), host, "cup", TERMINAL, clock,
                             Detectors.default(clock)), host


def test_the_amount_in_the_cryptogram_must_be_the_amount_sent(tmp_path: Path) -> None:
    engine, host = make(tmp_path)
    with pytest.raises(CardAmountMismatch) as err:
        engine.sale(chip(4_00), 5_00)
    assert isinstance(err.value, CardDataRefused) and isinstance(err.value, EngineError)
    assert "9F02 = 400" in str(err.value) and "field 4 would be 500" in str(err.value)
    assert host.wire == [] and engine.journal.find_txns() == []
    assert engine.sale(chip(5_00), 5_00).approved


def test_a_cryptogram_is_sent_once_even_after_a_restart(tmp_path: Path) -> None:
    engine, host = make(tmp_path)
    first = engine.sale(chip(10_00), 10_00)
    with pytest.raises(CryptogramReused) as err:
        engine.sale(chip(10_00), 10_00)
    assert err.value.used_by == first.txn_id and f"already sent in {first.txn_id}" in str(err.value)
    # another 9F26 with the same card's ATC (a card replaying its ATC): not the terminal's check — EMV terminals
    # keep no ATC history; it goes to the issuer, which declines it (tests/integration/test_emv_matrix.py)
    assert engine.sale(chip(10_00, ac="1111111111111111"), 10_00).approved
    assert len(host.wire) == 2
    engine.journal.close()
    engine, host = make(tmp_path)
    with pytest.raises(CryptogramReused, match=first.txn_id):
        engine.sale(chip(10_00), 10_00)
    assert engine.sale(chip(10_00, ac="2222222222222222", atc=8), 10_00).approved
    journal_text = (tmp_path / "journal.db").read_bytes()
    assert bytes.fromhex("0102030405060708") not in journal_text  # digests only, never the cryptogram


def test_cards_without_a_cryptogram_are_not_checked(tmp_path: Path) -> None:
    engine, _host = make(tmp_path)
    plain = CardData.from_pan(VISA_PAN, TOKEN_KEY, expiry="2812")
    assert engine.sale(plain, 1_00).approved and engine.sale(plain, 1_00).approved


def test_the_reversal_stays_armed_until_the_card_answers(tmp_path: Path) -> None:
    engine, host = make(tmp_path)
    sale = engine.sale(chip(20_00, awaiting=True), 20_00)
    assert sale.approved and engine.awaiting_card(sale.txn_id)
    assert [i.state for i in engine.journal.saf_items(txn_id=sale.txn_id)] == ["armed"]
    tc = build_tlv([("9F26", bytes.fromhex("A0A1A2A3A4A5A6A7")), ("9F27", b"\x40"), ("9F5B", bytes(5))])
    engine.card_completed(sale.txn_id, cryptogram_type="TC", atc=7, field55=tc, script_results=bytes(5))
    assert not engine.awaiting_card(sale.txn_id)
    assert [i.state for i in engine.journal.saf_items(txn_id=sale.txn_id)] == ["disarmed"]
    assert engine.final_field55(sale.txn_id) == tc
    assert tc not in (tmp_path / "journal.db").read_bytes()  # sealed
    assert engine.journal.get_txn(sale.txn_id).state == "approved" and len(host.wire) == 1


def test_a_card_decline_after_approval_reverses_with_the_armed_reversal(tmp_path: Path) -> None:
    engine, host = make(tmp_path)
    sale = engine.sale(chip(30_00, awaiting=True), 30_00)
    res = engine.card_completed(sale.txn_id, cryptogram_type="AAC", atc=7)
    assert res.state == "reversed"
    assert [w.mti for w in host.wire] == ["0200", "0400"]
    (inc,) = engine.journal.incidents("card_declined_after_approval")
    assert inc["txn_id"] == sale.txn_id
    # a sale sent without an armed reversal (a stored card): reversed from the journal
    other = engine.sale(card(signature=True), 12_00)
    assert other.state == "signature_pending"
    assert engine.card_declined(other.txn_id).state == "reversed"
    assert [w.mti for w in host.wire] == ["0200", "0400", "0200", "0400"]


def test_kill_9_between_the_approval_and_the_cards_answer_is_reversed_at_recovery(tmp_path: Path) -> None:
    engine, _host = make(tmp_path)
    engine.journal.close()
    pid = os.fork()
    if pid == 0:  # the terminal: the host approves, the approval is journaled, then the process dies
        code = 3
        try:
            child, _ = make(tmp_path)

            def kill_at(point: str) -> None:
                if point == "journal.after_commit:response":
                    os.kill(os.getpid(), signal.SIGKILL)

            child.kill_points = kill_at
            child.sale(chip(40_00, awaiting=True), 40_00)
            code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    engine, host = make(tmp_path, VirtualClock(start=MONDAY_0900 + 60))
    (txn,) = engine.journal.find_txns()
    assert txn.state == "approved" and engine.awaiting_card(txn.id)
    report = engine.recover()
    assert report.reversals_released == [txn.id]
    assert engine.journal.get_txn(txn.id).state == "reversed"
    assert host.net_charged() == 0 and host.charges_standing() == []
