"""The decoder under hostile input: only typed errors escape, and no error text carries a PAN."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posguard.iso8583 import DecodeError, Message, TLVError, decode

PANS = ["4761739001010119", "6250947000000014", "5413330089010434"]
DIALECTS = ["iso87ascii", "iso87", "iso87bcd", "cup"]


def _sale(dialect: str, pan: str) -> bytes:
    track2 = pan + ("D" if dialect in ("cup", "iso87bcd") else "=") + "28122011000000000"
    fields: dict[str, str | bytes] = {
        "2": pan, "3": "000000", "4": "000000001000", "11": "000321", "35": track2,
        "41": "TERM0001", "42": "MERCHANT0000001", "49": "156",
    }
    icc = bytes.fromhex("5A08" + pan + "9F34031E0300")
    if dialect in ("iso87", "cup"):
        fields["55"] = icc
    elif dialect == "iso87ascii":
        fields["55"] = icc.hex().upper()
    hdr = bytes.fromhex("6000030000603100310000") if dialect == "cup" else None
    return Message("0200", fields, dialect, header=hdr).encode()


def _check_no_pan(text: str) -> None:
    for pan in PANS:
        assert pan not in text
        # no middle digits joined to the BIN or to the last four (the 6+4 rule); a header that happens to
        # hold the middle digits elsewhere in the text is not a leak
        assert pan[:12] not in text and pan[6:] not in text


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300))
def test_random_bytes_raise_only_typed_errors(dialect: str, raw: bytes) -> None:
    try:
        m = decode(raw, dialect)
    except DecodeError as e:
        assert e.offset is None or 0 <= e.offset <= len(raw)
        return
    m.describe()
    m.validate()


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_sales_raise_only_typed_errors_without_pans(dialect: str, data: st.DataObject) -> None:
    pan = data.draw(st.sampled_from(PANS))
    raw = bytearray(_sale(dialect, pan))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and raw:
            del raw[i]
    try:
        m = decode(bytes(raw), dialect)
    except DecodeError as e:
        _check_no_pan(str(e))
        _check_no_pan(repr(e))
        return
    _check_no_pan(repr(m))
    _check_no_pan(m.describe())
    _check_no_pan(m.to_json())
    for v in m.validate():
        _check_no_pan(str(v))
    try:
        m.tlv("55") if "55" in m else None
    except TLVError as e:
        _check_no_pan(str(e))


def test_malformed_tlv_does_not_stop_the_message_decoding() -> None:
    """A terminal must still journal and reverse a message whose field 55 is corrupt."""
    bad55 = bytes.fromhex("9F3403" "1E03") + bytes.fromhex("9F2608AABB")  # 9F34 short, 9F26 runs past the end
    raw = Message("0210", {"3": "000000", "11": "000001", "39": "00", "55": bad55}, "iso87").encode()
    m = decode(raw, "iso87")  # decodes
    assert m.response_code == "00"
    problems = m.validate()
    assert any(v.path.startswith("55") and v.code == "composite" for v in problems)
    with pytest.raises(TLVError) as ei:
        m["55.9F26"]
    assert ei.value.path is not None and ei.value.path.startswith("55.")
    assert ei.value.offset is not None
