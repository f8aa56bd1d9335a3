"""Unsigned per guide 004 through the till (as the service drives it), on the real host simulator and a virtual
clock: one incident per sale whose state moves, the follow-up task (sealed contact, deadline, outcomes), the
e-signature evidence, escalation of a system fault, statistics counted once; plus the operator override of a
duplicate and the reversal notice delivered to the outbox."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from posguard.flows import FlowPolicies
from posguard.flows.unsigned_follow_up import (
    ContactError,
    SignatureFileError,
    follow_ups,
    parse_contact,
    store_signature,
)
from posguard.incidents import get_incident, load_incidents, render_incident
from posguard.report import build_report, render_report
from posguard.service.commands import CommandError, parse
from posguard.service.till import Till
from tests.engine.conftest import VISA_PAN, FreshCards, card
from tests.flows.conftest import DIALECTS, Desk, desk_for

PHONE = "13912345678"


def till_for(desk: Desk, tmp_path: Path) -> Till:
    policies = FlowPolicies(signature_dir=str(tmp_path / "data" / "signatures"), outbox=str(tmp_path / "data" /
                                                                                             "outbox"))
    till = Till(desk.engine, dialect=desk.dialect, policies=policies)
    till.presenter = FreshCards(c1=lambda: card(signature=True), c2=card)  # a fresh read per charge
    return till


def unsigned_incidents(desk: Desk) -> list[int]:
    return [i.id for i in load_incidents(desk.journal) if i.kind == "unsigned"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_deadline_and_refusal_are_one_incident_then_signed_later_with_evidence(dialect: str,
                                                                               tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=88_00)
        assert sale is not None and sale.state == "signature_pending"
        desk.clock.advance(desk.engine.policies.signature_deadline + 1)
        till.tick()  # the deadline detector opens the sale's incident and its follow-up
        (iid,) = unsigned_incidents(desk)
        assert get_incident(desk.journal, iid).outcome == "follow_up"
        till.do("signature_refused", txn=sale.txn_id, contact=f"phone:{PHONE}")  # the operator's claim: same one
        till.do("unsigned_contacted", txn=sale.txn_id)
        assert unsigned_incidents(desk) == [iid]
        inc = get_incident(desk.journal, iid)
        assert inc.status == "open" and inc.evidence["contact"] == "phone *******5678"
        assert inc.evidence["contacted"] == 1 and "follow_up_deadline" in inc.evidence
        # the customer comes back and signs on the pad (补签): the file is kept, its hash is the evidence
        pad_file = tmp_path / "pad-export.png"
        pad_file.write_bytes(b"\x89PNG signature strokes 0001")
        till.do("sign", txn=sale.txn_id, esig=str(pad_file))
        inc = get_incident(desk.journal, iid)
        digest = hashlib.sha256(pad_file.read_bytes()).hexdigest()
        assert (inc.status, inc.outcome) == ("closed", "signed_later")
        assert inc.evidence["e_signature_sha256"] == digest
        stored = Path(inc.evidence["e_signature_path"])
        assert stored.read_bytes() == pad_file.read_bytes() and oct(stored.stat().st_mode & 0o777) == "0o600"
        assert stored.parent == tmp_path / "data" / "signatures" and stored.name.startswith(sale.txn_id)
        assert desk.journal.get_txn(sale.txn_id).state == "signed"
        assert unsigned_incidents(desk) == [iid]
        report = build_report(desk.journal)
        assert report["by_kind"] == {"unsigned": 1} and report["unsigned"] == {"signed_later": 1}
        assert report["open_closed"]["closed"] == 1 and report["open_closed"]["open"] == 0
        shown = render_incident(inc)
        assert f"e signature sha256: {digest}" in shown and "contact: phone *******5678" in shown
        assert "follow_up_opened: done" in shown and "store_e_signature: done" in shown
        # the contact is kept sealed: never in clear in the journal, its evidence or the outbox
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
        assert PHONE.encode() not in raw and VISA_PAN.encode() not in raw
        notices = sorted(p.name for p in (tmp_path / "data" / "outbox").iterdir())
        assert notices == [f"incident-{iid:06d}-unsigned-follow_up.txt", f"incident-{iid:06d}-unsigned-signed_later.txt"]
        ask = (tmp_path / "data" / "outbox" / notices[0]).read_text(encoding="utf-8")
        assert "请您补签" in ask and "please sign" in ask and "to: phone *******5678" not in ask  # given later
        assert PHONE not in ask and VISA_PAN not in ask and "476173******0127" in ask


def test_follow_up_past_its_deadline_is_kept_at_the_merchants_risk(tmp_path: Path) -> None:
    # the follow-up runs past a day: this acquirer keeps a sign-on's keys for a week (the keyless desk cannot
    # renew them; renewal by key age is proven in tests/integration/test_keys_mac_with_host_sim.py)
    with desk_for("cup", tmp_path, sim_config={"key_life": 7 * 24 * 3600.0}) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=30_00)
        assert sale is not None
        till.do("signature_refused", txn=sale.txn_id, contact="email:li.lei@example.cn")
        (iid,) = unsigned_incidents(desk)
        (task,) = follow_ups(desk.journal)
        assert task.open and task.contact == "email l***@example.cn"
        assert task.deadline == pytest.approx(desk.clock.now() + FlowPolicies().follow_up_deadline)
        desk.clock.advance(FlowPolicies().follow_up_deadline - 60)
        till.tick()
        assert get_incident(desk.journal, iid).outcome == "follow_up"
        desk.clock.advance(120)
        till.tick()
        inc = get_incident(desk.journal, iid)
        assert (inc.status, inc.outcome) == ("closed", "kept_at_merchant_risk") and "deadline passed" in inc.reason
        till.tick()
        assert unsigned_incidents(desk) == [iid] and [e.status for e in desk.ledger(kind="sale")] == ["approved"]
        desk.settle()  # the batch closes with the sale unsigned: still the same incident, still kept
        assert unsigned_incidents(desk) == [iid]
        assert get_incident(desk.journal, iid).outcome == "kept_at_merchant_risk"
        assert build_report(desk.journal)["unsigned"] == {"kept_at_merchant_risk": 1}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_voided_with_the_customers_consent_by_a_supervisor(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=45_00)
        assert sale is not None
        till.do("signature_refused", txn=sale.txn_id)
        (iid,) = unsigned_incidents(desk)
        refused = till.do("unsigned_void", txn=sale.txn_id)  # no supervisor: nothing is sent, still open
        assert refused is None and len(desk.ledger()) == 1
        assert get_incident(desk.journal, iid).status == "open"
        till.supervisor = "S01"
        till.do("unsigned_void", txn=sale.txn_id)
        inc = get_incident(desk.journal, iid)
        assert (inc.status, inc.outcome) == ("closed", "voided") and inc.operator == "supervisor S01"
        assert [e.status for e in desk.ledger(kind="sale")] == ["voided"]
        assert [s["name"] for s in inc.steps][-2:] == ["customer_consent", "void_unsigned"]
        assert unsigned_incidents(desk) == [iid]


def test_a_signature_pad_fault_is_escalated_to_the_bank(tmp_path: Path) -> None:
    with desk_for("iso87ascii", tmp_path) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=12_00)
        assert sale is not None
        till.do("unsigned_escalate", txn=sale.txn_id)
        (iid,) = unsigned_incidents(desk)
        inc = get_incident(desk.journal, iid)
        assert inc.status == "open" and inc.cause == "device_fault"
        assert "escalated to the acquiring bank" in inc.evidence["escalated_to_bank"]
        assert f"STAN {sale.stan}" in inc.evidence["escalated_to_bank"]
        till.do("sign", txn=sale.txn_id, paper=True)  # then re-signed on paper, the operator confirming
        inc = get_incident(desk.journal, iid)
        assert inc.outcome == "signed_later" and inc.evidence["paper_signature_confirmed_by"] == "operator"
        assert "unsigned sales: signed_later 1" in render_report(build_report(desk.journal))


def test_a_normal_signature_opens_no_incident_and_the_pad_file_is_checked(tmp_path: Path) -> None:
    with desk_for("cup", tmp_path) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=10_00)
        assert sale is not None
        assert till.do("sign", txn=sale.txn_id, esig=str(tmp_path / "missing.png")) is None
        assert till.refusal is not None and "missing.png: cannot read it" in till.refusal
        assert till.do("sign", txn=sale.txn_id) is not None and unsigned_incidents(desk) == []


def test_a_mistyped_contact_is_refused_to_be_given_again_not_an_incident_ended_refused(tmp_path: Path) -> None:
    """The operator (or a capture's op record, which reaches the till without the service's command parser)
    gives a contact that is no phone number: refused at once, saying why, and nothing recorded; given again
    rightly, the unsigned incident opens for follow-up (it ended "refused" with the contact mistyped)."""
    with desk_for("cup", tmp_path) as desk:
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c1", amount=10_00)
        assert sale is not None
        assert till.do("signature_refused", txn=sale.txn_id, contact="phone:abc") is None
        assert till.refusal is not None and "6 to 20 digits" in till.refusal
        assert till.incidents == [] and unsigned_incidents(desk) == []
        till.do("signature_refused", txn=sale.txn_id, contact=f"phone:{PHONE}")
        assert [(i.kind, i.outcome) for i in till.incidents] == [("unsigned", "follow_up")]


def test_evidence_never_carries_card_data_and_contacts_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SignatureFileError, match="byte offset 4 holds what looks like a card number"):
        store_signature(tmp_path, "T-1", b"PNG " + VISA_PAN.encode())
    assert not list(tmp_path.iterdir())
    path, digest = store_signature(tmp_path, "T-1", b"strokes")
    assert Path(path).name == f"T-1-{digest[:12]}.sig" and [p.name for p in tmp_path.iterdir()] == [Path(path).name]
    with pytest.raises(ContactError, match="looks like a card number"):
        parse_contact(f"phone:{VISA_PAN}")
    with pytest.raises(ContactError, match="not an e-mail"):
        parse_contact("email:nobody")
    assert repr(parse_contact(f"phone:{PHONE}")) == "Contact('phone *******5678')"
    with pytest.raises(CommandError, match="write phone:NUMBER or email:ADDRESS"):
        parse("refuse POSGRD01-00000001 contact=wechat:abc", max_amount=100)
    c = parse(f"refuse POSGRD01-00000001 contact=phone:{PHONE}", max_amount=100)
    assert c.option("contact") == f"phone:{PHONE}" and PHONE not in repr(c)
    assert parse("sign POSGRD01-00000001 paper=yes", max_amount=100).option("paper") == "yes"
    with pytest.raises(CommandError, match="consent_void needs TXN"):
        parse("consent_void", max_amount=100)


# -- the operator's override of a paid order ------------------------------------------------------------------
@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_override_of_the_same_card_and_amount_is_recorded_not_voided(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        till = till_for(desk, tmp_path)
        first = till.do("sale", card="c2", amount=25_00, order="A-17")
        till.supervisor = "S01"
        again = till.do("sale", card="c2", amount=25_00, order="A-17", override=True)
        till.supervisor = None
        assert first is not None and again is not None and again.approved
        assert till.incidents == [] and [e.status for e in desk.ledger(kind="sale")] == ["approved", "approved"]
        assert desk.journal.get_txn(again.txn_id).state == "approved"
        (row,) = desk.journal.detections("duplicate_override")
        evidence = json.loads(row["evidence"])
        assert json.loads(row["txn_ids"]) == [first.txn_id, again.txn_id]
        assert evidence["approved_by"] == "supervisor S01" and evidence["overridden_rule"] == "same_order_reference"
        assert desk.journal.detections("duplicate_charge") == []
        # a third charge without override is still a duplicate of the first two
        third = till.do("sale", card="c2", amount=25_00, order="A-17")
        assert third is not None and [i.kind for i in till.incidents] == ["duplicate_charge"] * len(till.incidents)
        assert till.incidents and third.txn_id in till.incidents[0].transactions


# -- the reversal notice goes to the outbox -------------------------------------------------------------------
def test_the_tills_reversal_notice_is_written_to_the_outbox(tmp_path: Path) -> None:
    with desk_for("cup", tmp_path) as desk:
        desk.sim.add_fault("no_response", mti="0200")
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c2", amount=19_00)
        assert sale is not None and sale.state == "reversed"
        outbox = tmp_path / "data" / "outbox"
        (note,) = outbox.iterdir()
        assert note.name == f"txn-{sale.txn_id}-reversal.txt" and oct(os.stat(note).st_mode & 0o777) == "0o600"
        text = note.read_text(encoding="utf-8")
        assert "交易冲正通知" in text and "Payment reversed" in text and "¥19.00" in text and "CNY 19.00" in text
        assert VISA_PAN not in text and "476173******0127" in text
        assert not [p for p in outbox.iterdir() if p.name.startswith(".")]  # nothing half-written left


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_reversal_acknowledged_later_is_an_incident_then_and_the_customer_is_told_twice(dialect: str,
                                                                                         tmp_path: Path) -> None:
    """The sale times out and so does its reversal: the customer, still at the counter, is told the charge is being
    cancelled; when a later flush gets the reversal acknowledged, the reversal incident is recorded (as for one
    acknowledged at once) and the outbox's notice becomes the final one."""
    with desk_for(dialect, tmp_path) as desk:
        desk.sim.add_fault("no_response", times=0)  # nothing is answered until cleared
        till = till_for(desk, tmp_path)
        sale = till.do("sale", card="c2", amount=19_00)
        assert sale is not None and sale.state == "reversal_pending"
        assert till.incidents == [] and [n.outcome for n in till.notices] == ["reversal_pending"]
        note = tmp_path / "data" / "outbox" / f"txn-{sale.txn_id}-reversal.txt"
        pending = note.read_text(encoding="utf-8")
        assert "(reversal_pending)" in pending and "being reversed" in pending and "冲正处理中" in pending
        desk.sim.clear_faults()
        till.do("flush")
        assert desk.journal.get_txn(sale.txn_id).state == "reversed"
        (inc,) = till.incidents
        assert (inc.kind, inc.rule, inc.outcome, inc.transactions) == ("reversal", "outcome_unknown", "reversed",
                                                                        [sale.txn_id])
        assert inc.messages and all(m.startswith("04") for m in inc.mtis)
        assert [n.outcome for n in till.notices] == ["reversal_pending", "reversed"]
        final = note.read_text(encoding="utf-8")
        assert "(reversed)" in final and "Payment reversed" in final and VISA_PAN not in final
        till.do("flush")  # recorded once
        assert len(till.incidents) == 1


def test_after_a_restart_a_queued_reversal_is_recorded_when_acknowledged(tmp_path: Path) -> None:
    """The service stopped with a sale's reversal unacknowledged: the till of the next start watches it
    (``track_queued_reversals``) and records the reversal incident when the host acknowledges it."""
    with desk_for("cup", tmp_path) as desk:
        desk.sim.add_fault("no_response", times=0)
        sale = till_for(desk, tmp_path).do("sale", card="c2", amount=19_00)
        assert sale is not None and sale.state == "reversal_pending"
        desk.sim.clear_faults()
        again = till_for(desk, tmp_path)  # the next start's till: it knows nothing of the first one's sale
        assert again.track_queued_reversals() == [sale.txn_id] and again.track_queued_reversals() == []
        again.do("flush")
        assert [(i.kind, i.outcome, i.transactions) for i in again.incidents] == [("reversal", "reversed",
                                                                                    [sale.txn_id])]
        assert [n.outcome for n in again.notices] == ["reversed"]
        # the incident counts every attempt, those the first start sent included (the journal has them all);
        # the wire images are this start's own
        attempts = [m["mti"] for m in desk.journal.messages(sale.txn_id) if m["direction"] == "out"
                    and m["mti"].startswith("04")]
        (inc,) = again.incidents
        earlier = len(attempts) - len(inc.messages)
        assert earlier >= 1 and len(inc.messages) >= 1 and inc.mtis == attempts
        assert f"after {len(attempts)} attempt(s) ({earlier} before this start" in inc.detail


def test_a_capture_keeps_neither_the_contact_nor_the_signature_files_path(tmp_path: Path) -> None:
    from posguard.capture.format import CaptureWriter

    with desk_for("cup", tmp_path) as desk:
        writer = CaptureWriter(tmp_path / "day.jsonl", dialect="cup", tid="TERM0001", mid="MERCHANT0000001",
                               clock=desk.clock)
        till = Till(desk.engine, dialect="cup", writer=writer)
        till.add_card("c1", card(signature=True))
        sale = till.do("sale", card="c1", amount=15_00)
        assert sale is not None
        till.do("signature_refused", txn=sale.txn_id, contact=f"phone:{PHONE}")
        pad = tmp_path / "pad.png"
        pad.write_bytes(b"strokes")
        till.do("sign", txn=sale.txn_id, esig=str(pad))
        till.close()
        writer.close()
        assert get_incident(desk.journal, unsigned_incidents(desk)[0]).outcome == "signed_later"
    ops = [json.loads(line) for line in (tmp_path / "day.jsonl").read_text().splitlines()
           if json.loads(line).get("k") == "op"]
    assert [(o["op"], o.get("contact", "-"), o.get("esig", "-")) for o in ops] == [
        ("sale", "-", "-"), ("signature_refused", None, "-"), ("sign", "-", None)]
    text = (tmp_path / "day.jsonl").read_text()
    assert PHONE not in text and str(pad) not in text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dry_run_of_the_consent_void_sends_and_writes_nothing(dialect: str, tmp_path: Path) -> None:
    from posguard.flows import FlowRequest
    from posguard.iso8583.message import Message

    with desk_for(dialect, tmp_path) as desk:
        sale = desk.engine.sale(card(signature=True), 20_00)
        out = desk.run(FlowRequest("unsigned", (sale.txn_id,), follow_up="voided_with_consent",
                                   operator="supervisor S01"), dry_run=True)
        assert out.outcome == "would_void" and out.incident_id is None
        (planned,) = [Message.decode(bytes.fromhex(m), dialect) for m in out.messages]
        assert (planned.mti, planned["3"]) == ("0200", "200000" if dialect == "cup" else "020000")
        assert len(desk.ledger()) == 1 and unsigned_incidents(desk) == []
        assert desk.journal.get_txn(sale.txn_id).state == "signature_pending"
