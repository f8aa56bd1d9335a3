"""The reversal after a card decline carries the card's final answer in field 55 (``posguard.engine.card_reversal``):
the armed 0400 is resealed with the second GENERATE AC's 95/9F10/9F1E/9F36 and DF31 = the script results; a sale
reversed from the journal gets the same; without the card's answer (or with one that does not parse) the request's
field 55 is cut as before. The end-to-end proof on the real host and card: tests/integration/test_emv_matrix.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.engine.card_reversal import final_reversal_icc
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine
from posguard.engine.journal import Journal
from posguard.iso8583.message import Message
from posguard.iso8583.tlv import build_tlv, parse_tlv
from tests.engine.conftest import MONDAY_0900, TERMINAL, TOKEN_KEY, VISA_PAN
from tests.engine.fakehost import FakeHost

FIRST = {"9F26": "0102030405060708", "9F27": "80", "9F36": "0011", "95": "0000000000",
         "9F10": "06010A03A0000000", "9F1E": "504F534752443031"}  # the ARQC: CVR byte 1 A0 (GAC 2 not requested)
FINAL = {"9F26": "A1A2A3A4A5A6A7A8", "9F27": "00", "9F36": "0011", "95": "0000000040",
         "9F10": "06010A0320008010", "9F1E": "504F534752443031", "9F5B": "2000000002"}  # AAC; scripts ran


def tlv(tags: dict[str, str]) -> bytes:
    return build_tlv([(tag, bytes.fromhex(value)) for tag, value in tags.items()])


def chip(amount: int, *, awaiting: bool) -> CardData:
    c = CardData.from_pan(VISA_PAN, TOKEN_KEY, expiry="2812", field55=tlv({**FIRST, "9F02": f"{amount:012d}"}),
                          cvm_results=bytes.fromhex("1E0300"))  # signature: the sale waits for it
    return replace(c, second_gac=awaiting)


def make(tmp: Path, dialect: str) -> tuple[TransactionEngine, FakeHost]:
    clock = VirtualClock(start=MONDAY_0900)
    host = FakeHost(clock)
    return TransactionEngine(Journal(tmp / "journal.db", clock=clock), host, dialect, TERMINAL, clock,
                             Detectors.default(clock)), host


def reversal_55(out: list[Message]) -> dict[str, str]:
    [rev] = [m for m in out if m.mti == "0400"]
    value = rev["55"]
    raw = value if isinstance(value, bytes) else bytes.fromhex(str(value))
    return {t.tag: t.value.hex().upper() for t in parse_tlv(raw)}


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_the_armed_reversal_is_resealed_with_the_cards_final_answer(tmp_path: Path, dialect: str) -> None:
    engine, _host = make(tmp_path, dialect)
    sale = engine.sale(chip(20_00, awaiting=True), 20_00)
    with engine.recording() as out:
        res = engine.card_completed(sale.txn_id, cryptogram_type="AAC", atc=0x11, field55=tlv(FINAL),
                                    script_results=bytes.fromhex(FINAL["9F5B"]))
    assert res.state == "reversed"
    assert reversal_55(out) == {"95": FINAL["95"], "9F10": FINAL["9F10"], "9F1E": FINAL["9F1E"],
                                "9F36": FINAL["9F36"], "DF31": FINAL["9F5B"]}


def test_a_sale_reversed_from_the_journal_gets_the_final_answer_too(tmp_path: Path) -> None:
    engine, _host = make(tmp_path, "cup")
    sale = engine.sale(chip(12_00, awaiting=False), 12_00)  # a stored card read: nothing armed after the answer
    assert engine.journal.saf_items(["armed"]) == []
    with engine.recording() as out:
        assert engine.card_declined(sale.txn_id, final_icc=tlv(FINAL)).state == "reversed"
    tags = reversal_55(out)
    assert tags["9F10"] == FINAL["9F10"] and tags["95"] == FINAL["95"] and tags["DF31"] == FINAL["9F5B"]


@pytest.mark.parametrize("final", [b"", bytes.fromhex("9F1008AABB")], ids=["no answer", "not BER-TLV"])
def test_without_a_readable_answer_the_requests_55_is_cut_as_before(tmp_path: Path, final: bytes) -> None:
    engine, _host = make(tmp_path, "cup")
    sale = engine.sale(chip(30_00, awaiting=True), 30_00)
    with engine.recording() as out:
        assert engine.card_declined(sale.txn_id, final_icc=final).state == "reversed"  # the reversal still goes
    assert reversal_55(out) == {t: FIRST[t] for t in ("95", "9F10", "9F1E", "9F36")}


def test_the_script_results_come_from_df31_9f5b_or_the_cards_report() -> None:
    tags = ("95", "9F36", "DF31")
    plain = tlv({"95": "0000000000", "9F36": "0007"})
    assert final_reversal_icc(tags, plain) == plain  # no script: no DF31
    assert final_reversal_icc(tags, plain, bytes.fromhex("1000000001")).endswith(bytes.fromhex("DF31051000000001"))
    with_df31 = plain + tlv({"DF31": "2000000003"})
    assert final_reversal_icc(tags, with_df31, bytes.fromhex("1000000001")).endswith(bytes.fromhex("2000000003"))
