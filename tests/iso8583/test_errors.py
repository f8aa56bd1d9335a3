"""Errors name the field, the offset, expected vs got, and hint at the likely spec mistake."""

from __future__ import annotations

import pytest

from posguard.iso8583 import DecodeError, EncodeError, Message, decode

PAN = "4761739001010119"


def test_hex_bitmap_read_as_binary_hints_at_iso87ascii() -> None:
    raw = Message("0200", {"3": "000000", "11": "000001"}, "iso87ascii").encode()
    with pytest.raises(DecodeError) as ei:
        decode(raw, "iso87")
    assert "iso87ascii" in str(ei.value)


def test_binary_bitmap_read_as_hex_hints_at_iso87() -> None:
    raw = Message("0200", {"3": "000000", "11": "000001"}, "iso87").encode()
    with pytest.raises(DecodeError) as ei:
        decode(raw, "iso87ascii")
    e = ei.value
    assert e.path == "p" and e.offset == 4 and "iso87" in str(e)


def test_bcd_message_read_as_ascii_names_the_mti() -> None:
    raw = Message("0200", {"3": "000000"}, "iso87bcd").encode()
    with pytest.raises(DecodeError) as ei:
        decode(raw, "iso87ascii")
    assert ei.value.path == "t" and "BCD" in str(ei.value)


def test_ll_prefix_too_long_names_field_offset_and_limit() -> None:
    raw = bytearray(Message("0200", {"2": PAN, "3": "000000"}, "iso87").encode())
    raw[12:14] = b"99"  # PAN length prefix
    with pytest.raises(DecodeError) as ei:
        decode(bytes(raw), "iso87")
    e = ei.value
    assert (e.path, e.offset) == ("2", 12)
    assert "at most 19" in str(e) and "99" in str(e)
    assert PAN not in str(e)


def test_truncated_track2_masks_card_bytes_in_the_window() -> None:
    raw = Message("0200", {"3": "000000", "35": PAN + "=2812201"}, "iso87").encode()
    with pytest.raises(DecodeError) as ei:
        decode(raw[:-4], "iso87")
    e = ei.value
    assert e.path == "35"
    text = str(e)
    assert "**" in text and PAN not in text
    assert "34 37 36 31" not in text  # the PAN's ASCII bytes never show in the hex window


def test_bcd_length_counting_bytes_vs_digits_hint() -> None:
    raw = bytearray(Message("0200", {"2": PAN}, "cup").encode())
    raw[11 + 2 + 8] = 0x32  # 32 "digits" where 16 were given
    with pytest.raises(DecodeError) as ei:
        decode(bytes(raw), "cup")
    assert ei.value.path == "2" and ei.value.hint


def test_trailing_bytes_are_not_ignored() -> None:
    raw = Message("0200", {"3": "000000"}, "iso87").encode() + b"XYZ"
    with pytest.raises(DecodeError) as ei:
        decode(raw, "iso87")
    assert "3 unexpected bytes" in str(ei.value)


def test_encode_errors_name_the_field() -> None:
    with pytest.raises(EncodeError) as ei:
        Message("0200", {"2": "1" * 25}, "iso87").encode()
    assert ei.value.path == "2" and "at most 19" in str(ei.value)
    with pytest.raises(EncodeError) as ei:
        Message("0200", {"11": "123"}, "iso87").encode()
    assert ei.value.path == "11" and "leading zeros" in str(ei.value)
    with pytest.raises(EncodeError) as ei:
        Message("02X0", {}, "iso87").encode()
    assert ei.value.path == "t"


def test_non_bytes_input_is_a_typed_error() -> None:
    with pytest.raises(DecodeError):
        decode("0200", "iso87")  # type: ignore[arg-type]
