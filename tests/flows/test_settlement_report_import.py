"""The acquirer settlement report as a user meets it: the parser's errors name the line and column (never a
traceback, never the card data), the simulator's report reads back as written, ``posguard reconcile`` exits as
declared, and the operator's ``reconcile`` line is checked before anything acts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from firmware_sim.host.report import COLUMNS as SIM_COLUMNS
from firmware_sim.host.report import to_csv, to_json
from posguard.cli import main as cli_main
from posguard.engine.acquirer_report import COLUMNS, FORMAT, ReportError, load_report, parse_report
from posguard.engine.instance_lock import JournalLock
from posguard.engine.journal import Journal
from posguard.incidents import get_incident, load_incidents
from posguard.service.commands import CommandError, parse
from tests.engine.conftest import DATA_KEY, TOKEN_KEY, UNIONPAY_PAN, VISA_PAN, card
from tests.flows.conftest import TID, Desk, desk_for

HEADER = ",".join(c.name for c in COLUMNS)
GOOD = "TERM0001,000001,000007,334101000007,650012,622202******0012,,1500,156,sale,approved,2026-11-30,10:01:02,CUP,domestic"


def csv_error(*rows: str, header: str = HEADER) -> ReportError:
    with pytest.raises(ReportError) as err:
        parse_report("\n".join(["# acquirer report", header, *rows]) + "\n", source="day.csv")
    return err.value


def test_a_good_row_reads_back_with_its_line() -> None:
    report = parse_report(f"# comment\n{HEADER}\n\n{GOOD}\n", source="day.csv")
    [row] = report.rows
    assert (row.line, row.terminal_id, row.batch, row.stan, row.rrn, row.amount_minor, row.kind, row.status,
            row.side) == (4, "TERM0001", 1, 7, "334101000007", 1500, "sale", "approved", "domestic")
    assert report.encoding == "csv" and len(report.digest) == 64


@pytest.mark.parametrize(("cell", "value", "message"), [
    (7, "12.50", "day.csv line 3 column 8 (amount_minor): amount_minor '12.50' does not match [0-9]{1,12}"),
    (2, "", "day.csv line 3 column 3 (stan): stan is empty"),
    (2, "000000", "day.csv line 3 column 3 (stan): stan 0: a STAN runs from 1 to 999999"),
    (10, "booked", "day.csv line 3 column 11 (status): status 'booked' does not match approved|declined|voided|reversed"),
    (11, "30/11/2026", "day.csv line 3 column 12 (host_date): host_date '30/11/2026' does not match"),
    (14, "domestique", "day.csv line 3 column 15 (side): side 'domestique' does not match domestic|foreign"),
])
def test_a_bad_cell_is_named_by_line_and_column(cell: int, value: str, message: str) -> None:
    cells = GOOD.split(",")
    cells[cell] = value
    assert str(csv_error(",".join(cells))).startswith(message)


def test_card_data_in_a_report_is_refused_without_repeating_it() -> None:
    cells = GOOD.split(",")
    cells[5] = UNIONPAY_PAN
    err = csv_error(GOOD, ",".join(cells))
    assert (err.line, err.column) == (4, "6 (pan_masked)")
    assert "a full card number is refused" in str(err) and UNIONPAY_PAN not in str(err)
    cells = GOOD.split(",")
    cells[6] = "Z" * 32
    err = csv_error(",".join(cells))
    assert err.column == "7 (pan_hash)" and "Z" * 32 not in str(err)


def test_header_and_shape_errors() -> None:
    assert str(csv_error(GOOD, header=HEADER.replace(",side", ""))) == "day.csv line 2: the header lacks column(s) side"
    assert str(csv_error(GOOD, header=HEADER + ",colour")).startswith("day.csv line 2: unknown column(s) 'colour'")
    assert str(csv_error(GOOD + ",extra")) == "day.csv line 3: 16 cells, the header names 15"
    with pytest.raises(ReportError, match=r"^empty\.csv: no header line"):
        parse_report("# only a comment\n", source="empty.csv")


def test_json_errors_name_the_line_and_the_row() -> None:
    row = dict(zip(HEADER.split(","), GOOD.split(","), strict=True))
    bad = dict(row, stan="x1")
    text = json.dumps({"format": FORMAT, "rows": [row, bad]}, indent=1)
    with pytest.raises(ReportError) as err:
        parse_report(text, source="day.json")
    opening = [n for n, ln in enumerate(text.splitlines(), start=1) if ln.strip() == "{"]
    line = opening[2]  # the document, rows[0], rows[1]: where rows[1] starts
    assert str(err.value).startswith(f"day.json line {line} column rows[1].stan: stan 'x1' does not match")
    with pytest.raises(ReportError, match=r"^day\.json line 3 column 1: not JSON: "):
        parse_report('{"format": "x",\n "rows": [\n}', source="day.json")
    with pytest.raises(ReportError, match=r"a JSON report is an object"):
        parse_report('{"rows": []}', source="day.json")


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"nope\.csv: cannot be read: No such file"):
        load_report(tmp_path / "nope.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\n".encode() + b"caf\xe9\n")
    with pytest.raises(ReportError, match=r"latin\.csv line 2: not UTF-8 at byte"):
        load_report(latin)


def test_the_simulators_report_is_the_documented_format(tmp_path: Path) -> None:
    assert SIM_COLUMNS == tuple(c.name for c in COLUMNS)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "settlement-report.md").read_text()
    assert all(f"| `{c.name}` |" in doc for c in COLUMNS)
    with desk_for("cup", tmp_path) as desk:
        desk.engine.sale(card(UNIONPAY_PAN, scheme="unionpay"), 12_00)
        desk.engine.sale(card(VISA_PAN), 34_00)
        csv_report = parse_report(to_csv(desk.sim.ledger, "cup", TID), source="sim.csv")
        json_report = parse_report(to_json(desk.sim.ledger, "cup", TID), source="sim.json")
        assert [r.to_dict() | {"line": 0} for r in csv_report.rows] == [r.to_dict() | {"line": 0}
                                                                       for r in json_report.rows]
        assert [(r.stan, r.amount_minor, r.card_org, r.side, r.batch, r.pan_masked) for r in csv_report.rows] == [
            (1, 12_00, "CUP", "domestic", 1, "622848*********0018"), (2, 34_00, "VIS", "foreign", 1, "476173******0127")]
        assert all(r.pan_hash and len(r.pan_hash) == 32 for r in csv_report.rows)


# -- posguard reconcile ---------------------------------------------------------------------------------------
def _config(tmp_path: Path, journal: Path, dialect: str) -> Path:
    keys = {}
    for name, value in (("token", TOKEN_KEY), ("data", DATA_KEY)):
        k = tmp_path / f"{name}.key"
        k.write_text(value.hex())
        os.chmod(k, 0o600)
        keys[name] = k
    path = tmp_path / "posguard.toml"
    path.write_text(f"""
[terminal]
tid = "{TID}"
mid = "MERCHANT0000001"
currency = "156"
dialect = "{dialect}"
token_key_file = "{keys['token']}"
data_key_file = "{keys['data']}"

[reader]
kind = "pcsc"
name = "Virtual PCD 00 00"

[host]
address = "127.0.0.1"
port = 9

[journal]
path = "{journal}"

[operator]
socket = "stdin"
""")
    return path


def _unbalanced_batch(desk: Desk) -> str:
    desk.engine.sale(card(UNIONPAY_PAN, scheme="unionpay"), 10_00)
    desk.sim.add_fault("wrong_rc", rc="51", mti="0200")
    declined = desk.engine.sale(card(VISA_PAN), 15_00)
    result = desk.engine.settle()
    assert not result.balanced
    return declined.txn_id


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_the_cli_import_exits_as_declared(dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with desk_for(dialect, tmp_path) as desk:
        declined = _unbalanced_batch(desk)
        report = tmp_path / "acquirer.csv"
        report.write_text(to_csv(desk.sim.ledger, dialect, TID))
        for e in desk.ledger(kind="sale"):
            if e.amount == 15_00:
                e.status = "reversed"  # what the acquirer's next report says once it took the booking back
        fixed = tmp_path / "fixed.json"
        fixed.write_text(to_json(desk.sim.ledger, dialect, TID))
        journal = desk.path
    config = _config(tmp_path, journal, dialect)
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n{GOOD.replace('1500', 'lots')}\n")
    assert cli_main(["reconcile", "--report", str(bad), "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip().endswith("line 2 column 8 (amount_minor): amount_minor 'lots' does not "
                                                   "match [0-9]{1,12}; the amount in the currency's minor units "
                                                   "(field 4)")
    outbox = tmp_path / "outbox"
    assert cli_main(["reconcile", "--report", str(report), "--config", str(config), "--outbox", str(outbox)]) == 1
    out = capsys.readouterr().out
    assert f"host_booked_not_approved: {declined} sale" in out and "incident 1: acquirer_contact_needed" in out
    notices = sorted(p.name for p in outbox.iterdir() if "-merchant-" not in p.name)  # + the merchant's list
    assert notices == [f"incident-000001-unsettled_charged-001-{declined}.txt"]
    assert len(list(outbox.glob("incident-000001-unsettled-merchant-*.txt"))) == 1
    assert cli_main(["reconcile", "--report", str(report), "--config", str(config)]) == 0  # compared already
    assert "reconciliation is incident 1 already (this report was compared)" in capsys.readouterr().out
    with JournalLock(str(journal)):  # the running service holds the journal
        assert cli_main(["reconcile", "--report", str(fixed), "--config", str(config)]) == 3
        assert "send it `reconcile" in capsys.readouterr().err
    assert cli_main(["reconcile", "--report", str(fixed), "--config", str(config), "--json"]) == 0
    [answer] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(i["id"], i["status"], i["outcome"]) for i in answer["incidents"]] == [(1, "closed", "reconciled")]
    assert cli_main(["reconcile", "--report", str(fixed), "--config", str(config), "--batch", "2"]) == 3
    assert "batch 2 is open: a settlement report is compared with closed batches only" in capsys.readouterr().err


def test_the_operator_line_is_checked_before_anything_acts() -> None:
    command = parse("reconcile /var/lib/posguard/reports/2026-11-30.csv", max_amount=100_000)
    assert command.verb == "reconcile" and command.report == "/var/lib/posguard/reports/2026-11-30.csv"
    with pytest.raises(CommandError, match=r"reconcile needs REPORT"):
        parse("reconcile", max_amount=100_000)
    with pytest.raises(CommandError, match=r"is not a report file path"):
        parse("reconcile /tmp/a;rm", max_amount=100_000)


def _service_session(config: Path, lines: list[str]) -> list[dict[str, object]]:
    """``posguard run --stdin``: one JSON answer per line, then the end of stdin stops the service."""
    import subprocess
    import sys

    text = config.read_text().replace('kind = "pcsc"', 'kind = "none"')
    config.write_text(text)
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "run", "--config", str(config), "--stdin"],
                         input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2], check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    answers = [json.loads(line)["answer"] for line in res.stdout.splitlines() if '"answer"' in line]
    assert len(answers) == len(lines), res.stdout[-2000:]
    return answers


def test_the_service_verb_runs_the_reconciliation_once_across_a_restart(tmp_path: Path) -> None:
    with desk_for("iso87ascii", tmp_path) as desk:
        declined = _unbalanced_batch(desk)
        report = tmp_path / "acquirer.csv"
        report.write_text(to_csv(desk.sim.ledger, "iso87ascii", TID))
        journal = desk.path
        config = _config(tmp_path, journal, "iso87ascii")
        first, again, bad = _service_session(config, [f"reconcile {report}", f"reconcile {report}",
                                                      f"reconcile {tmp_path / 'missing.csv'}"])
        assert first["ok"] and first["reconciled"] == [1], first
        [inc] = first["incidents"]  # type: ignore[misc]
        assert inc["outcome"] == "acquirer_contact_needed" and inc["incident_id"] == 1
        assert again["ok"] and again["reconciled"] == [] and again["incidents"] == []
        assert not bad["ok"] and "missing.csv: cannot be read" in str(bad["error"])
        [after_restart] = _service_session(config, [f"reconcile {report}"])
        assert after_restart["ok"] and after_restart["reconciled"] == []
    with Journal(journal) as j:
        assert [i.id for i in load_incidents(j) if i.kind == "unsettled"] == [1]
        assert declined in json.dumps(get_incident(j, 1).to_dict())


@pytest.mark.parametrize("module", ["posguard.engine.acquirer_report", "posguard.engine.profiles"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
