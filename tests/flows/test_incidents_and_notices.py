"""Incidents, the CLI (`posguard incidents`, `posguard report`), notices, slips and the outbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from posguard.cli import main
from posguard.flows import FlowPolicies, FlowRequest
from posguard.notices.slip import COLUMNS, render_slip, width, wrap
from posguard.report import build_report
from tests.engine.conftest import OTHER_PAN, VISA_PAN, card
from tests.flows.conftest import Desk, desk_for


@pytest.fixture
def day(tmp_path: Path) -> Desk:
    """A cup till after a day with three incidents: corrected wrong card, open duplicate, kept unsigned."""
    with desk_for("cup", tmp_path, policies=FlowPolicies(outbox=str(tmp_path / "outbox"))) as desk:
        a = desk.engine.sale(card(), 100_00)
        desk.run(FlowRequest("wrong_card", (a.txn_id,), right_card=card(OTHER_PAN), original_card=card(),
                             contact="13800138000"))
        b = desk.engine.sale(card(), 7_00)
        desk.clock.advance(120)
        c = desk.engine.sale(card(), 7_00)
        desk.run(FlowRequest("duplicate_charge", (b.txn_id, c.txn_id)))
        s = desk.engine.sale(card(signature=True), 3_00)
        desk.run(FlowRequest("unsigned", (s.txn_id,), customer_present=False, follow_up="kept_at_risk"))
        return desk  # the journal file stays on disk; the fixture's desk is closed


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_incidents_list_and_show(day: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    listing = cli(capsys, "incidents", "list", "--journal", str(day.path))
    assert "wrong_card" in listing and "duplicate_charge" in listing and "awaiting_confirmation" in listing
    rows = [json.loads(line) for line in cli(capsys, "incidents", "--json", "--journal", str(day.path)).splitlines()]
    flows = [r for r in rows if r["source"] == "flow"]
    assert [r["kind"] for r in flows] == ["wrong_card", "duplicate_charge", "unsigned"]
    assert [r["status"] for r in flows] == ["closed", "open", "closed"]
    shown = cli(capsys, "incidents", "show", str(flows[0]["id"]), "--journal", str(day.path))
    assert "void_wrong_card: done RC 00" in shown and "0200" in shown and "刷错卡" in shown
    detail = json.loads(cli(capsys, "incidents", "show", str(flows[0]["id"]), "--json", "--journal", str(day.path)))
    assert detail["notice"]["contact"] == "*******8000"
    for text in (listing, shown, json.dumps(rows), json.dumps(detail, ensure_ascii=False)):
        assert VISA_PAN not in text and OTHER_PAN not in text and "13800138000" not in text


def test_no_full_pan_anywhere_in_the_journal_file(day: Desk) -> None:
    raw = b"".join(p.read_bytes() for p in day.path.parent.glob("journal.db*"))
    assert VISA_PAN.encode() not in raw and OTHER_PAN.encode() not in raw
    assert b"flow_step" in raw  # the steps are in there, masked


def test_unknown_incident_is_an_error(day: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["incidents", "show", "999", "--journal", str(day.path)]) == 1
    assert "no incident 999" in capsys.readouterr().err


def test_report_counts_kinds_causes_open_and_money_at_risk(day: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(cli(capsys, "report", "--json", "--journal", str(day.path)))
    assert report["by_kind"] == {"duplicate_charge": 1, "unsigned": 1, "wrong_card": 1}
    assert report["by_cause"] == {"operator_input": 3}
    assert [o["kind"] for o in report["open"]] == ["duplicate_charge"] and report["amount_at_risk"] == 7_00
    assert report["trend"][0]["total"] == 3
    text = cli(capsys, "report", "--since", "2000-01-01", "--journal", str(day.path))
    assert "open: 1, amount at risk 7.00" in text
    later = json.loads(cli(capsys, "report", "--json", "--since", "2099-01-01", "--journal", str(day.path)))
    assert later["total"] == 0


def test_outbox_gets_only_finished_notices_with_masked_contact(day: Desk, tmp_path: Path) -> None:
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["incident-000001-wrong_card-corrected.txt"]
    assert oct(os.stat(files[0]).st_mode & 0o777) == "0o600"
    body = files[0].read_text(encoding="utf-8")
    assert "13800138000" not in body and VISA_PAN not in body and "*******8000" in body


def test_no_outbox_configured_sends_nothing(tmp_path: Path) -> None:
    with desk_for("iso87ascii", tmp_path) as desk:
        sale = desk.engine.sale(card(), 5_00)
        out = desk.run(FlowRequest("wrong_card", (sale.txn_id,), right_card=card(OTHER_PAN)))
        assert out.notice is not None and desk.policies.outbox is None
        assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.db", "journal.db-shm", "journal.db-wal"]
        assert build_report(desk.journal)["by_kind"] == {"wrong_card": 1}


@pytest.mark.parametrize("columns", COLUMNS)
def test_slips_fit_the_printer_with_cjk_double_width(columns: int) -> None:
    slip = render_slip("撤销凭条 VOID SLIP", [("卡号 Card", "476173******0119"), ("参考号 RRN", "318220000001"),
                                              ("金额", "CNY 100.00")],
                       ["撤销款项通常当天或下一个清算日退回您的账户。A void posts the same or the next clearing day."],
                       columns)
    lines = slip.splitlines()
    assert all(width(line) <= columns for line in lines)
    assert any(width(line) > columns - 4 for line in lines if "撤销款项" in line or "清算" in line)
    assert "318220000001" in slip


def test_cjk_counts_two_columns() -> None:
    assert width("撤销") == 4 and width("void") == 4
    assert wrap("撤销撤销撤销", 5) == ["撤销", "撤销", "撤销"]
    with pytest.raises(ValueError, match="printer width"):
        render_slip("x", [], [], 40)


def test_notice_texts_in_both_languages(tmp_path: Path) -> None:
    with desk_for("cup", tmp_path) as desk:
        sale = desk.engine.sale(card(), 12_00)
        desk.settle()
        out = desk.run(FlowRequest("wrong_amount", (sale.txn_id,), intended_amount=10_00))
        assert out.notice is not None and out.notice.posting == "refund"
        zh, en = out.notice.texts["zh"], out.notice.texts["en"]
        assert "金额错误" in zh and "1至10个清算日" in zh and "参考号 " + (sale.rrn or "") in zh
        assert "Wrong amount" in en and "CNY 12.00" in en and "CNY 2.00" in en and "476173******0119" in en
        assert all(width(line) <= 32 for line in out.notice.slips["zh"].splitlines())


def test_config_names_the_journal_and_journal_wins(day: Desk, capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    config = tmp_path / "posguard.toml"
    config.write_text(f'[journal]\npath = "{day.path}"\n')
    report = json.loads(cli(capsys, "report", "--json", "--config", str(config)))
    assert report["by_kind"] == {"duplicate_charge": 1, "unsigned": 1, "wrong_card": 1}
    rows = cli(capsys, "incidents", "--json", "--config", str(config)).splitlines()
    assert len(rows) >= 3 and all(json.loads(r)["id"] for r in rows)  # JSON Lines: one incident per line
    with pytest.raises(SystemExit, match=f"no journal at {tmp_path / 'other.db'}"):
        main(["report", "--config", str(config), "--journal", str(tmp_path / "other.db")])
    assert f"{day.path}: schema" in cli(capsys, "engine", "journal", "--config", str(config))
