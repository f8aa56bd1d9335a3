"""Captures that list each card once, before the operator actions (written before cards were read per charge,
or by a test author by hand): a card charged twice is replayed as two charges with the chip data the recording
sent for each, so the replay finds what the live terminal found; and where the replay cannot do what the recording
shows (the recording sends one ARQC twice, which no terminal does), it says so naming the lines, never a quiet
"nothing happened"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from posguard.capture import CaptureError
from posguard.iso8583 import Message
from tests.product.conftest import CAPTURES

EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((CAPTURES / "expected.json").read_text())


def _cards_listed_once(src: Path, dst: Path) -> Path:
    """The recording as an older writer kept it: each card's first record once, up front, no card reads or
    second-GENERATE-AC records after the actions."""
    lines = src.read_text().splitlines()
    records = [json.loads(line) for line in lines[1:]]
    first: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["k"] == "card":
            r.pop("presentation", None)
            r.pop("second_gac", None)
            first.setdefault(r["ref"], {**r, "t": 0.0})
    rest = [r for r in records if r["k"] not in ("card", "card_outcome", "apdu", "atr", "frame")]
    dst.write_text("\n".join([lines[0], *(json.dumps(r) for r in [*first.values(), *rest])]) + "\n")
    return dst


@pytest.mark.parametrize("name", ["cup-duplicate_charge.jsonl", "iso87ascii-duplicate_charge.jsonl",
                                  "cup-wrong_amount.jsonl", "iso87ascii-wrong_card.jsonl"])
def test_a_card_charged_again_replays_with_the_chip_data_each_charge_sent(name: str, tmp_path: Path,
                                                                          posguard_replay: Any) -> None:
    day = posguard_replay(_cards_listed_once(CAPTURES / name, tmp_path / name))
    got = [{"incident": i.kind, "rule": i.rule, "outcome": i.outcome, "transactions": i.transactions}
           for i in day.incidents]
    assert got == EXPECTED[name]


def _same_arqc_twice(tmp_path: Path) -> Path:
    """A hand-written capture whose two sales of one card send the same field 55 (copied)."""
    pan, amount = "4761739001010127", 1250
    icc = bytes.fromhex("9F2608" + "11" * 8 + "9F3602001A" + "9F0206" + f"{amount:012d}")
    base = {"2": pan, "3": "000000", "4": f"{amount:012d}", "41": "TERM0001", "42": "MERCHANT0000001",
            "49": "156", "55": icc.hex().upper()}

    def iso(mti: str, stan: int, **extra: str) -> str:
        return Message(mti, {**base, "11": f"{stan:06d}", **extra}, dialect="iso87ascii").encode().hex().upper()

    header = {"posguard_capture": 1, "dialect": "iso87ascii",
              "terminal": {"tid": "TERM0001", "mid": "MERCHANT0000001", "timeout": 5},
              "started": "2026-11-30T10:00:00+00:00"}
    records = [{"t": 0, "k": "card", "ref": "c1", "pan": pan, "expiry": "2812", "entry_mode": "chip",
                "scheme": "visa", "field55": icc.hex()}]
    for n, t in ((1, 1.0), (2, 30.0)):
        records += [{"t": t, "k": "op", "op": "sale", "card": "c1", "amount": amount},
                    {"t": t + 0.1, "k": "iso", "dir": "out", "hex": iso("0200", n)},
                    {"t": t + 0.2, "k": "iso", "dir": "in", "hex": iso("0210", n, **{"39": "00"})}]
    path = tmp_path / "same-arqc.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [header, *records]) + "\n")
    return path


def test_a_recording_that_sends_one_arqc_twice_is_a_divergence_naming_the_lines(tmp_path: Path,
                                                                               posguard_replay: Any) -> None:
    with pytest.raises(CaptureError) as info:
        posguard_replay(_same_arqc_twice(tmp_path))
    text = str(info.value)
    assert info.value.line == 6 and "refused 'sale'" in text and "sent 0200 at line 7" in text
    assert "cryptogram" in text  # why: the recording's second sale carries the first one's ARQC
    assert "4761739001010127" not in text


def test_a_header_without_the_merchant_id_is_named_before_any_action(tmp_path: Path, posguard_replay: Any) -> None:
    path = _same_arqc_twice(tmp_path)
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"mid": "MERCHANT0000001", ', "")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CaptureError) as info:
        posguard_replay(path)
    assert info.value.line == 1 and '"mid"' in str(info.value)
