"""The user-level fast paths (constructor, from_dict, to_dict, msg[k], key-order encoder cache) agree with
the careful reference paths they skip, value for value and in order, and defer to them for every error."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posguard.iso8583 import EncodeError, Message, decode, get_dialect
from posguard.iso8583.codec import codec_for
from tests.iso8583.strategies import MTIS, field_sets, value_for

DIALECTS = ["iso87ascii", "iso87", "iso87bcd", "cup"]
CUP_HEADER = bytes.fromhex("6000030000603100310000")


def _reference_fields(dialect: str, fields: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    """What the careful constructor stores: a read-only mapping is not a dict, so it takes the loop."""
    m = Message("0200", MappingProxyType(dict(fields)), dialect)
    return list(m._fields.items())


def _reference_to_dict(m: Message, reveal: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if m.dialect.header_len and m.header is not None:
        out.append(("h", m.header.hex().upper() if isinstance(m.header, bytes) else m.header))
    out.append(("t", m.mti))
    for k in sorted(m._fields, key=int):
        v = m._fields[k]
        if reveal:
            out.append((k, v.hex().upper() if isinstance(v, bytes) else v))
        else:
            out.append((k, m._masked_value(k)))
    return out


def _as_doc(dialect: str, fields: Mapping[str, str | bytes], mti: str) -> dict[str, str]:
    doc = {"t": mti}
    for k, v in fields.items():
        doc[k] = v.hex() if isinstance(v, bytes) else v  # lower-case hex text is accepted too
    return doc


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_constructor_from_dict_and_to_dict_agree_with_the_reference(name: str, data: st.DataObject) -> None:
    dialect = get_dialect(name)
    fields = data.draw(field_sets(dialect))
    order = data.draw(st.permutations(list(fields)))
    shuffled = {k: fields[k] for k in order}
    mti = data.draw(MTIS)
    header = CUP_HEADER if name == "cup" else None
    # binary fields may be given as hex text to the constructor
    as_text = {k: (v.hex().upper() if isinstance(v, bytes) and data.draw(st.booleans()) else v)
               for k, v in shuffled.items()}
    m = Message(mti, as_text, name, header=header)
    assert list(m._fields.items()) == _reference_fields(name, as_text)
    doc = _as_doc(name, shuffled, mti)
    if header is not None:
        doc["h"] = header.hex()
    f = Message.from_dict(doc, name)
    g = Message.from_dict(MappingProxyType(doc), name)  # not a dict: the careful loop
    assert list(f._fields.items()) == list(g._fields.items())
    assert (f.mti, f.header, f.dialect) == (g.mti, g.header, g.dialect)
    raw = m.encode()
    assert f.encode() == raw == codec_for(dialect)._encode_careful(m.header, mti, m._fields)
    for msg in (m, f, decode(raw, name)):
        for reveal in (False, True):
            assert list(msg.to_dict(reveal=reveal).items()) == _reference_to_dict(msg, reveal)
        assert list(msg) == sorted(msg._fields, key=int) == msg.keys()
        for k in msg:
            assert msg[k] is msg._fields[k]
            assert msg[int(k)] is msg._fields[k]


def test_to_dict_with_bytes_in_a_text_field_and_unsorted_keys() -> None:
    m = Message("0200", {"41": "TERM0001", "3": "000000", "2": "4761739001010119"}, "iso87")
    m["11"] = b"000001"  # a text field holding bytes: shown as hex, as before
    assert list(m.to_dict().items()) == _reference_to_dict(m, False)
    assert list(m.to_dict(reveal=True).items()) == _reference_to_dict(m, True)
    assert m.to_dict()["2"] == "476173******0119"


def test_errors_through_the_fast_paths_are_the_careful_ones() -> None:
    with pytest.raises(EncodeError) as ei:
        Message("0200", {"3": "000000", "300": "x"}, "iso87")
    assert ei.value.path == "300"
    with pytest.raises(EncodeError) as ei:
        Message("0200", {"3": "000000", "52": "not hex", "64": "zz"}, "iso87")
    assert ei.value.path == "52" and "hex" in str(ei.value)
    with pytest.raises(EncodeError) as ei:
        Message.from_dict({"t": "0200", "3": "000000", "52": "xyz"}, "iso87")
    assert ei.value.path == "52" and ei.value.got == "3 characters"
    with pytest.raises(EncodeError) as ei:
        Message.from_dict({"t": "0200", "3": 0}, "iso87")
    assert ei.value.path == "3" and ei.value.got == "int"
    # the encoder cache keyed by key order never hides a bad value or MTI
    good = {"3": "000000", "11": "000001"}
    assert Message("0200", good, "iso87").encode()
    with pytest.raises(EncodeError) as ei:
        Message("0200", {"3": "000000", "11": "1"}, "iso87").encode()
    assert ei.value.path == "11" and "leading zeros" in str(ei.value)
    with pytest.raises(EncodeError) as ei:
        Message("02X0", good, "iso87").encode()
    assert ei.value.path == "t"
    # a header that only looks like a cached one (memoryview equals bytes) is still checked
    cup = {"3": "000000"}
    assert Message("0200", cup, "cup", header=CUP_HEADER).encode()
    with pytest.raises(EncodeError) as ei:
        Message("0200", cup, "cup", header=memoryview(CUP_HEADER)).encode()  # type: ignore[arg-type]
    assert ei.value.path == "h"


def test_same_fields_in_another_order_encode_alike() -> None:
    a = Message("0200", {"2": "4761739001010119", "3": "000000", "70": "301"}, "iso87ascii")
    b = Message("0200", {"70": "301", "3": "000000", "2": "4761739001010119"}, "iso87ascii")
    assert a.encode() == b.encode()
    assert decode(a.encode(), "iso87ascii").fields() == a.fields()


def test_a_decoded_message_changed_afterwards_displays_its_changes() -> None:
    raw = Message("0400", {"2": "4761739001010119", "3": "000000", "11": "000001",
                           "90": "0200000123" + "0" * 32}, "iso87").encode()
    m = decode(raw, "iso87")
    before = m.to_dict()
    assert list(m) == ["2", "3", "11", "90"]
    m["11"] = b"000002"  # bytes in a text field
    m["90.2"] = "000124"
    del m["3"]
    m["4"] = "000000000100"
    assert list(m) == ["2", "4", "11", "90"]
    for reveal in (False, True):
        assert list(m.to_dict(reveal=reveal).items()) == _reference_to_dict(m, reveal)
    assert m.to_dict() != before and m.to_dict()["90"].startswith("0200000124")
    c = decode(raw, "iso87").copy()
    c["41"] = "TERM0001"
    assert list(c) == ["2", "3", "11", "41", "90"] and c.to_dict()["41"] == "TERM0001"


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_compiled_scanner_never_accepts_what_the_reference_refuses(name: str, data: st.DataObject) -> None:
    """Mutated messages: whenever the fast decoder answers, the careful decoder gives the same answer."""
    dialect = get_dialect(name)
    fields = data.draw(field_sets(dialect))
    header = CUP_HEADER if name == "cup" else None
    raw = bytearray(Message(data.draw(MTIS), fields, name, header=header).encode())
    for _ in range(data.draw(st.integers(0, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete", "set"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[i] = data.draw(st.sampled_from([0x80, 0xFF, 0x30, 0x39, 0x3A, 0x00]))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and raw:
            del raw[i]
    codec = codec_for(dialect)
    try:
        fast = codec._decode_fast(bytes(raw))
    except Exception:
        return  # the careful path decides (and explains)
    assert codec._decode_careful(bytes(raw)) == fast


@pytest.mark.parametrize("name", DIALECTS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_compiled_joiner_never_accepts_what_the_reference_refuses(name: str, data: st.DataObject) -> None:
    """Values of any type, length and alphabet: whenever the fast encoder answers, the careful one agrees."""
    dialect = get_dialect(name)
    fields: dict[str, Any] = dict(data.draw(field_sets(dialect)))
    for k in data.draw(st.lists(st.sampled_from(sorted(dialect.fields, key=int)), max_size=4)):
        how = data.draw(st.sampled_from(["one character", "other type", "any"]))
        value: Any = data.draw(value_for(dialect.fields[k]))
        if how == "one character" and value:
            i = data.draw(st.integers(0, len(value) - 1))
            if isinstance(value, str):
                c = data.draw(st.sampled_from("AzD=^ ~\x00\x7f\u00b2\u0663\u00e9"))
                value = value[:i] + c + value[i + 1:]
            else:
                value = value[:i] + bytes([data.draw(st.integers(0, 255))]) + value[i + 1:]
        elif how == "other type":
            value = value.encode("utf-8") if isinstance(value, str) else value.hex()
        elif how == "any":
            value = data.draw(st.one_of(st.text(max_size=30), st.binary(max_size=30), st.integers()))
        fields[k] = value
    header = CUP_HEADER if name == "cup" else None
    codec = codec_for(dialect)
    try:
        fast = codec._encode_fast(header, "0200", fields)
    except Exception:
        return  # the careful path decides (and explains)
    assert codec._encode_careful(header, "0200", fields) == fast
