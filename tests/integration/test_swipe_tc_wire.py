"""Issue 11 section 2, on the wire: how a card came in (22/23/35/36, CUP 60.4/60.5) and what the settlement uploads
carry (2, 22, 23, 55 with the TC and 9F5B), sent by the real engine over TCP to the acquirer simulator and decoded
with pyiso8583 and the simulator's own dialect tables (the independent oracle), in both dialect families.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import iso8583
import pytest

from firmware_sim.host.dialects import get_spec
from posguard.card import CardData
from posguard.drivers.magstripe import parse_swipe, swiped_card
from posguard.engine.card_results import CardResultRefused, card_result
from posguard.iso8583.message import Message
from posguard.iso8583.tlv import build_tlv, parse_tlv
from tests.engine.conftest import TOKEN_KEY, card
from tests.integration.test_signon_settlement_with_host_sim import DECLINED_PAN, Desk, desk

DIALECTS = ["iso87ascii", "cup"]
STRIPE_PAN = "6250941006528599"  # Luhn-valid
TRACK2 = f"{STRIPE_PAN}=28121011234567890123"
TRACK3 = f"01{STRIPE_PAN}=1560000000000000000000000000000000=0=1"
TC = build_tlv([("9F26", bytes.fromhex("0102030405060708")), ("9F27", b"\x40"), ("9F36", b"\x00\x02"),
                ("95", bytes.fromhex("0000008000")), ("9F10", bytes.fromhex("0110A00003220000"))])
SCRIPTS = bytes.fromhex("2000000001")  # 9F5B: script 00000001 performed (EMV Book 4 A5)


@pytest.fixture(params=DIALECTS)
def d(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    with desk(request.param, tmp_path) as x:
        yield x


def oracle(message: Message, dialect: str) -> dict[str, Any]:
    """The request as pyiso8583 decodes it with the simulator's spec (not posguard's codec)."""
    doc, _ = iso8583.decode(message.encode(), get_spec(dialect))
    return dict(doc)


def sent(d: Desk, action: Any) -> list[dict[str, Any]]:
    with d.engine.recording() as out:
        action()
    return [oracle(m, d.dialect) for m in out]


def swipe(service: str = "101", *, track3: bool = False, fallback: bool = False, pan: str = STRIPE_PAN) -> CardData:
    tracks = f";{pan}{TRACK2[16:21]}{service}{TRACK2[24:]}?" + (f";{TRACK3}?" if track3 else "")
    return swiped_card(parse_swipe(tracks), TOKEN_KEY, fallback=fallback)


def chip(psn: str | None = "01") -> CardData:
    c = card()
    return CardData.from_pan(c.pan, TOKEN_KEY, expiry=c.expiry, field55=c.field55, cvm_results=c.cvm_results,
                             entry_mode="chip", scheme="visa", pan_sequence=psn)


# -- fields 22 / 23 / 35 / 36 -----------------------------------------------------------------------------
def test_a_swiped_sale_sends_track_2_and_3_and_the_swipe_entry_mode(d: Desk) -> None:
    [req] = sent(d, lambda: d.engine.sale(swipe(track3=True), 19_99))
    assert req["35"] == TRACK2.replace("=", "D") and len(req["35"]) <= 37
    assert req["36"] == TRACK3.replace("=", "D")
    assert req["2"] == STRIPE_PAN
    if d.dialect == "cup":
        assert req["22"] == "022"  # 02 magnetic stripe, 2 no PIN in this request
        assert req["60"][11:13] == "50"  # 60.4 contact IC reader, 60.5 0: not a fallback
    else:
        assert req["22"] == "901"  # 90: full track 2 sent unaltered in 35; 1: the terminal accepts PINs
    assert "23" not in req


def test_a_fallback_sale_carries_the_fallback_entry_mode(d: Desk) -> None:
    [req] = sent(d, lambda: d.engine.sale(swipe("201", fallback=True), 19_99))
    assert req["35"][16:24] == "D2812201"
    if d.dialect == "cup":
        assert req["22"] == "022" and req["60"][11:13] == "52"  # 60.5 = 2: the chip failed, stripe used
    else:
        assert req["22"] == "801"


def test_a_chip_sale_sends_5F34_as_field_23_and_no_track(d: Desk) -> None:
    [req] = sent(d, lambda: d.engine.sale(chip("01"), 10_00))
    assert req["23"] == "001" and "35" not in req and "36" not in req
    assert req["22"] == ("052" if d.dialect == "cup" else "051")
    [req] = sent(d, lambda: d.engine.sale(chip(None), 11_00))
    assert "23" not in req  # the card has no 5F34


def test_the_reversal_of_a_swiped_sale_strips_the_tracks_and_the_journal_never_holds_them(d: Desk) -> None:
    d.sim.add_fault("no_response", mti="0200")
    with d.engine.recording() as out:
        d.engine.sale(swipe(track3=True), 19_99)
    reqs = [oracle(m, d.dialect) for m in out]
    assert "35" in reqs[0] and [r["t"] for r in reqs[1:]] == ["0400"] * (len(reqs) - 1) and len(reqs) > 1
    assert all("35" not in r and "36" not in r for r in reqs[1:])
    d.journal.close()
    raw = d.path.read_bytes() + Path(f"{d.path}-wal").read_bytes() if Path(f"{d.path}-wal").exists() else \
        d.path.read_bytes()
    for secret in (TRACK2, TRACK2.replace("=", "D"), "1234567890123", STRIPE_PAN):
        assert secret.encode() not in raw
    d.restart()


def test_the_cup_pin_digit_follows_a_pin_block_in_the_request() -> None:
    from posguard.engine.profiles import get_profile

    cup = get_profile("cup")
    f: dict[str, str | bytes] = {"52": b"\x00" * 8}
    cup.card_entry_fields(f, chip())
    assert f["22"] == "051"  # PIN included
    f = {}
    cup.card_entry_fields(f, chip())
    assert f["22"] == "052"


# -- TC upload and batch-upload details ------------------------------------------------------------------
def test_the_tc_upload_carries_pan_entry_mode_sequence_number_tc_and_script_results(d: Desk) -> None:
    sale = d.engine.sale(chip("01"), 100_00)
    d.engine.record_card_result(sale.txn_id, TC, SCRIPTS)
    with d.engine.recording() as out:
        result = d.engine.settle()
    uploads = [oracle(m, d.dialect) for m in out if m.mti == "0320"]
    if d.dialect != "cup":
        assert result.balanced and uploads == []  # international: no TC upload when balanced (MAB)
        return
    [tc, end] = uploads
    assert tc["60"][8:11] == "203" and end["60"][8:11] == "207"
    assert tc["2"] == chip().pan.reveal() and tc["22"] == "052" and tc["23"] == "001"
    icc = {t.tag: t.value for t in parse_tlv(tc["55"] if isinstance(tc["55"], bytes) else bytes.fromhex(tc["55"]))}
    assert icc["9F27"] == b"\x40" and icc["9F26"] == bytes.fromhex("0102030405060708")
    assert icc["9F5B"] == SCRIPTS


def test_batch_upload_details_carry_the_card_fields(d: Desk) -> None:
    kept = d.engine.sale(chip("02"), 40_00)
    d.engine.record_card_result(kept.txn_id, TC)
    d.sim.add_fault("wrong_rc", rc="00")  # the host books it declined, the terminal hears 00: unbalanced
    d.engine.sale(swipe(pan=DECLINED_PAN), 25_00)
    with d.engine.recording() as out:
        result = d.engine.settle()
    assert not result.balanced
    details = [oracle(m, d.dialect) for m in out if m.mti == "0320"][:2]
    by_pan = {r["2"]: r for r in details}
    chip_up, swipe_up = by_pan[chip().pan.reveal()], by_pan[DECLINED_PAN]
    assert chip_up["23"] == "002" and "55" in chip_up
    assert "23" not in swipe_up and "55" not in swipe_up and "35" not in swipe_up  # tracks never leave again
    assert swipe_up["22"] == ("022" if d.dialect == "cup" else "901")
    if d.dialect == "cup":
        assert {chip_up["60"][8:11], swipe_up["60"][8:11]} == {"205", "201"}


def test_record_card_result_keeps_the_final_field_55_sealed(d: Desk) -> None:
    sale = d.engine.sale(chip(), 10_00)
    d.engine.record_card_result(sale.txn_id, TC, SCRIPTS)
    kept = card_result(d.journal, d.engine.sealer, sale.txn_id)
    assert kept is not None and kept.cryptogram == "TC" and kept.field55 == TC and kept.script_results == SCRIPTS
    [row] = d.journal.query("SELECT detail FROM events WHERE kind = 'card_result'")
    assert TC.hex() not in row["detail"].lower() and "0102030405060708" not in row["detail"]
    assert '"cryptogram": "TC"' in row["detail"] and '"scripts": 1' in row["detail"]


@pytest.mark.parametrize(("field55", "scripts", "why"), [
    (build_tlv([("9F27", b"\x40")]), None, "55.9F26 missing"),
    (build_tlv([("9F26", bytes(8)), ("9F27", b"\x80")]), None, "9F27 says ARQC"),
    (bytes.fromhex("9F2608AABB"), None, "not BER-TLV"),
    (TC, b"\x20\x00", "9F5B"),
])
def test_record_card_result_refuses_what_an_upload_cannot_use(d: Desk, field55: bytes, scripts: bytes | None,
                                                              why: str) -> None:
    sale = d.engine.sale(chip(), 10_00)
    with pytest.raises(CardResultRefused, match=why):
        d.engine.record_card_result(sale.txn_id, field55, scripts)
    assert card_result(d.journal, d.engine.sealer, sale.txn_id) is None


def test_a_swiped_sale_has_no_card_result(d: Desk) -> None:
    sale = d.engine.sale(swipe(), 10_00)
    with pytest.raises(CardResultRefused, match="not read by its chip"):
        d.engine.record_card_result(sale.txn_id, TC)


# -- captures: the tracks are sanitised as the capture rules say ------------------------------------------
def test_a_capture_of_a_swiped_sale_keeps_tracks_sanitised(d: Desk, tmp_path: Path) -> None:
    from posguard.capture.format import CaptureWriter, read_capture

    path = tmp_path / "day.jsonl"
    writer = CaptureWriter(path, dialect=d.dialect, tid="TERM0001", mid="MERCHANT0000001", clock=d.clock)
    d.engine.add_exchange_listener(writer.on_exchange)
    try:
        d.engine.sale(swipe(track3=True), 19_99)
    finally:
        d.engine.remove_exchange_listener(writer.on_exchange)
        writer.close()
    raw = path.read_text()
    for secret in (STRIPE_PAN, STRIPE_PAN.encode().hex(), "1234567890123", "1560000000000000000000000000000000"):
        assert secret not in raw and secret.upper() not in raw
    [out] = [r for r in read_capture(path).of_kind("iso") if r["dir"] == "out"]
    assert out["removed"] == ["35.discretionary", "36.discretionary"]
    msg = Message.decode(bytes.fromhex(out["hex"]), d.dialect)
    test_pan = str(msg["2"])
    assert test_pan != STRIPE_PAN and test_pan[:6] == STRIPE_PAN[:6]
    assert str(msg["35"]) == f"{test_pan}D2812101" + "0" * 13
    assert str(msg["36"]) == f"01{test_pan}D" + "0" * (len(TRACK3) - 19)


def test_an_advice_keeps_no_track_data_for_its_repeats(d: Desk) -> None:
    sale = d.engine.sale(swipe(), 50_00)
    d.engine.sign(sale.txn_id)
    refund_card = swipe()  # the customer's card swiped again for the refund
    with d.engine.recording() as out:
        d.engine.refund(sale.txn_id, 10_00, card=refund_card)
    [req] = [oracle(m, d.dialect) for m in out]
    assert "35" in req  # the refund itself carried the swipe
    for item in d.journal.saf_items():
        assert "35" not in d.engine.saf.fields_of(item) and "36" not in d.engine.saf.fields_of(item)
