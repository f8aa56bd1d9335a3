"""Funds not arrived, as the guide says (pos-flows.md §A), per dialect family through the real TCP host simulator:
an unbalanced settlement uploads the details and then sends nothing more; the acquirer's settlement report (made
by the simulator from its books) is compared with the journal both ways; only the customers concerned get a
notice; the batch's incident is raised once, across a restart, and closes only when a report matches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host.report import to_csv
from posguard.engine.journal import Journal
from posguard.flows import FlowPolicies
from posguard.incidents import get_incident, load_incidents
from posguard.iso8583.message import Message
from posguard.notices import local_time, terminal_zone
from posguard.service.till import Till
from tests.engine.conftest import OTHER_PAN, UNIONPAY_PAN, VISA_PAN, FreshCards, card
from tests.flows.conftest import TID, Desk

SECOND_UNIONPAY = "6217000000000001234"  # another UnionPay cardholder (Luhn-valid test number)
SHANGHAI = "Asia/Shanghai"


@dataclass
class Day:
    till: Till
    kept: str  # both sides hold it approved
    missing: str  # approved on the terminal; the acquirer's report will lack it
    declined: str  # the host booked it, the terminal heard 51
    reversed: str  # the terminal reversed it, the acquirer's books kept it
    settle_at: int  # index in till.sent where settlement began


def new_till(desk: Desk, tmp_path: Path, say: list[str] | None = None) -> Till:
    till = Till(desk.engine, dialect=desk.dialect, say=(say.append if say is not None else None),
                policies=FlowPolicies(outbox=str(tmp_path / "outbox"), timezone=SHANGHAI))
    till.presenter = FreshCards(  # each charge presents the card anew (a cryptogram is single-use)
        up1=lambda: card(SECOND_UNIONPAY, scheme="unionpay"), up2=lambda: card(UNIONPAY_PAN, scheme="unionpay"),
        visa=lambda: card(VISA_PAN), mc=lambda: card(OTHER_PAN, scheme="mastercard"))
    return till


def trading_day(desk: Desk, tmp_path: Path) -> Day:
    till = new_till(desk, tmp_path)
    kept = till.do("sale", card="up1", amount=10_00)
    missing = till.do("sale", card="visa", amount=20_00)
    desk.sim.add_fault("wrong_rc", rc="51", mti="0200")
    declined = till.do("sale", card="up2", amount=15_00)
    desk.sim.add_fault("no_response", mti="0200")
    gone = till.do("sale", card="mc", amount=7_00)
    assert (kept.state, missing.state, declined.state, declined.response_code, gone.state) == (
        "approved", "approved", "declined", "51", "reversed")
    # the acquirer's books kept the sale its (acknowledged) reversal should have undone
    [booked] = [e for e in desk.ledger(kind="sale") if e.amount == 7_00]
    assert booked.status == "reversed"
    booked.status = "approved"
    return Day(till, kept.txn_id, missing.txn_id, declined.txn_id, gone.txn_id, len(till.sent))


def wire(msgs: list[Message], dialect: str) -> list[tuple[str, str]]:
    """MTI and what the message is: CUP 60.3 (201 settlement, 205 chip detail, 202 batch end); ISO field 3."""
    return [(m.mti, str(m.get("60") or "")[8:11] if dialect == "cup" else str(m.get("3") or "")) for m in msgs]


def report_without(desk: Desk, rrn: str | None, path: Path) -> Path:
    """The acquirer's report from the simulator's books, less the row of ``rrn`` (the acquirer lacks it)."""
    text = to_csv(desk.sim.ledger, desk.dialect, TID)
    lines = [ln for ln in text.splitlines() if rrn is None or f",{rrn}," not in ln]
    path.write_text("\n".join(lines) + "\n")
    return path


def findings(journal: Journal, incident_id: int) -> list[tuple[str, str | None, str | None]]:
    steps = [json.loads(r["detail"]) for r in journal.flow_events(incident_id, outcome=False)]
    compared = [s for s in steps if s["step"].startswith("compare:")]
    return sorted((f["rule"], f["txn_id"], f["terminal_state"]) for f in compared[-1]["findings"])


def told(journal: Journal, incident_id: int) -> list[dict[str, Any]]:
    """The customer notices the flow journaled (and delivered) for its incident, in order."""
    steps = [json.loads(r["detail"]) for r in journal.flow_events(incident_id, outcome=False)]
    return [n for s in steps for n in s.get("notices", [])]


# -- item 1: send nothing more after the upload; both directions; only the customers concerned -----------------
def test_unbalanced_settlement_uploads_details_then_sends_nothing_more(desk: Desk, tmp_path: Path) -> None:
    day = trading_day(desk, tmp_path)
    day.till.do("settle")
    sent = wire(day.till.sent[day.settle_at:], desk.dialect)
    if desk.dialect == "cup":  # 0500 (201), a detail per approved sale (205 chip), the batch end (202)
        assert sent == [("0500", "201"), ("0320", "205"), ("0320", "205"), ("0320", "202")]
    else:  # 0500/920000 answered 95, a 0320 per approved sale, the closing 0500/960000
        assert sent == [("0500", "920000"), ("0320", "000000"), ("0320", "000000"), ("0500", "960000")]
    [inc] = [i for i in load_incidents(desk.journal) if i.kind == "unsettled"]
    assert (inc.status, inc.outcome) == ("open", "acquirer_contact_needed")
    assert inc.txn_ids == []  # no cardholder is named before the acquirer's report says who is concerned
    assert _findings_told(tmp_path) == []  # the automatic reversal's own notice is the till's, not the flow's
    # the next batch is empty and stays open: the flow did not settle it
    assert desk.journal.current_batch() == 2 and desk.journal.batch(2)["state"] == "open"  # type: ignore[index]
    # the tick and a second reconciliation send nothing either
    day.till.tick()
    day.till.reconcile(1)
    assert len(day.till.sent) == day.settle_at + 4


def test_the_report_import_names_both_directions_and_tells_only_those_customers(desk: Desk, tmp_path: Path) -> None:
    day = trading_day(desk, tmp_path)
    day.till.do("settle")
    after_settle = len(day.till.sent)
    missing_rrn = desk.journal.get_txn(day.missing).rrn
    report = report_without(desk, missing_rrn, tmp_path / "acquirer.csv")
    [inc] = day.till.do("reconcile", report=str(report))
    assert len(day.till.sent) == after_settle  # an import sends nothing
    assert inc.outcome == "acquirer_contact_needed"
    assert findings(desk.journal, inc.incident_id or 0) == sorted([
        ("approval_missing_at_host", day.missing, "settled"),
        ("host_booked_not_approved", day.declined, "declined"),
        ("host_booked_not_approved", day.reversed, "reversed"),
    ])
    # the notices: one per customer concerned, none for the customer both sides agree on
    files = _findings_told(tmp_path)
    notices = told(desk.journal, inc.incident_id or 0)
    assert len(files) == len(notices)  # each notice the flow journaled was delivered as one outbox file
    for n in notices:
        [text] = [f.read_text() for f in files if n["evidence"][0]["txn_id"] in f.name]
        assert n["texts"]["en"].rstrip() in text and n["texts"]["zh"].rstrip() in text
    assert sorted((n["kind"], n["evidence"][0]["txn_id"]) for n in notices) == sorted([
        ("unsettled_missing", day.missing), ("unsettled_charged", day.declined),
        ("unsettled_charged", day.reversed)])
    assert all(day.kept not in json.dumps(n) and "621700*********1234" not in json.dumps(n) for n in notices)
    declined = desk.journal.get_txn(day.declined)
    [booked] = [e for e in desk.ledger(kind="sale") if e.amount == 15_00]
    when = local_time(declined.created_at, terminal_zone(SHANGHAI))
    [charged] = [n for n in notices if n["evidence"][0]["txn_id"] == day.declined]
    assert charged["texts"]["en"] == (
        "Payment booked in error\n\nWe are sorry for the inconvenience.\nThe bank booked a payment the terminal "
        "showed as not completed. We have asked the acquirer to cancel it; if you were charged, the money is "
        "returned to your account.\n\nDone: reported to the acquirer for checking\n\n"
        f"[sale] Card 622848*********0018  Amount CNY 15.00  RRN {declined.rrn}  Auth code {booked.auth_code}  "
        f"Time {when}\n\n"
        "When: The acquirer corrects it in its settlement cycle, usually within 1 to 10 clearing days.\n")
    assert charged["texts"]["zh"] == (
        "交易入账核查通知\n\n非常抱歉给您带来不便。\n终端显示未成功的一笔交易已被银行入账。我们已请收单机构核查并撤销；"
        "如您已被扣款，款项将退回您的账户。\n\n处理结果：已提交收单机构核查\n\n"
        f"[消费] 卡号 622848*********0018  金额 ¥15.00  参考号 {declined.rrn}  授权码 {booked.auth_code}  "
        f"时间 {when}\n\n到账时间：收单机构核查后按其清算周期处理，通常需要1至10个清算日。\n")
    [late] = [n for n in notices if n["kind"] == "unsettled_missing"]
    assert late["texts"]["en"].splitlines()[3] == ("Your payment has not reached the bank yet. We are checking it "
                                                   "with the acquirer; it may show on your account later.")
    assert "476173******0127  Amount CNY 20.00" in late["texts"]["en"] and "¥20.00" in late["texts"]["zh"]
    # the merchant's list and the acquirer contact: batch, totals, flags, the list, the report's digest
    record = get_incident(desk.journal, inc.incident_id or 0)
    [contact] = [s for s in record.steps if s["name"].startswith("acquirer_contact:")]
    text = contact["detail"]
    assert "batch 1, terminal TERM0001" in text and "totals sent: 2 sale(s) CNY 30.00, 0 refund(s) CNY 0.00" in text
    assert f"report: {report} sha256 " in text
    assert f"approval_missing_at_host: {day.missing} sale" in text and f"rrn {missing_rrn}" in text
    assert f"host_booked_not_approved: {day.declined} sale" in text and "terminal declined rc 51, host approved" in text
    assert f"host_booked_not_approved: {day.reversed} sale" in text and "CNY 7.00; terminal reversed" in text
    if desk.dialect == "cup":  # sent: the Visa sale on the foreign side; the host booked the Mastercard one too
        assert "  of which foreign cards: 1 sale(s) CNY 20.00, 0 refund(s) CNY 0.00\n" in text
        assert "host's balance flags: domestic 2, foreign 2" in text
        assert "acquirer booked (foreign): 1 sale(s) CNY 7.00" in text  # the report lacks the Visa sale
    for pan in (UNIONPAY_PAN, VISA_PAN, OTHER_PAN, SECOND_UNIONPAY):
        assert pan not in json.dumps(record.to_dict()) + "".join(f.read_text() for f in files)


def test_the_incident_is_raised_once_across_a_restart_and_closes_when_a_report_matches(desk: Desk,
                                                                                        tmp_path: Path) -> None:
    day = trading_day(desk, tmp_path)
    day.till.do("settle")
    first = report_without(desk, None, tmp_path / "first.csv")
    [inc] = day.till.do("reconcile", report=str(first))
    desk.restart()
    said: list[str] = []
    till = new_till(desk, tmp_path, said)
    assert till.do("reconcile", report=str(first)) == [] and till.reconcile(1) is None  # the journal remembers
    assert said == [f"batch 1: reconciliation is incident {inc.incident_id} already (this report was compared)",
                    f"batch 1: reconciliation is incident {inc.incident_id} already"]
    assert [i.id for i in load_incidents(desk.journal) if i.kind == "unsettled"] == [inc.incident_id]
    assert get_incident(desk.journal, inc.incident_id or 0).status == "open"
    # the acquirer takes back the bookings the terminal never approved: its next report matches the journal
    for e in desk.ledger(kind="sale"):
        if e.amount in (15_00, 7_00):
            e.status = "reversed"
    second = report_without(desk, None, tmp_path / "second.csv")
    [again] = till.do("reconcile", report=str(second))
    assert again.incident_id == inc.incident_id and again.outcome == "reconciled"
    closed = get_incident(desk.journal, inc.incident_id or 0)
    assert (closed.status, closed.outcome) == ("closed", "reconciled")
    assert findings(desk.journal, inc.incident_id or 0) == []
    assert len(_findings_told(tmp_path)) == 2  # the first report's two findings: nobody told twice


# -- item 4: CUP balance flags per card organisation ----------------------------------------------------------
@pytest.mark.parametrize("desk", ["cup"], indirect=True)
def test_cup_totals_are_split_by_card_organisation_and_each_side_is_flagged(desk: Desk, tmp_path: Path) -> None:
    till = new_till(desk, tmp_path)
    till.do("sale", card="up1", amount=10_00)
    till.do("sale", card="visa", amount=20_00)
    till.do("sale", card="mc", amount=5_00)
    desk.sim.add_fault("wrong_rc", rc="51", mti="0200")
    declined = till.do("sale", card="visa", amount=3_00)  # a foreign card the host booked
    start = len(till.sent)
    result = desk.engine.settle()
    f48 = str(till.sent[start]["48"])
    # domestic: 1 sale 10.00; foreign: 2 sales 25.00; flags 0 in the request
    assert f48 == "000000001000001000000000000000" + "0" + "000000002500002000000000000000" + "0"
    assert result.flags == {"domestic": "1", "foreign": "2"} and result.unbalanced_sides == ("foreign",)
    assert not result.balanced and result.uploaded == 3
    [settlement] = desk.ledger(kind="settlement")
    assert settlement.note == "unbalanced: foreign differ from the books"
    approvals = [m for m in till.sent[:start] if m.mti == "0200"]
    assert len(approvals) == 4
    assert desk.journal.batch(1)["host_result"] == "unbalanced rc=00 flag=1 foreign=2"  # type: ignore[index]
    assert declined is not None and declined.response_code == "51"


@pytest.mark.parametrize("desk", ["cup"], indirect=True)
def test_cup_unionpay_and_foreign_cards_balance_on_their_own_sides(desk: Desk, tmp_path: Path) -> None:
    till = new_till(desk, tmp_path)
    till.do("sale", card="up1", amount=10_00)
    till.do("sale", card="visa", amount=20_00)
    result = desk.engine.settle()
    assert result.balanced and result.flags == {"domestic": "1", "foreign": "1"}
    # the host answers each sale's card organisation in field 63
    orgs = [str(e.card_org) for e in desk.ledger(kind="sale")]
    assert orgs == ["CUP", "VIS"]


def test_a_balanced_batch_whose_report_agrees_raises_nothing_and_a_booking_unknown_to_the_terminal_is_named(
        desk: Desk, tmp_path: Path) -> None:
    said: list[str] = []
    till = new_till(desk, tmp_path, said)
    till.do("sale", card="up1", amount=10_00)
    till.do("settle")
    agreeing = report_without(desk, None, tmp_path / "agreeing.csv")
    assert till.do("reconcile", report=str(agreeing)) == []
    assert said[-1] == "batch 1: the acquirer's report and the journal agree"
    assert [i for i in load_incidents(desk.journal) if i.kind == "unsettled"] == []
    # the acquirer's next report holds a booking the terminal never made (another terminal's sale booked here)
    lines = agreeing.read_text().splitlines()
    extra = lines[-1].split(",")
    extra[2], extra[3], extra[4], extra[7] = "000777", "999999000777", "777777", "4400"
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("\n".join([*lines, ",".join(extra)]) + "\n")
    [inc] = till.do("reconcile", report=str(unknown))
    assert inc.outcome == "acquirer_contact_needed"
    assert findings(desk.journal, inc.incident_id or 0) == [("host_booked_unknown", None, None)]
    record = get_incident(desk.journal, inc.incident_id or 0)
    [compared] = [s for s in record.steps if s["name"].startswith("compare:")]
    batch = "1" if desk.dialect == "cup" else "-"  # ISO dialects carry no batch number to the host
    assert (f"host_booked_unknown: (not in the journal; report line 4) sale stan 777 rrn 999999000777 batch {batch} "
            "card 621700*********1234 CNY 44.00; terminal -, host approved") in compared["detail"]


@pytest.mark.parametrize("point", ["flow.after:compare", "flow.after:notify_customers"])
def test_a_crash_during_the_comparison_resumes_and_tells_each_customer_once(desk: Desk, tmp_path: Path,
                                                                           point: str) -> None:
    from posguard.engine.acquirer_report import load_report
    from posguard.flows import FlowRequest
    from posguard.flows.base import FlowCrash

    day = trading_day(desk, tmp_path)
    desk.engine.settle()  # the engine alone: no incident yet
    report = load_report(report_without(desk, desk.journal.get_txn(day.missing).rrn, tmp_path / "acquirer.csv"))
    desk.policies = FlowPolicies(outbox=str(tmp_path / "outbox"), timezone=SHANGHAI)
    desk.crash_at = f"{point}:{report.digest[:16]}"
    with pytest.raises(FlowCrash):
        desk.run(FlowRequest("unsettled", batch_no=1, settlement_report=report))
    iid = desk.open_incident()
    desk.restart()
    out = desk.resume(iid, FlowRequest("unsettled", settlement_report=report))
    assert out.outcome == "acquirer_contact_needed" and len(desk.wire(out)) == 0
    assert sorted(f["rule"] for f in [json.loads(r["detail"]) for r in desk.journal.flow_events(iid, outcome=False)
                                      if json.loads(r["detail"])["step"].startswith("compare:")][-1]["findings"]) == [
        "approval_missing_at_host", "host_booked_not_approved", "host_booked_not_approved"]
    told = [json.loads(r["detail"]) for r in desk.journal.flow_events(iid, outcome=False)
            if json.loads(r["detail"])["step"].startswith("notify_customers:")]
    assert [t["count"] for t in told] == [3]  # each customer concerned, told once across the crash
    assert len(_findings_told(tmp_path)) == 3


def _findings_told(tmp_path: Path) -> list[Path]:
    """The customer notices the unsettled flow wrote to the outbox (not the till's automatic-reversal notices, nor
    the merchant's list beside them)."""
    outbox = tmp_path / "outbox"
    return sorted(p for p in outbox.glob("incident-*") if "-merchant-" not in p.name) if outbox.exists() else []
