"""Round-trip properties for all four dialects, composites included; the fast path agrees with the careful one."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posguard.iso8583 import TLV, Message, build_tlv, get_dialect, parse_tlv
from posguard.iso8583.codec import codec_for
from tests.iso8583.strategies import MTIS, field_sets

DIALECTS = ["iso87ascii", "iso87", "iso87bcd", "cup"]
CUP_HEADER = bytes.fromhex("6000030000603100310000")


def _header(name: str) -> bytes | None:
    return CUP_HEADER if name == "cup" else None


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(name: str, data: st.DataObject) -> None:
    dialect = get_dialect(name)
    fields = data.draw(field_sets(dialect))
    mti = data.draw(MTIS)
    msg = Message(mti, fields, name, header=_header(name))
    raw = msg.encode()
    back = Message.decode(raw, name)
    assert back.mti == mti
    assert back.fields() == fields
    assert back.encode() == raw
    # the compiled path and the reference path agree on both directions
    codec = codec_for(dialect)
    assert codec._decode_careful(raw) == codec._decode_fast(raw)
    assert codec._encode_careful(msg.header, mti, fields) == raw


tlv_items = st.lists(
    st.tuples(
        st.sampled_from(["9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82",
                         "9F1A", "9F34", "DF8101", "5A", "57", "9F6E"]),
        st.binary(min_size=0, max_size=140),
    ),
    max_size=10,
)


@settings(max_examples=150, deadline=None)
@given(items=tlv_items)
def test_tlv_round_trip_keeps_order_repeats_and_long_lengths(items: list[tuple[str, bytes]]) -> None:
    raw = build_tlv(items)
    parsed = parse_tlv(raw)
    assert [(t.tag, t.value) for t in parsed] == items
    assert build_tlv(parsed) == raw


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=60, deadline=None)
@given(items=tlv_items.filter(lambda xs: len(build_tlv(xs)) <= 255))
def test_field_55_by_path_in_every_dialect(name: str, items: list[tuple[str, bytes]]) -> None:
    raw55 = build_tlv(items)
    value: str | bytes = raw55 if get_dialect(name).fields["55"].is_binary else raw55.hex().upper()
    if name == "iso87bcd":  # jPOS ISO87BPackager carries 55 as LLLCHAR text: use hex text
        value = raw55.hex().upper()
    msg = Message("0200", {"3": "000000", "55": value}, name, header=_header(name))
    back = Message.decode(msg.encode(), name)
    if name == "iso87bcd":
        back_tlv = parse_tlv(bytes.fromhex(str(back["55"])))
    else:
        back_tlv = back.tlv("55")
    assert [(t.tag, t.value) for t in back_tlv] == items
    for tag, _val in items:
        if name != "iso87bcd":
            first = next(v for t, v in items if t == tag)
            assert back[f"55.{tag}"] == first


def test_unknown_and_constructed_tags_are_preserved_byte_exact() -> None:
    inner = build_tlv([("9F1A", b"\x01\x56"), ("DF01", b"\xAA")])
    raw = build_tlv([("BF0C", inner), ("DFFF7F", b"\x00\x01"), ("9F34", b"\x1E\x03\x00")])
    m = Message("0200", {"55": raw}, "iso87")
    back = Message.decode(m.encode(), "iso87")
    assert back["55"] == raw
    assert back["55.BF0C.DF01"] == b"\xAA"
    assert back["55.DFFF7F"] == b"\x00\x01"
    assert [t.tag for t in back.tlv()[0].children] == ["9F1A", "DF01"]


def test_long_form_lengths() -> None:
    big = bytes(200)
    raw = build_tlv([TLV("9F10", big)])
    assert raw[:4] == bytes.fromhex("9F1081C8")
    assert parse_tlv(raw)[0].value == big


def test_positional_subfields_by_path() -> None:
    m = Message("0400", {"3": "000000", "90": "0200" "000123" "1123101530" "00000012345" "00000000000"}, "iso87")
    back = Message.decode(m.encode(), "iso87")
    assert back["90.1"] == "0200"
    assert back["90.2"] == "000123"
    assert back["90.4"] == "00000012345"
    cup = Message("0200", {"60": "22000007000"}, "cup")
    cup["60.2"] = "000008"
    assert cup["60"] == "22000008000"
    assert cup["60.1"] == "22"
    with pytest.raises(KeyError):
        cup["60.4"]
    cup2 = Message("0200", {}, "cup")
    cup2["60.1"] = "23"
    cup2["60.2"] = "000001"
    assert cup2["60"] == "23000001"


def test_tertiary_bitmap_in_a_user_dialect() -> None:
    from posguard.iso8583 import FieldSpec

    base = get_dialect("iso87")
    extra = {str(n): FieldSpec(str(n), f"Private {n}", 20, kind="ans", len_type=2) for n in range(129, 193)}
    d = base.with_fields("iso87_tertiary", extra, tertiary_bitmap=True)
    msg = Message("0200", {"3": "000000", "70": "301", "130": "HELLO", "192": "LAST"}, d)
    raw = msg.encode()
    back = Message.decode(raw, d)
    assert back.fields() == {"3": "000000", "70": "301", "130": "HELLO", "192": "LAST"}
    # primary has bit 1, secondary has bit 65 (tertiary present), tertiary has bits 130 and 192
    assert raw[4] & 0x80 and raw[12] & 0x80
