"""The keys of each record kind (docs/capture-format.md, "The keys of each record kind"; ``RECORD_KEYS`` in
posguard/capture/format.py): a key that looks like a mistake — a near-spelling of the kind's own key, or a key of
another kind such as ``txn`` on an ``iso`` record — is refused with one line naming the line, the kind and the
key; any other key is the author's own (a comment), read past and listed, never dropped without a word. The doc's key table is the declared one; every capture of the suite still reads."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from posguard.capture import CaptureError, read_capture
from posguard.capture.format import KINDS, OP_ARGUMENTS, RECORD_KEYS
from posguard.capture.ops import OPERATOR_ACTIONS
from tests.product.conftest import ROOT

DOC = ROOT / "docs" / "capture-format.md"
HEADER = {"posguard_capture": 1, "dialect": "iso87ascii", "terminal": {"tid": "POSGRD01", "mid": "MERCHANT0000001"},
          "started": "2026-11-30T09:00:00+00:00"}
TEST_PAN = "4761732145926019"  # the hand-written captures' test PAN

#: kind -> a record of it that the reader takes (each with only keys of its kind)
VALID: dict[str, dict[str, Any]] = {
    "card": {"ref": "c1", "pan": TEST_PAN, "expiry": "2812", "entry_mode": "swipe", "field55": "",
             "cvm_results": ""},
    "atr": {"atr": "3B680000504F534755415244"},
    "apdu": {"c": "00B2010C00", "r": "6A83"},
    "swipe": {"track2": "0" * 20, "ref": "s1", "has_track1": False},
    "frame": {"dir": "out", "hex": ""},
    "iso": {"dir": "out", "mti": "0200", "stan": 1, "hex": ""},
    "link": {"event": "timeout", "maybe_sent": True, "detail": "no response"},
    "op": {"op": "sale", "card": "c1", "amount": 1250},
    "start": {"started": "2026-11-30T09:10:00+00:00"},
    "card_outcome": {"presentation": 1, "cryptogram": "TC", "atc": 17, "script_results": "", "field55": ""},
}
#: kind -> a key it does not define (one of another kind's, as an author mixes them up)
STRAY = {kind: "txn" for kind in KINDS} | {"op": "txn_ids", "link": "stan"}


def _capture(*records: dict[str, Any]) -> io.StringIO:
    return io.StringIO("".join(json.dumps(r) + "\n" for r in (HEADER, *records)))


def test_every_kind_has_a_valid_example() -> None:
    assert sorted(VALID) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_the_kind_does_not_define_is_refused(kind: str) -> None:
    record = {"t": 0.1, "k": kind, **VALID[kind]}
    assert len(read_capture(_capture(record)).records) == 1  # as written, the record reads
    stray = STRAY[kind]
    with pytest.raises(CaptureError) as err:
        read_capture(_capture({"t": 0, "k": "link", "event": "flow"}, {**record, stray: 5}))
    text = str(err.value)
    assert err.value.line == 3 and "\n" not in text
    assert text.startswith(f'line 3: {kind} record has the key "{stray}", which a') and \
        f"{kind} record does not define (its keys: t, k, " in text, text


def test_a_typo_in_an_op_argument_is_refused_when_read() -> None:
    """A key no operator action takes is refused by the reader (which action takes which is checked by the
    replay, ``check_op``: ``argument_not_taken`` in the hand-written mistakes)."""
    with pytest.raises(CaptureError) as err:
        read_capture(_capture({"t": 0.1, "k": "op", "op": "sale", "card": "c1", "amout": 1250}))
    assert str(err.value).startswith('line 2: op record has the key "amout", which an op record does not define')
    assert "amount, batch, card" in str(err.value)


def test_a_near_spelling_of_the_kinds_own_key_is_refused_with_the_key_meant() -> None:
    with pytest.raises(CaptureError) as err:
        read_capture(_capture({"t": 0.1, "k": "iso", "dir": "out", "hex": "", "mti": "0200", "stna": 1}))
    assert str(err.value).startswith('line 2: iso record has the key "stna", which an iso record does not define')
    assert "did you mean 'stan'?" in str(err.value)


def test_an_authors_own_key_is_read_past_and_listed() -> None:
    """A key no record kind defines and that spells none of its kind's keys (a comment) is the author's: the
    record reads as without it, and the capture lists it (``posguard replay`` prints the list)."""
    record = {"t": 0.1, "k": "iso", "dir": "out", "mti": "0200", "stan": 1, "hex": ""}
    capture = read_capture(_capture({**record, "comment": "the sale the customer disputes"},
                                    {"t": 0.2, "k": "op", "op": "sale", "card": "c1", "amount": 1250, "why": "x"}))
    assert capture.records[0] == record and capture.ignored == [(2, '"comment"'), (3, '"why"')]
    assert read_capture(_capture(record)).ignored == []


def test_a_key_that_is_card_data_is_masked_where_it_is_listed() -> None:
    capture = read_capture(_capture({"t": 0.1, "k": "iso", "dir": "out", "mti": "0200", "stan": 1, "hex": "",
                                     TEST_PAN: 1}))
    assert len(capture.ignored) == 1 and TEST_PAN not in capture.ignored[0][1]
    assert capture.ignored[0][1].startswith('"476173') and capture.ignored[0][1].endswith('6019"')


def test_the_op_keys_are_the_operator_actions_arguments() -> None:
    args = {a for action in OPERATOR_ACTIONS.values() for a in action.args}
    assert RECORD_KEYS["op"] == ("op", *OP_ARGUMENTS) and set(OP_ARGUMENTS) == args == {"txn", "card", "amount",
        "order", "override", "esig", "paper", "contact", "incident", "report", "batch"}


def _doc_table(heading: str) -> dict[str, str]:
    """The rows of the first table after ``heading``: first column (without backticks) -> the second."""
    text = DOC.read_text()
    start = text.index(heading)
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] not in ("`k`", "---"):
                rows[cells[0].strip("`")] = cells[1]
        elif rows:
            return rows
    return rows


def test_the_doc_key_table_is_the_declared_one() -> None:
    table = _doc_table("### The keys of each record kind")
    assert list(table) == list(RECORD_KEYS)
    # the op row names "op", then the arguments of the operator actions (their own table, next in the doc)
    assert {k: tuple(re.findall(r"`([a-z0-9_]+)`", v)) for k, v in table.items()} == \
        RECORD_KEYS | {"op": ("op",)}


def test_the_records_table_names_every_key_of_its_kind() -> None:
    """The doc's main table ("Records": what each key holds) names each key the reader takes for the kind, and
    the table of the op records' arguments each argument."""
    table = _doc_table("## Records")
    assert sorted(table) == sorted(KINDS)
    for kind, keys in (RECORD_KEYS | {"op": ("op",)}).items():
        named = set(re.findall(r"`([a-z0-9_]+)`", table[kind]))
        assert set(keys) <= named, (kind, set(keys) - named)
    arguments = " ".join(_doc_table("### The arguments of an `op` record").values())
    assert set(OP_ARGUMENTS) <= set(re.findall(r"`([a-z0-9_]+)`", arguments))


def test_every_capture_of_the_suite_reads_without_a_stray_key() -> None:
    """Recorded and hand-written captures read; a mistake the reader refuses is refused for what it shows, not
    for a stray key."""
    files = sorted((ROOT / "tests" / "captures").rglob("*.jsonl"))
    assert len(files) > 40
    for path in files:
        try:
            read_capture(path)
        except CaptureError as exc:
            assert path.parent.name == "mistakes" and "does not define" not in str(exc), (path.name, str(exc))
