"""Issue 13: a capture's ``reconcile`` op carries the acquirer's settlement report, so a capture is self-contained
(docs/capture-format.md "The reconcile op"). Hand-written captures name the report inline (the JSON document, its
rows, or CSV text) or as a file beside the capture; the replay runs the two-way comparison. A live till records
the report inline, sanitised: masked test PANs only, no PAN hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host.report import to_csv
from posguard.capture import CaptureError, CaptureWriter, read_capture
from posguard.engine.acquirer_report import COLUMNS
from posguard.flows import FlowPolicies
from posguard.service.till import Till
from tests.engine.conftest import UNIONPAY_PAN, VISA_PAN, FreshCards, card
from tests.flows.conftest import TID, desk_for
from tests.product.conftest import CAPTURES

HEADER = ",".join(c.name for c in COLUMNS)


def _records(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CAPTURES / name).read_text().splitlines() if line.strip()]


def _masked(pan: str) -> str:
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def _booked_rows(recs: list[dict[str, Any]], dialect: str) -> list[dict[str, str]]:
    """What the acquirer booked on the day of ``recs``, as a test author writes it from the capture: every sale the
    host answered — the one it answered 51 too (the demo's "wrong_rc" case: the host booked it all the same)."""
    from posguard.iso8583 import Message

    tid = str(recs[0]["terminal"]["tid"])
    cards = [r for r in recs if r.get("k") == "card"]
    sales = [r for r in recs if r.get("k") == "iso" and r.get("mti") == "0200" and r["dir"] == "out"]
    rows = []
    for out in sales:
        request = Message.decode(bytes.fromhex(out["hex"]), dialect)
        answer = next(Message.decode(bytes.fromhex(r["hex"]), dialect) for r in recs[recs.index(out):]
                      if r.get("k") == "iso" and r.get("mti") == "0210")
        if answer["39"] not in ("00", "51"):
            continue
        pan = next(c["pan"] for c in cards if c["pan"][:6] == str(request["2"])[:6]
                   and c["pan"][-4:] == str(request["2"])[-4:])
        org = "CUP" if pan.startswith("62") else ("VIS" if pan.startswith("4") else "MCC")
        rows.append({"terminal_id": tid, "batch": "000001" if dialect == "cup" else "", "stan": f"{out['stan']:06d}",
                     "rrn": str(answer["37"]), "auth_code": str(answer.get("38") or ""), "pan_masked": _masked(pan),
                     "pan_hash": "", "amount_minor": str(int(request["4"])), "currency": "156", "kind": "sale",
                     "status": "approved", "host_date": "2026-11-30", "host_time": "21:08:00",
                     "card_org": org, "side": "domestic" if org == "CUP" else "foreign"})
    return rows


def _with_reconcile(name: str, tmp_path: Path, report: Any) -> Path:
    """The recorded day with its own reconcile op (the demo's, inline) replaced by a hand-written one."""
    recs = [r for r in _records(name) if not (r.get("k") == "op" and r.get("op") == "reconcile")]
    recs.append({"t": recs[-1]["t"] + 1.0, "k": "op", "op": "reconcile", "report": report})
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return path


def _findings(day: Any) -> list[tuple[str, str | None]]:
    [inc] = [i for i in day.incidents if i.kind == "unsettled" and i.rule == "report_import"]
    steps = [json.loads(r["detail"]) for r in day.journal.flow_events(inc.incident_id or 0, outcome=False)]
    [compared] = [s for s in steps if s["step"].startswith("compare:")]
    return sorted((f["rule"], f["txn_id"]) for f in compared["findings"])


def _csv(rows: list[dict[str, str]]) -> str:
    return "\n".join([HEADER, *(",".join(r[c.name] for c in COLUMNS) for r in rows)]) + "\n"


@pytest.mark.parametrize("name", ["cup-unsettled.jsonl", "iso87ascii-unsettled.jsonl"])
@pytest.mark.parametrize("spelling", ["document", "rows", "csv_text", "csv_file", "json_file"])
def test_a_hand_written_reconcile_op_names_the_sale_the_host_booked_against_a_51(
        name: str, spelling: str, tmp_path: Path, posguard_replay: Any) -> None:
    dialect = name.split("-")[0]
    rows = _booked_rows(_records(name), dialect)
    document = {"format": "posguard-settlement-report/1", "rows": rows}
    if spelling == "csv_file":
        (tmp_path / "acquirer.csv").write_text(_csv(rows))
    if spelling == "json_file":
        (tmp_path / "reports").mkdir()
        (tmp_path / "reports" / "acquirer.json").write_text(json.dumps(document))
    report: Any = {"document": document, "rows": rows, "csv_text": _csv(rows), "csv_file": "acquirer.csv",
                   "json_file": "reports/acquirer.json"}[spelling]
    day = posguard_replay(_with_reconcile(name, tmp_path, report))
    declined = [t.id for t in day.journal.find_txns() if t.response_code == "51"]
    assert len(declined) == 1
    assert _findings(day) == [("host_booked_not_approved", declined[0])]
    assert [i.kind for i in day.incidents] == ["unsettled", "unsettled"]  # the settlement's, then the import's
    assert day.incidents[-1].outcome == "acquirer_contact_needed" and day.incidents[-1].messages == []


def test_a_report_that_agrees_closes_the_batch_incident(tmp_path: Path, posguard_replay: Any) -> None:
    rows = [r for r in _booked_rows(_records("cup-unsettled.jsonl"), "cup")]
    rows = [r for r in rows if r["stan"] != "000006"]  # the acquirer took the 51 booking back
    day = posguard_replay(_with_reconcile("cup-unsettled.jsonl", tmp_path, rows))
    assert _findings(day) == [] and day.incidents[-1].outcome == "reconciled"


@pytest.mark.parametrize(("report", "what"), [
    ("missing.csv", "missing.csv: cannot be read"),
    ({"rows": [{"terminal_id": "POSGRD01"}]}, "rows[0].stan"),
    (HEADER + "\nPOSGRD01,000001,000002,,,4111111111111111,,1250,156,sale,approved,2026-11-30,21:08:00,VIS,foreign\n",
     "a full card number is refused"),
    (42, "a reconcile op's report is the report itself"),
])
def test_a_report_the_replay_cannot_read_is_one_line_naming_the_record(report: Any, what: str, tmp_path: Path,
                                                                      posguard_replay: Any) -> None:
    path = _with_reconcile("cup-unsettled.jsonl", tmp_path, report)
    line = len(path.read_text().splitlines())
    with pytest.raises(CaptureError, match=rf"^line {line}: op reconcile: the acquirer's report cannot be read") as e:
        posguard_replay(path)
    assert what in str(e.value) and "4111111111111111" not in str(e.value)


def test_a_live_reconcile_is_recorded_inline_sanitised_and_replays_to_the_same_findings(
        tmp_path: Path, posguard_replay: Any) -> None:
    capture = tmp_path / "day.jsonl"
    with desk_for("cup", tmp_path) as desk:
        writer = CaptureWriter(capture, dialect="cup", tid=TID, mid=desk.engine.terminal.merchant_id,
                               clock=desk.clock, terminal_extra={"currency": "156", "timeout": 5.0})
        till = Till(desk.engine, dialect="cup", writer=writer, policies=FlowPolicies())
        till.presenter = FreshCards(up=lambda: card(UNIONPAY_PAN, scheme="unionpay"), visa=lambda: card(VISA_PAN))
        till.do("sale", card="up", amount=10_00)
        desk.sim.add_fault("wrong_rc", rc="51", mti="0200")
        declined = till.do("sale", card="visa", amount=15_00)
        till.do("settle")
        report = tmp_path / "acquirer.csv"
        report.write_text(to_csv(desk.sim.ledger, "cup", TID))
        [live] = till.do("reconcile", report=str(report))
        till.close()
        writer.close()
        live_findings = sorted((json.loads(r["detail"])["findings"][0]["rule"],)
                               for r in desk.journal.flow_events(live.incident_id or 0, outcome=False)
                               if json.loads(r["detail"])["step"].startswith("compare:"))
    [op] = [r for r in read_capture(capture).records if r["k"] == "op" and r["op"] == "reconcile"]
    inline = op["report"]
    assert isinstance(inline, dict) and inline["format"] == "posguard-settlement-report/1" and len(inline["rows"]) == 2
    text = capture.read_text()
    assert VISA_PAN not in text and UNIONPAY_PAN not in text and str(report) not in text
    assert all(r["pan_hash"] == "" for r in inline["rows"])
    test_pans = {c["pan"] for c in read_capture(capture).of_kind("card")}
    assert {r["pan_masked"] for r in inline["rows"]} == {_masked(p) for p in test_pans}
    assert live_findings == [("host_booked_not_approved",)]
    report.unlink()  # the replay needs nothing but the capture
    day = posguard_replay(capture)
    assert _findings(day) == [("host_booked_not_approved", declined.txn_id)]


@pytest.mark.parametrize("name", ["cup-unsettled.jsonl", "iso87ascii-unsettled.jsonl"])
def test_the_recorded_demo_day_carries_its_report_and_its_replay_names_the_51_sale(name: str,
                                                                                  posguard_replay: Any) -> None:
    """The demo's unbalanced day (tests/captures, recorded by make_captures): the operator's reconcile is in the
    capture with the acquirer's report inline; the replay alone names the sale the host booked against a 51."""
    [op] = [r for r in _records(name) if r.get("k") == "op" and r.get("op") == "reconcile"]
    assert op["report"]["format"] == "posguard-settlement-report/1"
    assert op["report"]["rows"] and all(r["pan_hash"] == "" for r in op["report"]["rows"])
    day = posguard_replay(CAPTURES / name)
    [declined] = [t.id for t in day.journal.find_txns() if t.response_code == "51"]
    assert _findings(day) == [("host_booked_not_approved", declined)]
