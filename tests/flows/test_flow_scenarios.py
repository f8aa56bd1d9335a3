"""Issue 13 "Proof": per flow and per dialect family (CUP, and the international iso87ascii), a scenario driven
through the till — as the service drives it — against the real TCP host simulator, asserting:

* the **exact wire** as the host received it: the simulator decodes every request with pyiso8583
  (``sim.received``, PAN masked), so MTIs, processing codes, amounts, 11/37/38 and the dialect's linking fields
  (CUP 60.1 type / 60.2 batch / 60.3 network code, 61 original batch+trace[+MMDD]; ISO 90 original data
  elements) are checked against pos-flows.md (B) and the original transaction's own wire;
* the **journal** states of every leg;
* the **incident**: kind, rule, outcome, steps/evidence (``posguard incidents show``);
* the **notice** text in both languages, as written to the outbox.

Expected values come from the reference (message table) and from the original's own journal row and wire
(STAN, RRN, auth code, batch, date), never from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from posguard.flows import FlowPolicies
from posguard.incidents import get_incident, load_incidents
from posguard.service.till import Till
from tests.engine.conftest import OTHER_PAN, VISA_PAN, FreshCards, card
from tests.flows.conftest import DIALECTS, Desk, desk_for

Doc = dict[str, str]
VISA_MASKED = "476173******0127"
OTHER_MASKED = "541333******0442"
ZONE = "Asia/Shanghai"

#: pos-flows.md (B): MTI, processing code and CUP 60.1 per transaction kind and dialect family
#: (CUP transaction table [CUPdoc]; international: PAX [MAB] — void 0200/020000, refund 0200/200000, 0500/920000)
TABLE: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "cup": {"sale": ("0200", "000000", "22"), "void": ("0200", "200000", "23"), "refund": ("0220", "200000", "25"),
            "settle": ("0500", "000000", "00")},
    "iso87ascii": {"sale": ("0200", "000000", None), "void": ("0200", "020000", None),
                   "refund": ("0200", "200000", None), "settle": ("0500", "920000", None)},
}


@pytest.fixture(params=DIALECTS)
def till(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Till]:
    policies = FlowPolicies(outbox=str(tmp_path / "outbox"), timezone=ZONE)
    with desk_for(request.param, tmp_path) as desk:
        t = Till(desk.engine, dialect=desk.dialect, policies=policies)
        # each charge presents the card anew (a fresh read: a cryptogram is single-use)
        t.presenter = FreshCards(visa=card, other=lambda: card(OTHER_PAN), sig=lambda: card(signature=True))
        t.supervisor = "S01"  # the service sets it once the supervisor's credential was checked
        t.desk = desk  # type: ignore[attr-defined]
        yield t


def desk_of(till: Till) -> Desk:
    desk = till.desk  # type: ignore[attr-defined]
    assert isinstance(desk, Desk)
    return desk


def wire(desk: Desk) -> list[Doc]:
    """What the host received, decoded by the simulator with pyiso8583, in arrival order."""
    return list(desk.sim.received)


def kind_of(desk: Desk, doc: Doc) -> tuple[str, str | None]:
    return doc["t"], doc.get("3")


def check_leg(desk: Desk, doc: Doc, kind: str, *, amount: int, batch: int, original: Doc | None = None,
              original_batch: int = 1, with_date: bool = False) -> None:
    """One request against the reference table and, for a void/refund, against the original's own wire."""
    mti, proc, type60 = TABLE[desk.dialect][kind]
    assert (doc["t"], doc["3"], doc["4"]) == (mti, proc, f"{amount:012d}"), doc
    if desk.dialect == "cup":  # 60: type n2, batch n6, network code n3
        assert (doc["60"][:2], doc["60"][2:8], doc["60"][8:11]) == (type60, f"{batch:06d}", "000"), doc
    else:
        assert "60" not in doc and "61" not in doc
    if original is None:
        assert "37" not in doc and "61" not in doc
        return
    txn = desk.journal.find_txns("stan = ? AND kind IN ('sale', 'void')", (int(original["11"]),))[0]
    assert (doc["37"], doc["38"]) == (txn.rrn, txn.auth_code)  # 37/38 of the original
    if desk.dialect == "cup":  # 61: original batch + trace (+ MMDD for a refund: the host's date of the original,
        # the 13 of its answer, emv-keys.md F — not the terminal's own date)
        answer = [m for m in desk.sim.sent if m.get("11") == original["11"] and m["t"] == "0210"][0]
        assert doc["61"] == f"{original_batch:06d}{original['11']}" + (answer["13"] if with_date else "")


def outbox_text(desk: Desk, name: str) -> str:
    return (desk.path.parent / "outbox" / name).read_text(encoding="utf-8")


def check_notice(text: str, title: tuple[str, str], done: tuple[str, str], when: tuple[str, str]) -> None:
    """Both languages, each with its title, what was done and when the money shows; no full PAN."""
    zh, en = text.split("[English]")
    assert title[0] in zh and f"处理结果：{done[0]}" in zh and f"到账时间：{when[0]}" in zh
    assert title[1] in en and f"Done: {done[1]}" in en and f"When: {when[1]}" in en
    assert VISA_PAN not in text and OTHER_PAN not in text


# -- reversal ---------------------------------------------------------------------------------------------------
def test_reversal_of_an_unanswered_sale(till: Till) -> None:
    desk = desk_of(till)
    desk.sim.add_fault("no_response", mti="0200")
    sale = till.do("sale", card="visa", amount=10_00)
    assert sale is not None
    s, rev = wire(desk)
    check_leg(desk, s, "sale", amount=10_00, batch=1)
    assert (rev["t"], rev["3"], rev["4"]) == ("0400", "000000", "000000001000")
    if desk.dialect == "cup":  # CUP reversals reuse the original STAN and carry the reason in 39 (98 timeout)
        assert (rev["11"], rev["39"], rev["60"]) == (s["11"], "98", s["60"])
    else:  # ISO: a STAN of its own; 90 = original MTI + STAN + transmission date/time + acquirer + forwarder ids
        assert rev["11"] != s["11"] and rev["90"] == "0200" + s["11"] + s["7"] + "0" * 22
    assert desk.journal.get_txn(sale.txn_id).state == "reversed"
    (report,) = till.incidents
    assert (report.kind, report.rule, report.outcome, report.mtis) == ("reversal", "outcome_unknown", "reversed",
                                                                       ["0400"])
    assert [i.kind for i in load_incidents(desk.journal)] == ["outcome_unknown"]
    text = outbox_text(desk, f"txn-{sale.txn_id}-reversal.txt")
    check_notice(text, ("交易冲正通知", "Payment reversed"), ("已冲正", "reversed"),
                 ("冲正后的预留金额由发卡行释放，通常需要几天。",
                  "The hold from a reversed charge is released by your card issuer, usually within days."))
    assert f"[原交易] 卡号 {VISA_MASKED}  金额 ¥10.00" in text and f"[original] Card {VISA_MASKED}  Amount CNY 10.00" in text


# -- duplicate ----------------------------------------------------------------------------------------------------
def test_duplicate_of_one_order_voids_the_extra_leg(till: Till) -> None:
    desk = desk_of(till)
    first = till.do("sale", card="visa", amount=42_00, order="O-7")
    extra = till.do("sale", card="visa", amount=42_00, order="O-7")
    assert first is not None and extra is not None
    a, b, void = wire(desk)
    check_leg(desk, a, "sale", amount=42_00, batch=1)
    check_leg(desk, b, "sale", amount=42_00, batch=1)
    check_leg(desk, void, "void", amount=42_00, batch=1, original=b)
    assert void["37"] == extra.rrn
    states = {t.id: (t.kind, t.state) for t in desk.journal.find_txns()}
    assert states[first.txn_id] == ("sale", "approved") and states[extra.txn_id] == ("sale", "voided")
    assert sorted(states.values()) == [("sale", "approved"), ("sale", "voided"), ("void", "approved")]
    (report,) = till.incidents
    assert (report.kind, report.rule, report.outcome, report.mtis) == ("duplicate_charge",
                                                                       "same_order_reference", "voided",
                                                                       ["0200"])
    inc = get_incident(desk.journal, report.incident_id or 0)
    assert inc.status == "closed" and [s["name"] for s in inc.steps] == ["check_legs", "classify", "flush_queue",
                                                                         "void_extra_leg"]
    assert "duplicate_order" in inc.steps[1]["detail"] and inc.steps[3]["rc"] == "00"
    text = outbox_text(desk, f"incident-{inc.id:06d}-duplicate_charge-voided.txt")
    check_notice(text, ("重复扣款处理通知", "Duplicate charge"), ("已撤销", "voided"),
                 ("撤销款项通常当天或下一个清算日退回您的账户。", "A void posts the same or the next clearing day."))
    assert f"参考号 {extra.rrn}" in text and f"RRN {extra.rrn}" in text


# -- void mismatch ----------------------------------------------------------------------------------------------
def test_a_void_undone_by_its_reversal_is_voided_again(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="visa", amount=60_00)
    assert sale is not None
    void = till.do("void", txn=sale.txn_id)
    assert void is not None
    desk.engine.reverse(void.txn_id)  # the void's reversal was accepted: the charge stands again
    till.do("dispute", txn=sale.txn_id)
    s, v, rev, again = wire(desk)
    check_leg(desk, s, "sale", amount=60_00, batch=1)
    check_leg(desk, v, "void", amount=60_00, batch=1, original=s)
    assert (rev["t"], rev["3"], rev["37"]) == ("0400", TABLE[desk.dialect]["void"][1], void.rrn)
    if desk.dialect == "cup":
        assert (rev["11"], rev["39"], rev["60"][:2], rev["61"]) == (v["11"], "06", "23", v["61"])
    else:
        assert rev["90"] == "0200" + v["11"] + v["7"] + "0" * 22
    check_leg(desk, again, "void", amount=60_00, batch=1, original=s)
    states = [(t.kind, t.state) for t in desk.journal.find_txns()]
    assert states == [("sale", "voided"), ("void", "reversed"), ("void", "approved")]
    (report,) = till.incidents
    assert (report.kind, report.rule, report.outcome) == ("void_mismatch", "void_undone_by_reversal", "voided")
    inc = get_incident(desk.journal, report.incident_id or 0)
    assert inc.operator == "supervisor S01" and "the void was undone" in inc.steps[0]["detail"]
    text = outbox_text(desk, f"incident-{inc.id:06d}-void_mismatch-voided.txt")
    check_notice(text, ("撤销交易查询结果", "Void enquiry"), ("已撤销", "voided"),
                 ("撤销款项通常当天或下一个清算日退回您的账户。", "A void posts the same or the next clearing day."))


# -- wrong amount -----------------------------------------------------------------------------------------------
def test_overcharge_before_settlement_is_voided_and_charged_again(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="visa", amount=120_00)
    assert sale is not None
    till.do("wrong_amount", txn=sale.txn_id, amount=100_00)
    s, void, resale = wire(desk)
    check_leg(desk, s, "sale", amount=120_00, batch=1)
    check_leg(desk, void, "void", amount=120_00, batch=1, original=s)  # CUP voids are full [UPdemo]
    check_leg(desk, resale, "sale", amount=100_00, batch=1)
    assert [(t.kind, t.state, t.amount_minor) for t in desk.journal.find_txns()] == [
        ("sale", "voided", 120_00), ("void", "approved", 120_00), ("sale", "approved", 100_00)]
    (report,) = till.incidents
    assert (report.kind, report.rule, report.outcome, report.mtis) == ("wrong_amount", "customer_claim",
                                                                       "corrected", ["0200", "0200"])
    text = outbox_text(desk, f"incident-{report.incident_id:06d}-wrong_amount-corrected.txt")
    check_notice(text, ("金额错误处理通知", "Wrong amount"), ("已更正", "corrected"),
                 ("撤销款项通常当天或下一个清算日退回您的账户。", "A void posts the same or the next clearing day."))
    assert "¥120.00" in text and "¥100.00" in text and "CNY 100.00" in text


def test_each_reversal_incident_carries_its_own_reversal_only(till: Till) -> None:
    """Finding "the incident of a reversed sale showed the reversal of the sale before it": two sales in a row
    answered with garbage, each reversed; the second one's incident (the operator's answer, the log line and the
    capture's evidence) listed the first sale's 0400 as well ("messages: 0400 0400")."""
    desk = desk_of(till)
    desk.sim.add_fault("garbage", mti="0200", times=2)
    first = till.do("sale", card="visa", amount=10_00)
    second = till.do("sale", card="visa", amount=11_00)
    assert first is not None and second is not None
    assert [desk.journal.get_txn(t.txn_id).state for t in (first, second)] == ["reversed", "reversed"]
    reports = [r for r in till.incidents if r.rule == "outcome_unknown"]
    assert [r.transactions for r in reports] == [[first.txn_id], [second.txn_id]]
    assert [r.mtis for r in reports] == [["0400"], ["0400"]]
    assert [len(r.messages) for r in reports] == [1, 1]


def test_overcharge_after_settlement_is_partly_refunded(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="visa", amount=120_00)
    assert sale is not None
    till.do("settle")
    till.do("wrong_amount", txn=sale.txn_id, amount=100_00)
    docs = wire(desk)
    s, refund = docs[0], docs[-1]
    settle = [kind_of(desk, d) for d in docs[1:-1]]
    if desk.dialect == "cup":  # 0500 (60.3 201), balanced: TC upload 0320 (203), batch end 0320 (207) [OP]
        assert settle == [("0500", "000000"), ("0320", "000000"), ("0320", None)]
        assert [d["60"][8:11] for d in docs[1:-1]] == ["201", "203", "207"]
    else:
        assert settle == [("0500", "920000")]
    check_leg(desk, refund, "refund", amount=20_00, batch=2, original=s, with_date=True)
    original = desk.journal.get_txn(sale.txn_id)
    assert (original.state, original.refunded_minor) == ("refunded_partial", 20_00)
    (report,) = till.incidents
    assert (report.kind, report.outcome, report.mtis) == ("wrong_amount", "refunded", [refund["t"]])
    text = outbox_text(desk, f"incident-{report.incident_id:06d}-wrong_amount-refunded.txt")
    check_notice(text, ("金额错误处理通知", "Wrong amount"), ("已退货", "refunded"),
                 ("退货款项通常在1至10个清算日内退回您的账户。", "A refund takes 1 to 10 clearing days to show on your account."))
    assert "[退货]" in text and "¥20.00" in text and "[refund]" in text and "CNY 20.00" in text


# -- wrong card ------------------------------------------------------------------------------------------------
def test_wrong_card_before_settlement_voids_and_charges_the_right_card(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="visa", amount=50_00)
    assert sale is not None
    till.do("wrong_card", txn=sale.txn_id, card="other")
    s, void, resale = wire(desk)
    check_leg(desk, s, "sale", amount=50_00, batch=1)
    check_leg(desk, void, "void", amount=50_00, batch=1, original=s)
    check_leg(desk, resale, "sale", amount=50_00, batch=1)
    assert (void["2"], resale["2"]) == (VISA_MASKED, OTHER_MASKED)  # the void on the wrong card, the sale on the right
    assert [(t.kind, t.state, t.pan_masked) for t in desk.journal.find_txns()] == [
        ("sale", "voided", VISA_MASKED), ("void", "approved", VISA_MASKED), ("sale", "approved", OTHER_MASKED)]
    (report,) = till.incidents
    assert (report.kind, report.rule, report.outcome) == ("wrong_card", "customer_claim", "corrected")
    text = outbox_text(desk, f"incident-{report.incident_id:06d}-wrong_card-corrected.txt")
    check_notice(text, ("刷错卡处理通知", "Wrong card charged"), ("已更正", "corrected"),
                 ("撤销款项通常当天或下一个清算日退回您的账户。", "A void posts the same or the next clearing day."))
    assert VISA_MASKED in text and OTHER_MASKED in text


def test_wrong_card_after_settlement_refunds_and_charges_the_right_card(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="visa", amount=50_00)
    assert sale is not None
    till.do("settle")
    till.do("wrong_card", txn=sale.txn_id, card="other")
    docs = wire(desk)
    s, refund, resale = docs[0], docs[-2], docs[-1]
    check_leg(desk, refund, "refund", amount=50_00, batch=2, original=s, with_date=True)
    check_leg(desk, resale, "sale", amount=50_00, batch=2)
    assert (refund["2"], resale["2"]) == (VISA_MASKED, OTHER_MASKED)
    assert [(t.kind, t.state) for t in desk.journal.find_txns()] == [("sale", "refunded"), ("refund", "approved"),
                                                                      ("sale", "approved")]
    (report,) = till.incidents
    assert (report.kind, report.outcome, report.mtis) == ("wrong_card", "corrected", [refund["t"], "0200"])
    text = outbox_text(desk, f"incident-{report.incident_id:06d}-wrong_card-corrected.txt")
    check_notice(text, ("刷错卡处理通知", "Wrong card charged"), ("已更正", "corrected"),
                 ("退货款项通常在1至10个清算日内退回您的账户。", "A refund takes 1 to 10 clearing days to show on your account."))


# -- unsigned ------------------------------------------------------------------------------------------------------
def test_unsigned_follow_up_then_voided_with_consent(till: Till) -> None:
    desk = desk_of(till)
    sale = till.do("sale", card="sig", amount=20_00)
    assert sale is not None and sale.state == "signature_pending"
    till.do("signature_refused", txn=sale.txn_id, contact="phone:13912345678")
    assert len(wire(desk)) == 1  # a follow-up sends nothing
    till.do("unsigned_void", txn=sale.txn_id)
    s, void = wire(desk)
    check_leg(desk, s, "sale", amount=20_00, batch=1)
    check_leg(desk, void, "void", amount=20_00, batch=1, original=s)
    assert [(t.kind, t.state) for t in desk.journal.find_txns()] == [("sale", "voided"), ("void", "approved")]
    opened, voided = till.incidents
    assert opened.incident_id == voided.incident_id  # one incident per sale
    assert (opened.kind, opened.rule, opened.outcome, opened.mtis) == ("unsigned", "signature_refused", "follow_up",
                                                                       [])
    assert (voided.rule, voided.outcome, voided.mtis) == ("follow_up", "voided", ["0200"])
    inc = get_incident(desk.journal, voided.incident_id or 0)
    assert (inc.kind, inc.status, inc.outcome) == ("unsigned", "closed", "voided")
    assert inc.evidence["contact"] == "phone *******5678" and "follow_up_deadline" in inc.evidence
    assert [s["name"] for s in inc.steps] == ["check_signature", "follow_up_opened", "customer_consent",
                                              "void_unsigned"]
    ask = outbox_text(desk, f"incident-{inc.id:06d}-unsigned-follow_up.txt")
    check_notice(ask, ("签名补录通知", "Signature"), ("请您补签：请回到商户签名，或回复商户的联系",
                                                    "please sign: come back to the merchant, or answer the merchant's "
                                                    "call or e-mail"),
                 ("本次无需退款。", "No money needs to be returned."))
    assert "to: phone *******5678" in ask and "13912345678" not in ask
    done = outbox_text(desk, f"incident-{inc.id:06d}-unsigned-voided.txt")
    check_notice(done, ("签名补录通知", "Signature"), ("已撤销", "voided"),
                 ("撤销款项通常当天或下一个清算日退回您的账户。", "A void posts the same or the next clearing day."))
    assert [i.kind for i in load_incidents(desk.journal)] == ["unsigned"]


def test_unsigned_signed_later_sends_nothing(till: Till, tmp_path: Path) -> None:
    desk = desk_of(till)
    till.policies = FlowPolicies(outbox=str(tmp_path / "outbox"), timezone=ZONE,
                                 signature_dir=str(tmp_path / "signatures"))
    sale = till.do("sale", card="sig", amount=20_00)
    assert sale is not None
    desk.clock.advance(desk.engine.policies.signature_deadline + 1)
    till.tick()  # the deadline: the sale's incident and its follow-up
    pad = tmp_path / "pad.png"
    pad.write_bytes(b"\x89PNG strokes")
    till.do("sign", txn=sale.txn_id, esig=str(pad))
    (s,) = wire(desk)
    check_leg(desk, s, "sale", amount=20_00, batch=1)
    assert desk.journal.get_txn(sale.txn_id).state == "signed"
    deadline, signed = till.incidents
    assert (deadline.rule, deadline.outcome, signed.rule, signed.outcome) == (
        "signature_deadline", "follow_up", "signature_captured", "signed_later")
    assert deadline.incident_id == signed.incident_id and signed.mtis == []
    inc = get_incident(desk.journal, signed.incident_id or 0)
    assert Path(inc.evidence["e_signature_path"]).read_bytes() == pad.read_bytes()
    check_notice(outbox_text(desk, f"incident-{inc.id:06d}-unsigned-signed_later.txt"), ("签名补录通知", "Signature"),
                 ("已补签", "signed afterwards"), ("本次无需退款。", "No money needs to be returned."))
