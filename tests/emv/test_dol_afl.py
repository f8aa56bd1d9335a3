"""DOL parsing and building (EMV Book 3 5.4), AFL parsing, terminal data encoding."""

from __future__ import annotations

from datetime import datetime

import pytest

from posguard.emv.afl import AflEntry, afl_records, parse_afl
from posguard.emv.dol import DolEntry, build_dol_data, fit, parse_dol
from posguard.emv.errors import CardDataError
from posguard.emv.terminal import EmvTerminal, Transaction, bcd, terminal_data


def test_parse_dol_with_multibyte_tags() -> None:
    assert parse_dol(bytes.fromhex("9F02065F2A029A039C01")) == [
        DolEntry("9F02", 6), DolEntry("5F2A", 2), DolEntry("9A", 3), DolEntry("9C", 1)]


def test_parse_dol_truncated_entry_reports_offset() -> None:
    with pytest.raises(CardDataError) as e:
        parse_dol(bytes.fromhex("9F0206 9F1A".replace(" ", "")), name="PDOL")
    assert e.value.offset == 3


@pytest.mark.parametrize(("tag", "value", "length", "expected"), [
    ("9F02", bytes.fromhex("001234"), 6, "000000001234"),  # n: leading zeros
    ("9F02", bytes.fromhex("000000001234"), 2, "1234"),  # n: truncated on the left
    ("5A", bytes.fromhex("4761"), 4, "4761FFFF"),  # cn: trailing FF
    ("9F1E", b"AB", 4, "41420000"),  # an: trailing zeros
    ("9F4E", b"ABCDEF", 2, "4142"),  # ans: truncated on the right
])
def test_fit_padding_rules(tag: str, value: bytes, length: int, expected: str) -> None:
    assert fit(tag, value, length).hex().upper() == expected


def test_build_dol_data_zero_fills_unknown_and_constructed() -> None:
    entries = [DolEntry("9F02", 6), DolEntry("DF99", 2), DolEntry("E1", 1)]
    out = build_dol_data(entries, {"9F02": bcd(1234, 6), "E1": b"\x01"})
    assert out.hex().upper() == "000000001234" + "0000" + "00"


def test_terminal_data_encodes_amount_date_currency() -> None:
    cfg = EmvTerminal(pan_token_key=b"k", country_code="0156", currency_code="0156")
    txn = Transaction(amount=1234, when=datetime(2026, 5, 1, 13, 14, 15), unpredictable_number=b"\x01\x02\x03\x04")
    d = terminal_data(cfg, txn)
    assert d["9F02"].hex() == "000000001234"
    assert d["9A"].hex() == "260501" and d["9F21"].hex() == "131415"
    assert d["5F2A"].hex() == "0156" and d["9F1A"].hex() == "0156"
    assert d["9F37"] == b"\x01\x02\x03\x04"
    assert len(d["9F1E"]) == 8


def test_terminal_data_dates_and_configuration_per_transaction() -> None:
    """9A/9F21 follow each transaction's clock face (n6, EMV Book 3 Annex A1); the configuration's own values,
    computed once per configuration, follow a changed configuration."""
    cfg = EmvTerminal(pan_token_key=b"k")
    for when in (datetime(2000, 1, 9, 0, 0, 0), datetime(2099, 12, 31, 23, 59, 59), datetime(2026, 10, 20, 9, 5, 7)):
        d = terminal_data(cfg, Transaction(amount=1, when=when))
        assert d["9A"] == bytes.fromhex(when.strftime("%y%m%d")) and d["9F21"] == bytes.fromhex(when.strftime("%H%M%S"))
    other = EmvTerminal(pan_token_key=b"k", country_code="0344", merchant_category="4111", terminal_id="TID00002")
    d = terminal_data(other, Transaction(amount=1, when=datetime(2026, 1, 1)))
    assert (d["9F1A"].hex(), d["9F15"].hex(), d["9F1C"]) == ("0344", "4111", b"TID00002")
    assert terminal_data(cfg, Transaction(amount=1, when=datetime(2026, 1, 1)))["9F1A"].hex() == "0156"
    with pytest.raises(ValueError):  # a bad configuration is refused on every call, not once
        terminal_data(EmvTerminal(pan_token_key=b"k", acquirer_id="12X"), Transaction(amount=1))
    with pytest.raises(ValueError):
        terminal_data(EmvTerminal(pan_token_key=b"k", acquirer_id="12X"), Transaction(amount=1))
    listed = EmvTerminal(pan_token_key=b"k", aids=list(cfg.aids))  # type: ignore[arg-type]  # unhashable: not cached
    assert terminal_data(listed, Transaction(amount=1, when=datetime(2026, 1, 1)))["5F2A"].hex() == "0156"


def test_unpredictable_number_is_random_by_default() -> None:
    cfg = EmvTerminal(pan_token_key=b"k")
    assert terminal_data(cfg, Transaction(amount=1))["9F37"] != terminal_data(cfg, Transaction(amount=1))["9F37"]


def test_parse_afl_entries_and_records() -> None:
    entries = parse_afl(bytes.fromhex("08010100" "10010301"))
    assert entries == [AflEntry(1, 1, 1, 0), AflEntry(2, 1, 3, 1)]
    assert afl_records(entries) == [(1, 1), (2, 1), (2, 2), (2, 3)]


def test_afl_records_never_repeat_a_record() -> None:
    assert afl_records(parse_afl(bytes.fromhex("08010200" "08020200"))) == [(1, 1), (1, 2)]


@pytest.mark.parametrize(("afl", "offset", "words"), [
    ("080101", None, "multiple of 4"),
    ("", None, "multiple of 4"),
    ("08010100" "00010100", 4, "SFI"),
    ("08000100", 0, "first record is 0"),
    ("08030100", 0, "before first"),
    ("08010103", 0, "ODA"),
    ("09010100", 0, "SFI"),
])
def test_bad_afl_is_card_data_error(afl: str, offset: int | None, words: str) -> None:
    with pytest.raises(CardDataError, match=words) as e:
        parse_afl(bytes.fromhex(afl))
    assert e.value.offset == offset
