"""Issue 10, "tracebacks instead of one-line errors": every malformed capture is a CaptureError naming the line
(never a traceback from inside a library), and a fuzzer over mutated captures finds nothing else escaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posguard.capture.format import CaptureError, read_capture
from posguard.capture.replay import replay
from posguard.service.till import Till

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
HEADER = json.dumps({"posguard_capture": 1, "dialect": "iso87ascii", "terminal": {"tid": "POSGRD01", "mid": "M"},
                     "started": "2026-11-23T16:48:25+00:00"})
CARD = {"t": 0.1, "k": "card", "ref": "c1", "pan": "4111111111111111", "expiry": "2512", "entry_mode": "chip",
        "field55": "9F2608A1B2C3D4E5F60718", "cvm_results": "1E0300"}

CASES = {
    "invalid utf-8": (HEADER.encode() + b"\n" + b'{"t": 0, "k": "op", "op": "flush", "x": "\xff"}\n', 0,
                      "not UTF-8"),
    "deep nesting": (HEADER.encode() + b"\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2, "nested"),
    "non-hex field55": (f"{HEADER}\n{json.dumps(dict(CARD, field55='ZZ'))}\n".encode(), 2, "'field55' is not hex"),
    "missing pan": (f"{HEADER}\n{json.dumps({k: v for k, v in CARD.items() if k != 'pan'})}\n".encode(), 2, "pan"),
    "unknown dialect": (HEADER.replace("iso87ascii", "klingon").encode() + b"\n", 1, "unknown dialect 'klingon'"),
    "NaN t": (f'{HEADER}\n{{"t": NaN, "k": "op", "op": "flush"}}\n'.encode(), 2, "finite"),
    "inf t": (f'{HEADER}\n{{"t": Infinity, "k": "op", "op": "flush"}}\n'.encode(), 2, "finite"),
    "unknown transaction": (f'{HEADER}\n{{"t": 1, "k": "op", "op": "void", "txn": "POSGRD01-00000999"}}\n'.encode(),
                            2, "does not hold"),
    "unknown card ref": (f'{HEADER}\n{{"t": 1, "k": "op", "op": "sale", "card": "c9", "amount": 100}}\n'.encode(),
                         2, "cannot be replayed"),
    "amount not a number": (f'{HEADER}\n{json.dumps(CARD)}\n'
                            f'{{"t": 1, "k": "op", "op": "sale", "card": "c1", "amount": "abc"}}\n'.encode(), 3,
                            "cannot be replayed"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_malformed_capture_is_one_line_with_its_line_number(name: str, tmp_path: Path) -> None:
    data, line, words = CASES[name]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    with pytest.raises(CaptureError) as err:
        with replay(path, desk=Till.for_replay, journal_path=tmp_path / "j.db"):
            pass
    assert err.value.line == line, str(err.value)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert "4111111111111111" not in str(err.value)  # not a simulator PAN: the sweep reads these inputs


def test_replay_leaves_no_scratch_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with replay(CAPTURES / "iso87ascii-reversal.jsonl", desk=Till.for_replay) as result:
        assert result.scratch is not None and result.scratch.exists()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "bad.jsonl").write_text(HEADER + '\n{"t": 1, "k": "op", "op": "void", "txn": "X"}\n')
    with pytest.raises(CaptureError):
        replay(tmp_path / "bad.jsonl", desk=Till.for_replay)
    assert [p.name for p in tmp_path.iterdir()] == ["bad.jsonl"]


SEED = (CAPTURES / "iso87ascii-duplicate_charge.jsonl").read_bytes()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(SEED) - 1), st.integers(0, 255)), min_size=1,
                max_size=6), st.integers(min_value=0, max_value=len(SEED)))
def test_fuzzed_captures_never_escape_as_anything_but_capture_error(tmp_path: Path, flips: list[tuple[int, int]],
                                                                    cut: int) -> None:
    data = bytearray(SEED[:cut] if cut > 200 else SEED)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    path = tmp_path / "fuzzed.jsonl"
    path.write_bytes(bytes(data))
    try:
        read = read_capture(path)
    except CaptureError:
        return
    try:
        with replay(read, desk=Till.for_replay, journal_path=tmp_path / f"j{abs(hash(bytes(data)))}.db"):
            pass
    except CaptureError as exc:
        assert "\n" not in str(exc)
