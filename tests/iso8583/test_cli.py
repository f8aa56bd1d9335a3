"""``posguard iso8583`` as a user runs it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from posguard.cli import main
from posguard.iso8583 import Message

PAN = "4761739001010119"


def _hex(dialect: str = "iso87") -> str:
    return Message("0200", {"2": PAN, "3": "000000", "4": "000000001000", "11": "000001",
                            "41": "TERM0001", "42": "MERCHANT0000001", "49": "156"}, dialect).encode().hex()


def test_decode_text_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iso8583", "decode", "-d", "iso87", _hex()]) == 0
    out = capsys.readouterr().out
    assert "0200 Financial request — sale" in out and "476173******0119" in out and PAN not in out


def test_decode_json_like_pyiso8583_and_reveal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iso8583", "decode", "-d", "iso87", "--json", _hex()]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["t"] == "0200" and doc["2"] == "476173******0119" and "p" not in doc
    assert main(["iso8583", "decode", "-d", "iso87", "--json", "--reveal", _hex()]) == 0
    assert json.loads(capsys.readouterr().out)["2"] == PAN


def test_bad_lines_are_reported_and_the_rest_decoded(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _hex()[:-6]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{_hex()}\nnot-hex\n{broken}\n{_hex()}\n"))
    assert main(["iso8583", "decode", "-d", "iso87", "--json"]) == 2
    cap = capsys.readouterr()
    assert len(cap.out.strip().splitlines()) == 2
    errs = cap.err.strip().splitlines()
    assert errs[0].startswith("line 2:") and errs[1].startswith("line 3:")
    assert "field 49" in errs[1] and "at byte" in errs[1] and PAN not in cap.err


def test_encode_is_the_inverse(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"t": "0800", "11": "000001", "41": "TERM0001", "70": "301"}
    assert main(["iso8583", "encode", "-d", "iso87ascii", json.dumps(doc)]) == 0
    hexline = capsys.readouterr().out.strip()
    assert main(["iso8583", "decode", "-d", "iso87ascii", "--json", hexline]) == 0
    assert json.loads(capsys.readouterr().out) == doc
    assert main(["iso8583", "encode", "-d", "iso87ascii", '{"t": "0800", "11": "1"}']) == 2
    assert "field 11" in capsys.readouterr().err


def test_spec_prints_the_field_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iso8583", "spec", "-d", "cup"]) == 0
    out = capsys.readouterr().out
    assert "60" in out and "Batch number" in out and "reversal" in out
    assert main(["iso8583", "spec", "-d", "iso87bcd", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fields"]["2"]["data_enc"] == "bcd"


def test_user_dialect_file_without_editing_posguard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "acme.toml"
    f.write_text(
        'name = "acme"\nextends = "iso87"\nframing = "ascii4"\n'
        '[fields.48]\ndesc = "ACME loyalty number"\nmax_len = 10\nkind = "n"\n'
    )
    raw = Message("0200", {"3": "000000", "48": "0012345678"}, str(f)).encode()
    assert main(["iso8583", "decode", "-d", str(f), "--json", raw.hex()]) == 0
    assert json.loads(capsys.readouterr().out)["48"] == "0012345678"
    assert main(["iso8583", "spec", "-d", "nosuch"]) == 2
    assert "known dialects" in capsys.readouterr().err
