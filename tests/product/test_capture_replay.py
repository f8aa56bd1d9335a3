"""Capture files: the checked-in captures replay to their expected incidents; the format and sanitiser hold."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from posguard.capture import CaptureError, CaptureWriter, Sanitiser, read_capture, substitute_pan
from posguard.clock import VirtualClock
from posguard.iso8583 import Message
from posguard.sensitive import luhn_ok
from tests.product.conftest import CAPTURES, ROOT, SIM_PANS, clear_pan_hits

EXPECTED: dict[str, list[dict[str, Any]]] = json.loads((CAPTURES / "expected.json").read_text())
ERROR_KINDS = ("duplicate_charge", "wrong_card", "wrong_amount", "void_mismatch", "unsettled", "unsigned",
               "reversal")


def test_a_capture_for_every_error_kind_in_both_dialects() -> None:
    for dialect in ("cup", "iso87ascii"):
        for kind in ERROR_KINDS:
            name = f"{dialect}-{kind}.jsonl"
            assert name in EXPECTED, f"missing capture {name}: run python -m tests.captures.make_captures"
            assert kind in [i["incident"] for i in EXPECTED[name]]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_of_each_capture_gives_its_expected_incidents(name: str, posguard_replay: Any) -> None:
    day = posguard_replay(CAPTURES / name)
    got = [{"incident": i.kind, "rule": i.rule, "outcome": i.outcome, "transactions": i.transactions}
           for i in day.incidents]
    assert got == EXPECTED[name]


def test_replayed_duplicate_voids_the_extra_leg_on_the_wire(posguard_replay: Any) -> None:
    day = posguard_replay(CAPTURES / "cup-duplicate_charge.jsonl")
    [inc] = day.incidents
    first, extra = inc.transactions
    assert day.states()[first] in ("approved", "signed") and day.states()[extra] == "voided"
    assert inc.messages and Message.decode(bytes.fromhex(inc.messages[0]), "cup").processing_code == "200000"
    assert day.wire_mtis().count("0200") >= 5


def test_replay_is_deterministic(posguard_replay: Any) -> None:
    a = posguard_replay(CAPTURES / "iso87ascii-reversal.jsonl").incident_dicts()
    b = posguard_replay(CAPTURES / "iso87ascii-reversal.jsonl").incident_dicts()
    assert a == b and a[0]["incident"] == "reversal"


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("*.jsonl")), ids=lambda p: p.name)
def test_no_simulator_pan_in_clear_in_any_capture(path: Path) -> None:
    assert clear_pan_hits(path.read_bytes()) == []


def test_test_pans_keep_the_bin_pass_luhn_and_are_consistent() -> None:
    s = Sanitiser(salt=b"k" * 16)
    for pan in SIM_PANS + ("6228480402564890018",):
        test = s.learn(pan)
        assert test != pan and test[:6] == pan[:6] and len(test) == len(pan) and luhn_ok(test)
        assert s.learn(pan) == test and s.learn(test) == test
    assert substitute_pan(SIM_PANS[0], b"a") != substitute_pan(SIM_PANS[0], b"b")


def test_writer_sanitises_messages_as_written(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    sale = Message("0200", {"2": SIM_PANS[0], "3": "000000", "4": "000000001000", "11": "000001",
                            "35": f"{SIM_PANS[0]}D251220112345678", "41": "TERM0001", "42": "MERCHANT0000001",
                            "49": "156", "52": "0123456789ABCDEF"}, dialect="iso87ascii")
    with CaptureWriter(path, dialect="iso87ascii", tid="TERM0001", mid="M", clock=VirtualClock()) as w:
        w.iso("out", sale.encode())
        w.record("op", op="sale", order=f"customer card {SIM_PANS[1]}")  # free text: scrubbed
        w.record("apdu", c="00B2010C00", r=f"5A08{SIM_PANS[0]}9000")
        w.apdu(bytes.fromhex("0020008008241234FFFFFFFFFF"), bytes.fromhex("9000"))  # VERIFY: plaintext PIN
    assert clear_pan_hits(path.read_bytes()) == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    cap = read_capture(path)
    [iso] = list(cap.of_kind("iso"))
    msg = Message.decode(bytes.fromhex(iso["hex"]), "iso87ascii")
    assert "52" not in msg and iso["removed"] == ["52", "35.discretionary"]
    assert msg["2"][:6] == SIM_PANS[0][:6] and luhn_ok(str(msg["2"]))
    assert str(msg["35"]).startswith(str(msg["2"]) + "D2512201") and str(msg["35"]).endswith("0000000")
    apdu, verify = list(cap.of_kind("apdu"))
    assert apdu["r"] == f"5A08{msg['2']}9000"  # the same test PAN everywhere in the file
    assert verify["c"] == "0020008008" + "00" * 8


def test_a_capture_that_cannot_be_read_at_all_is_said_without_a_line_number(tmp_path: Path) -> None:
    """A missing file or one that is not UTF-8 text is the file's problem, not a line's: no "line 0:" before it."""
    from posguard.capture import CaptureError

    for path, words in ((tmp_path / "missing.jsonl", "cannot open"), (tmp_path / "binary.jsonl", "not UTF-8 text")):
        if path.name == "binary.jsonl":
            path.write_bytes(b"\xff\xfe\n")
        with pytest.raises(CaptureError) as err:
            read_capture(path)
        assert err.value.line == 0 and str(err.value).startswith(words), str(err.value)


def test_writer_refuses_a_key_its_reader_would_refuse(tmp_path: Path) -> None:
    """A recorder that writes a key the record's kind does not define would leave a capture no replay reads: the
    writer says so at once, naming the kind and the key, and writes nothing of that record."""
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, dialect="cup", tid="TERM0001", mid="M", clock=VirtualClock()) as w:
        with pytest.raises(ValueError, match=r"iso record: keys \"txn\" are not defined"):
            w.record("iso", dir="out", hex="0800", txn="T-1")
        w.record("link", event="timeout", detail="no answer")
    cap = read_capture(path)
    assert [r["k"] for r in cap.records] == ["link"]


@pytest.mark.parametrize(("text", "line", "what"), [
    ("", 1, "empty"),
    ("not json\n", 1, "not JSON"),
    ('{"posguard_capture": 1, "dialect": "cup", "terminal": {"tid": "T"}}\n{"t": 0, "k": "iso", "dir": "up", '
     '"hex": "00"}\n', 2, "dir"),
    ('{"posguard_capture": 1, "dialect": "cup", "terminal": {"tid": "T"}}\n\n{"t": -1, "k": "op"}\n', 3, "\"t\""),
    ('{"posguard_capture": 1, "dialect": "cup", "terminal": {"tid": "T"}}\n{"t": 1, "k": "apdu", "c": "zz", '
     '"r": "9000"}\n', 2, "not hex"),
])
def test_unreadable_captures_name_the_line(text: str, line: int, what: str) -> None:
    with pytest.raises(CaptureError) as info:
        read_capture(io.StringIO(text))
    assert info.value.line == line and what in str(info.value)


def test_replay_cli_json_and_exit_codes(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "posguard.cli", "replay"]
    ok = subprocess.run([*cli, str(CAPTURES / "cup-wrong_card.jsonl"), "--json"], capture_output=True, text=True,
                        cwd=ROOT, check=False)
    assert ok.returncode == 0, ok.stderr
    [obj] = [json.loads(line) for line in ok.stdout.splitlines()]
    assert obj["incident"] == "wrong_card" and obj["flow"] == "wrong_card" and obj["messages"]
    assert set(obj) >= {"incident", "transactions", "flow", "messages", "outcome"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"posguard_capture": 1, "dialect": "cup", "terminal": {"tid": "T"}}\n{"t": 0}\n')
    res = subprocess.run([*cli, str(bad)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 1 and "line 2" in res.stderr


def _rewritten(name: str, tmp_path: Path, txn: Any) -> Path:
    """The capture with every ``op`` record's ``txn`` rewritten by ``txn(id)`` (a hand-written capture's spelling)."""
    lines = []
    for line in (CAPTURES / name).read_text().splitlines():
        rec = json.loads(line) if line.startswith("{") else None
        if rec is not None and rec.get("k") == "op" and "txn" in rec:
            rec["txn"] = txn(rec["txn"])
            line = json.dumps(rec)
        lines.append(line)
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.mark.parametrize("name", ["cup-wrong_amount.jsonl", "iso87ascii-wrong_amount.jsonl"])
def test_op_records_may_name_a_transaction_by_stan_or_as_last(name: str, tmp_path: Path,
                                                              posguard_replay: Any) -> None:
    by_id = posguard_replay(CAPTURES / name)
    stans = {t.id: t.stan for t in by_id.journal.find_txns()}
    as_number = posguard_replay(_rewritten(name, tmp_path / "n", lambda i: stans[i]))
    as_digits = posguard_replay(_rewritten(name, tmp_path / "d", lambda i: f"{stans[i]:06d}"))
    as_last = posguard_replay(_rewritten(name, tmp_path / "l", lambda i: "last"))  # each names the latest sale
    expected = by_id.incident_dicts()
    assert expected and as_number.incident_dicts() == expected == as_digits.incident_dicts() == \
        as_last.incident_dicts()


@pytest.mark.parametrize(("txn", "what"), [("last", 'txn "last" but no sale was rung up before it'),
                                           (424242, "STAN 424242 but the replay holds no transaction"),
                                           (0, "a STAN is 1 to 999999"),
                                           ([1], "not list")])
def test_a_txn_the_replay_cannot_name_is_one_line(txn: Any, what: str, tmp_path: Path,
                                                  posguard_replay: Any) -> None:
    lines = (CAPTURES / "cup-wrong_amount.jsonl").read_text().splitlines()
    header = lines[0]
    path = tmp_path / "bad.jsonl"
    path.write_text(header + "\n" + json.dumps({"t": 1.0, "k": "op", "op": "sign", "txn": txn}) + "\n")
    with pytest.raises(CaptureError, match=r"^line 2: op (names|txn) .*") as exc:
        posguard_replay(path)
    assert what in str(exc.value)


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CAPTURES / name).read_text().splitlines() if line.strip()]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("dialect", ["iso87ascii", "cup"])
def test_an_answer_recorded_after_the_timeout_is_a_timeout_then_a_late_answer(dialect: str, tmp_path: Path,
                                                                                posguard_replay: Any) -> None:
    """Hand-written: the host approved the sale, but 2.5 s after it was sent (the terminal waits 1.5 s). A live
    terminal reverses it and then hears the approval late; so does the replay."""
    recs = _records(f"{dialect}-reversal.jsonl")
    cut = next(i for i, r in enumerate(recs) if r.get("k") == "link" and r.get("event") == "timeout")
    sale_out = recs[cut - 1]
    assert sale_out["k"] == "iso" and sale_out["mti"] == "0200"
    template = next(r for r in recs if r.get("k") == "iso" and r.get("dir") == "in" and r.get("mti") == "0210")
    answer = Message.decode(bytes.fromhex(template["hex"]), dialect)
    answer["4"] = Message.decode(bytes.fromhex(sale_out["hex"]), dialect)["4"]
    answer["11"] = f"{sale_out['stan']:06d}"
    late = {"t": sale_out["t"] + 2.5, "k": "iso", "dir": "in", "mti": "0210", "stan": sale_out["stan"],
            "hex": answer.encode().hex()}
    assert answer["39"] == "00"
    day = posguard_replay(_write(tmp_path / "late.jsonl", [*recs[:cut], late, *recs[cut + 1:]]))
    assert day.incident_dicts() == posguard_replay(CAPTURES / f"{dialect}-reversal.jsonl").incident_dicts()
    assert [i.kind for i in day.incidents] == ["reversal"] and day.incidents[0].outcome == "reversed"
    (event,) = day.result.late_answers
    assert event.kind == "late_response" and event.approved and "reversal must go ahead" in event.detail
    assert event.stan == sale_out["stan"] and any(line.startswith("late answer: 0210") for line in day.log)


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_a_capture_cut_while_the_outcome_is_unknown_reports_the_owed_reversal(dialect: str, tmp_path: Path,
                                                                              posguard_replay: Any) -> None:
    recs = _records(f"{dialect}-reversal.jsonl")
    cut = next(i for i, r in enumerate(recs) if r.get("k") == "link" and r.get("event") == "timeout")
    day = posguard_replay(_write(tmp_path / "cut.jsonl", recs[:cut]))  # the file ends after the sale was sent
    (inc,) = day.incidents
    assert inc.kind == "reversal" and inc.rule == "capture_ended" and inc.outcome == "reversal_owed"
    (txn,) = inc.transactions
    assert day.states()[txn] == "reversal_pending"
    assert "the reversal is owed to the host" in inc.detail and f"STAN {recs[cut - 1]['stan']}" in inc.detail


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_replay_sends_what_was_recorded_with_the_recorded_stans(name: str, posguard_replay: Any) -> None:
    """Captures are recorded with a sign-on (its STAN spent live); the replay, holding no master key, does not sign
    on but spends the STAN, so every request it sends has the recorded MTI and STAN, in order."""
    recorded = [(r["mti"], r["stan"]) for r in _records(name)
                if r.get("k") == "iso" and r.get("dir") == "out" and not str(r["mti"]).startswith("08")]
    day = posguard_replay(CAPTURES / name)
    assert [(m.mti, m.stan) for m in day.wire] == recorded
    assert any(r.get("k") == "iso" and str(r.get("mti")) == "0800" for r in _records(name))


@pytest.mark.parametrize("spelling", ["stan", "last"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_kind_replays_the_same_when_written_by_hand_with_stans_and_last(name: str, spelling: str,
                                                                             tmp_path: Path,
                                                                             posguard_replay: Any) -> None:
    """Each capture with its ``op`` records written as a test author writes them (no transaction ids): by the STAN
    the recording shows on the wire; or ``"last"`` where the op names the latest sale (else the STAN, as digits)."""
    by_id = posguard_replay(CAPTURES / name)
    txns = by_id.journal.find_txns()
    stan = {t.id: t.stan for t in txns}
    recorded_stans = {r["stan"] for r in _records(name) if r.get("k") == "iso" and r.get("dir") == "out"}
    assert all(stan[t] in recorded_stans for t in stan if stan[t] is not None)  # the wire's STANs
    started = datetime.fromisoformat(_records(name)[0]["started"]).timestamp()
    sales = sorted((t for t in txns if t.kind == "sale"), key=lambda t: (t.created_at, t.id))
    lines = []
    for rec in _records(name):
        if rec.get("k") == "op" and "txn" in rec:  # "last": the latest sale rung up before this record
            before = [t.id for t in sales if t.created_at <= started + rec["t"]]
            last = spelling == "last" and before and before[-1] == rec["txn"]
            rec = {**rec, "txn": "last" if last else stan[rec["txn"]] if spelling == "stan"
                   else f"{stan[rec['txn']]:06d}"}
        lines.append(rec)
    written = [r for r in lines if r.get("k") == "op" and "txn" in r]
    assert written and all(not str(r["txn"]).startswith("POSGRD01") for r in written)
    tmp_path.mkdir(parents=True, exist_ok=True)
    by_hand = posguard_replay(_write(tmp_path / name, lines))
    assert by_hand.incident_dicts() == by_id.incident_dicts() and by_id.incident_dicts()
