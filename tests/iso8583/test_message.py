"""The Message vocabulary, per-MTI rules, response matching and masking."""

from __future__ import annotations

import json
import logging

import pytest

from posguard.iso8583 import EncodeError, Message, decode

PAN = "4761739001010119"


def _sale(dialect: str = "iso87") -> Message:
    return Message("0200", {
        "2": PAN, "3": "000000", "4": "000000012345", "11": "000777", "41": "TERM0001",
        "42": "MERCHANT0000001", "49": "156", "35": PAN + "=28122011000000000",
    }, dialect)


def test_vocabulary() -> None:
    m = _sale()
    assert (m.response_mti, m.repeat_mti, m.is_request, m.is_response) == ("0210", "0201", True, False)
    assert (m.amount, m.currency, m.stan, m.tid, m.mid) == (12345, "156", 777, "TERM0001", "MERCHANT0000001")
    assert m.kind == "sale"
    rev = Message("0400", {}, "iso87")
    assert rev.is_reversal and rev.repeat_mti == "0401" and rev.response_mti == "0410"
    assert Message("0421", {}, "iso87").is_repeat and Message("0420", {}, "iso87").is_advice
    r = Message("0210", {"39": "00", "37": "612345678901", "38": "A1B2C3"}, "iso87")
    assert r.is_response and r.approved and r.rrn == "612345678901" and r.auth_code == "A1B2C3"
    with pytest.raises(ValueError):
        _ = r.response_mti
    m.amount = 500
    assert m["4"] == "000000000500"


def test_card_data_is_masked_in_repr_str_describe_json_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    m = _sale()
    m["52"] = bytes.fromhex("0123456789ABCDEF")
    m["55"] = bytes.fromhex("5A08" + PAN + "9F34031E0300")
    texts = [repr(m), str(m), m.describe(), m.to_json(), f"{m}", json.dumps(m.to_dict())]
    with caplog.at_level(logging.INFO):
        logging.getLogger("posguard.test").info("sent %s", m)
    texts.append(caplog.text)
    for t in texts:
        assert PAN not in t
        assert "0123456789ABCDEF" not in t.upper()
    assert "476173******0119" in m.describe()
    assert "1E0300" in m.describe()  # CVM results are safe to show
    revealed = m.describe(reveal=True)
    assert PAN in revealed  # only with the explicit opt-in
    assert m.to_dict(reveal=True)["2"] == PAN
    assert m.pan is not None and str(m.pan) == "476173******0119" and m.pan.reveal() == PAN


def test_rules_report_every_violation() -> None:
    void = Message("0200", {"3": "020000", "4": "000000012345", "11": "000778"}, "iso87")
    problems = {(v.path, v.code) for v in void.validate()}
    assert ("37", "required") in problems
    assert ("41", "required") in problems and ("42", "required") in problems
    rev = Message("0400", {"3": "000000", "4": "000000012345", "11": "000779", "41": "TERM0001",
                           "42": "MERCHANT0000001", "52": bytes(8)}, "iso87")
    problems = {(v.path, v.code) for v in rev.validate()}
    assert ("90", "required") in problems
    assert ("52", "forbidden") in problems
    cup_void = Message("0200", {"3": "200000", "60": "23000001"}, "cup")
    assert cup_void.kind == "void"
    assert {"37", "61"} <= {v.path for v in cup_void.validate() if v.code == "required"}


def test_response_must_answer_its_request() -> None:
    req = _sale()
    good = Message("0210", {"3": "000000", "4": "000000012345", "11": "000777", "41": "TERM0001",
                            "42": "MERCHANT0000001", "39": "00"}, "iso87")
    assert good.validate(request=req) == []
    bad = Message("0410", {"3": "000000", "4": "000000099999", "11": "000778", "41": "TERM0001"}, "iso87")
    codes = {(v.path, v.code) for v in bad.validate(request=req)}
    assert ("t", "response_mti") in codes
    assert ("4", "echo_mismatch") in codes and ("11", "echo_mismatch") in codes
    assert ("42", "echo_missing") in codes and ("39", "required") in codes


def test_reversal_links_to_its_original() -> None:
    orig = _sale()
    rev = Message("0400", {"3": "000000", "4": "000000012345", "11": "000780", "41": "TERM0001",
                           "42": "MERCHANT0000001", "90": "0200000777" + "1123101530" + "0" * 22}, "iso87")
    assert rev.validate(original=orig) == []
    rev["90.2"] = "000001"
    assert {v.path for v in rev.validate(original=orig)} == {"90.2"}
    cup_orig = Message("0200", {"11": "000123", "4": "000000001000"}, "cup")
    cup_rev = Message("0400", {"11": "000124", "4": "000000001000"}, "cup")
    assert [v.path for v in cup_rev.validate(original=cup_orig) if v.code == "link"] == ["11"]


def test_field_format_problems_are_reported_with_their_field() -> None:
    m = Message("0200", {"3": "00000", "4": "12AB", "41": "TERM0001"}, "iso87")
    paths = {v.path for v in m.validate() if v.code == "format"}
    assert paths == {"3", "4"}
    with pytest.raises(EncodeError) as ei:
        m.encode()
    assert ei.value.path in ("3", "4")


def test_unknown_field_and_bad_types_are_refused() -> None:
    with pytest.raises(EncodeError):
        Message("0200", {"300": "x"}, "iso87")
    m = Message("0200", {}, "iso87")
    with pytest.raises(EncodeError):
        m["52"] = "not hex"
    m["52"] = "0011223344556677"  # hex text is accepted for binary fields
    assert m["52"] == bytes.fromhex("0011223344556677")


def test_decode_of_a_response_then_describe() -> None:
    r = Message("0810", {"11": "000001", "39": "00", "41": "TERM0001", "70": "301"}, "iso87ascii")
    back = decode(r.encode(), "iso87ascii")
    text = back.describe()
    assert text.startswith("0810 Network management response")
    assert "Network Management Information Code" in text
