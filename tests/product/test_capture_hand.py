"""Hand-written captures (tests/captures/hand/), written from docs/capture-format.md alone, as an outsider would:
cards listed once, ops naming a transaction by STAN or "last", answers encoded with `posguard iso8583 encode`, an
inline CSV report. One per error kind the product detects, in both dialects where the doc allows; and the
mistakes a reasonable author makes (tests/captures/hand/mistakes/), each refused with one line naming the line and
what is wrong, or tolerated where a refusal would only annoy (CRLF, a byte order mark, a trailing blank line).

Corrections are what /work/shared/reference/pos-flows.md prescribes: a wrong amount or wrong card is a void
(0200, processing code 20) then a new sale; a duplicate is a void of the extra leg once the operator confirms; a
timeout, a late approval or a card decline after approval is a reversal (0400); a void whose answer was lost
(and was reversed) is voided again when the customer disputes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from posguard.capture import CaptureError, read_capture
from posguard.capture.inline_report import report_of_op
from posguard.capture.ops import check_op
from posguard.iso8583 import Message
from tests.product.conftest import ROOT

HAND = ROOT / "tests" / "captures" / "hand"
MISTAKES = HAND / "mistakes"
DOC = ROOT / "docs" / "capture-format.md"
#: the test PANs the hand-written captures use (never to appear in an output, a log or a journal)
HAND_PANS = ("4761732145926019", "5413330161614863")
T1, T2, T3 = "POSGRD01-00000001", "POSGRD01-00000002", "POSGRD01-00000003"

#: capture -> [(incident, rule, outcome, transactions, MTIs of the messages the correction sent)]
EXPECTED: dict[str, list[tuple[str, str, str, list[str], list[str]]]] = {}
for _d in ("cup", "iso87ascii"):
    EXPECTED |= {
        f"{_d}-duplicate_charge.jsonl": [
            ("duplicate_charge", "same_card_amount_terminal", "awaiting_confirmation", [T1, T2], []),
            ("duplicate_charge", "operator_confirmed", "voided", [T1, T2], ["0200"])],
        f"{_d}-wrong_amount.jsonl": [("wrong_amount", "customer_claim", "corrected", [T1], ["0200", "0200"])],
        f"{_d}-wrong_card.jsonl": [("wrong_card", "customer_claim", "corrected", [T1], ["0200", "0200"])],
        f"{_d}-void_mismatch.jsonl": [("void_mismatch", "void_response_lost", "voided", [T1, T2], ["0200"])],
        f"{_d}-unsigned.jsonl": [("unsigned", "signature_refused", "follow_up", [T1], [])],
        f"{_d}-reversal_timeout.jsonl": [("reversal", "outcome_unknown", "reversed", [T1], ["0400"])],
        f"{_d}-late_approval.jsonl": [("reversal", "outcome_unknown", "reversed", [T1], ["0400"])],
        f"{_d}-card_decline.jsonl": [("reversal", "card_declined_after_approval", "reversed", [T1], ["0400"])],
        f"{_d}-cut_off.jsonl": [("reversal", "capture_ended", "reversal_owed", [T1], [])],
        # the first sale of order A-1042 times out and is reversed; the order is then paid twice: a proven
        # duplicate (the same order), voided without the operator's confirmation
        f"{_d}-duplicate_same_order.jsonl": [
            ("reversal", "outcome_unknown", "reversed", [T1], ["0400"]),
            ("duplicate_charge", "same_order_reference", "voided", [T2, T3], ["0200"])],
        # the void was answered: the customer's dispute gets the proof, nothing is sent
        f"{_d}-void_stands.jsonl": [("void_mismatch", "proof", "void_stands", [T1], [])],
        # the customer left unsigned, was contacted, and the merchant keeps the sale: one incident, three steps
        f"{_d}-unsigned_follow_up.jsonl": [
            ("unsigned", "signature_refused", "follow_up", [T1], []),
            ("unsigned", "follow_up", "follow_up", [T1], []),
            ("unsigned", "follow_up", "kept_at_merchant_risk", [T1], [])],
        # a declined and an approved swiped sale: nothing to correct
        f"{_d}-no_incident.jsonl": [],
        # the sale times out, its 0400 is answered after the reversal timeout (policies.saf_timeout, else the host
        # timeout, at most 15 s): heard late, and the reversal is still owed when the capture ends. The timeout's detail, written
        # by hand, holds the card number: masked in the log and the journal
        f"{_d}-reversal_answer_late.jsonl": [("reversal", "capture_ended", "reversal_owed", [T1], [])],
    }
# a capture as `posguard run` wrote one before it named its policies: host timeout 5 s, so the live reversal waited
# 5 s; its 0410 came 10 s after the 0400: late, as live (the replay waited 30 s and called the sale reversed)
EXPECTED["iso87ascii-reversal_late_as_the_service_waits.jsonl"] = [
    ("reversal", "capture_ended", "reversal_owed", [T1], [])]
# CUP: the 0510's 48 stops after the domestic group (flag 1) though the 0500 counted a Visa sale on the foreign side:
# the host did not confirm those totals, so the details are uploaded (the batch was closed as balanced)
EXPECTED["cup-unsettled_foreign_unflagged.jsonl"] = [
    ("unsettled", "totals_unbalanced", "acquirer_contact_needed", [], [])]
# a capture without operator actions (as a pcap import gives) is read on the wire alone: an unbalanced settlement is
# reported as the engine reads it, CUP by the 0510's field 48 flags (RC 00), the international dialect by RC 95
# (CUP's went unreported, and RC 95 was called a refusal, "settlement_not_accepted")
EXPECTED["cup-wire_only_unbalanced.jsonl"] = [("unsettled", "totals_unbalanced", "unbalanced", ["stan 2"], [])]
EXPECTED["iso87ascii-wire_only_unbalanced.jsonl"] = [("unsettled", "totals_unbalanced", "unbalanced", ["stan 3"], [])]
EXPECTED["iso87ascii-unsettled.jsonl"] = [("unsettled", "report_import", "acquirer_contact_needed", [], [])]
# CUP: the 0510 flags the foreign totals unbalanced (48), the details are uploaded, the batch ends; the report names
# the transaction that differs
EXPECTED["cup-unsettled.jsonl"] = [("unsettled", "totals_unbalanced", "acquirer_contact_needed", [], []),
                                   ("unsettled", "report_import", "acquirer_contact_needed", [], [])]
# international: the 0510 answers 95, the details are uploaded, the closing 0500 (960000) is answered 00
EXPECTED["iso87ascii-unbalanced.jsonl"] = [("unsettled", "totals_unbalanced", "acquirer_contact_needed", [], [])]
# the sale's reversal is still pending when the sale ends (0400 answered 96) and acknowledged at the flush (a 0401
# times out, the next 0401 is answered): the reversal incident then, with every attempt as its evidence
EXPECTED["iso87ascii-reversal_repeat_late.jsonl"] = [
    ("reversal", "outcome_unknown", "reversed", [T1], ["0400", "0401", "0401"])]
EXPECTED["iso87ascii-reversal_repeat_both_late.jsonl"] = [  # the same, the 0400 timing out too
    ("reversal", "outcome_unknown", "reversed", [T1], ["0400", "0401", "0401"])]
# the card declines after the host approved and the 0400 times out: the customer is told the charge is being
# cancelled; the incident comes when the flush's 0401 is acknowledged
EXPECTED["iso87ascii-card_decline_reversal_later.jsonl"] = [
    ("reversal", "card_declined_after_approval", "reversed", [T1], ["0400", "0401"])]


def _mti(image: str, dialect: str) -> str:
    return Message.decode(bytes.fromhex(image), dialect).mti


def test_every_hand_written_capture_has_its_expectation() -> None:
    assert sorted(p.name for p in HAND.glob("*.jsonl")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_hand_written_capture_replays_to_its_incidents_and_corrections(name: str, posguard_replay: Any) -> None:
    day = posguard_replay(HAND / name)
    dialect = name.split("-")[0]
    got = [(i.kind, i.rule, i.outcome, list(i.transactions), [_mti(m, dialect) for m in i.messages])
           for i in day.incidents]
    assert got == EXPECTED[name]
    assert day.result.refused == []  # every action the author wrote did something


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_corrections_are_the_reference_messages(dialect: str, posguard_replay: Any) -> None:
    """pos-flows.md (A): the wrong-amount void carries the original's amount and the void's processing code (CUP
    20xxxx, the international dialect 02xxxx [MAB]), the new sale 00xxxx and the right amount; a reversal (0400)
    carries the sale's amount."""
    (inc,) = posguard_replay(HAND / f"{dialect}-wrong_amount.jsonl").incidents
    void, sale = (Message.decode(bytes.fromhex(m), dialect) for m in inc.messages)
    assert (void.mti, void["3"][:2], int(void["4"])) == ("0200", "20" if dialect == "cup" else "02", 10000)
    assert (sale.mti, sale["3"][:2], int(sale["4"])) == ("0200", "00", 1000)
    (rev,) = posguard_replay(HAND / f"{dialect}-reversal_timeout.jsonl").incidents[0].messages
    reversal = Message.decode(bytes.fromhex(rev), dialect)
    assert (reversal.mti, int(reversal["4"])) == ("0400", 7700)


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_a_reversal_answered_after_its_timeout_is_heard_late_and_stays_owed(dialect: str,
                                                                            posguard_replay: Any) -> None:
    day = posguard_replay(HAND / f"{dialect}-reversal_answer_late.jsonl")
    (event,) = day.result.late_answers
    assert (event.mti, event.stan) == ("0410", 1 if dialect == "cup" else 2)
    assert event.detail == "late answer to a reversal that timed out: the host has the reversal"
    assert day.states()[T1] == "reversal_pending"
    assert any("HostTimeout: no response; the customer's card 476173******6019" in line for line in day.result.log)


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_a_late_approval_written_in_time_order_is_heard_late(dialect: str, posguard_replay: Any) -> None:
    """The 0210 arrives 1.6 s after the 0200 (timeout 1.5 s), after the reversal's exchange, and is written there:
    the replay reverses the sale and hears the approval late (it was skipped unheard before)."""
    day = posguard_replay(HAND / f"{dialect}-late_approval.jsonl")
    (event,) = day.result.late_answers
    assert event.approved and event.stan == 1 and "reversal must go ahead" in event.detail
    assert day.states()[T1] == "reversed"


def test_a_late_answer_to_a_timed_out_repeat_is_heard_late(posguard_replay: Any) -> None:
    """The sale times out; its 0400 is answered 96 (not a done code: repeated); at the flush the 0401 times out
    (a recorded ``link`` timeout) and its late 0410 is written in time order, after the timeout; the next 0401
    gets its 0410. The answer to a repeat is the original's + 10 (pos-flows.md (B): "last digit 1 = repeat"; a
    0401 is answered by a 0410, ``Message.response_mti``), so the late 0410 is the timed-out 0401's, heard late,
    not a divergence (a replay that waited for a 0411 stopped here: commit 61ffd75)."""
    day = posguard_replay(HAND / "iso87ascii-reversal_repeat_late.jsonl")
    (event,) = day.result.late_answers
    assert (event.mti, event.stan, event.response_code) == ("0410", 2, "00")
    # an answer to a reversal is no approval: said as what it is (the live link says the same, late_answer_detail)
    assert event.detail == "late answer to a reversal that timed out: the host has the reversal"
    sent = [r["mti"] for r in day.journal.messages(T1) if r["direction"] == "out"]
    assert sent == ["0200", "0400", "0401", "0401"]
    assert day.states()[T1] == "reversed"


def test_two_timed_out_reversal_attempts_have_two_late_answers(posguard_replay: Any, tmp_path: Path) -> None:
    """The 0400 times out too, then the 0401: both late 0410s (same STAN) arrive after the 0401's timeout; each
    is the late answer of one timed-out attempt. A third late 0410 answers nothing the replay sent: a divergence."""
    name = HAND / "iso87ascii-reversal_repeat_both_late.jsonl"
    day = posguard_replay(name)
    assert [(e.mti, e.stan, e.response_code) for e in day.result.late_answers] == [("0410", 2, "00")] * 2
    assert [r["mti"] for r in day.journal.messages(T1) if r["direction"] == "out"] == ["0200", "0400", "0401",
                                                                                       "0401"]
    lines = name.read_text().splitlines(keepends=True)
    late = [n for n, line in enumerate(lines) if '"dir": "in"' in line][0]
    third = tmp_path / "three_late.jsonl"
    third.write_text("".join(lines[:late + 2] + [lines[late]] + lines[late + 2:]))
    with pytest.raises(CaptureError) as err:
        posguard_replay(third)
    assert err.value.line == late + 3 and "the recording received 0410 STAN 2 here" in str(err.value)


def test_the_late_approval_is_said_without_verbose() -> None:
    text = _in_process("replay", str(HAND / "iso87ascii-late_approval.jsonl"))
    assert "late answer: 0210 STAN 1 rc 00: late approval after a timeout: the reversal must go ahead" in text
    assert text.count("late answer:") == 1 and _in_process("replay", "-v", str(HAND / "iso87ascii-late_approval.jsonl")
                                                           ).count("late answer:") == 1


def test_an_authors_comment_is_read_past_and_said(tmp_path: Path) -> None:
    """A hand-writer's own key (a comment on a record) changes nothing of the replay, and the replay says it read
    past it (docs/capture-format.md, "The keys of each record kind")."""
    source = HAND / "iso87ascii-late_approval.jsonl"
    lines = source.read_text().splitlines()
    commented = tmp_path / "commented.jsonl"
    commented.write_text("\n".join([lines[0], lines[1][:-1] + ', "comment": "the customer\'s card"}', *lines[2:]])
                         + "\n")
    plain, said = _in_process("replay", str(source)), _in_process("replay", str(commented))
    assert said.replace(str(commented), str(source)) == \
        'ignored at line 2: the key "comment", which no record kind defines\n' + plain


def test_a_header_without_started_is_said_with_the_day_the_replay_takes(tmp_path: Path) -> None:
    """A hand-written header without "started": the replay runs on a fixed day (deterministic) and says which,
    and how to write the capture's own time; the rest of the output is the dated capture's."""
    source = HAND / "iso87ascii-no_incident.jsonl"
    lines = source.read_text().splitlines()
    header = json.loads(lines[0])
    del header["started"]
    undated = tmp_path / "undated.jsonl"
    undated.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    said = _in_process("replay", str(undated))
    first, rest = said.split("\n", 1)
    assert first == ('line 1: the header has no "started": replayed as of 2023-11-14T22:13:20+00:00 (write the '
                     'capture\'s own time, e.g. "started": "2026-11-30T09:00:00+00:00")')
    assert rest.replace(str(undated), str(source)) == _in_process("replay", str(source))


def test_a_cup_unbalanced_settlement_uploads_the_details_then_ends_the_batch(posguard_replay: Any) -> None:
    """pos-flows.md (A) "Not arrived", CUP: 0500 (60.3 201, totals in 48) answered 00 with the foreign flag 2;
    then a detail 0320 of the approved sale (60.3 201: swiped; 61 = its batch and STAN), none of the declined one,
    and the batch end (0320, 60.3 202, 48 = one detail); the batch is closed unbalanced."""
    day = posguard_replay(HAND / "cup-unsettled.jsonl")
    out = [(r["mti"], json.loads(r["masked"])) for r in day.journal.messages() if r["direction"] == "out"]
    assert [mti for mti, _ in out] == ["0200", "0200", "0500", "0320", "0320"]
    settle, detail, end = (f for _, f in out[2:])
    assert [f["60"][8:11] for f in (settle, detail, end)] == ["201", "201", "202"]
    assert settle["48"] == "0" * 31 + "000000001250001000000000000000" + "0"  # the Visa sale: foreign group
    assert (detail["4"], detail["61"], detail["63"]) == ("000000001250", "000001000001", "VIS")
    assert end["48"] == "0001"
    (batch,) = day.journal.query("SELECT host_result FROM batches WHERE state != 'open'")
    assert batch["host_result"] == "unbalanced rc=00 flag=1 foreign=2"


def test_a_cup_0510_without_the_foreign_flag_does_not_balance_foreign_sales(posguard_replay: Any) -> None:
    day = posguard_replay(HAND / "cup-unsettled_foreign_unflagged.jsonl")
    out = [json.loads(r["masked"]) for r in day.journal.messages() if r["direction"] == "out"]
    assert [f["60"][8:11] for f in out[2:]] == ["201", "201", "201", "202"]  # 0500, two details, batch end
    (batch,) = day.journal.query("SELECT host_result FROM batches WHERE state != 'open'")
    assert batch["host_result"] == "unbalanced rc=00 flag=1"


def test_an_international_unbalanced_settlement_uploads_then_closes_with_a_second_0500(
        posguard_replay: Any) -> None:
    """pos-flows.md (A) "Not arrived", international [MAB]: 0500/920000 answered 95, a 0320 per approved
    transaction (60 = the original's MTI and STAN), then 0500/960000 answered 00: the batch closes unbalanced."""
    day = posguard_replay(HAND / "iso87ascii-unbalanced.jsonl")
    out = [(r["mti"], json.loads(r["masked"])) for r in day.journal.messages() if r["direction"] == "out"]
    assert [(mti, f["3"]) for mti, f in out[2:]] == [("0500", "920000"), ("0320", "000000"), ("0500", "960000")]
    assert (out[3][1]["4"], out[3][1]["60"], out[2][1]["88"]) == ("000000001250", "0200000001", "0000000000001250")
    (batch,) = day.journal.query("SELECT host_result FROM batches WHERE state != 'open'")
    assert batch["host_result"] == "unbalanced rc=95"


def _doc_block_with(mti: str) -> list[dict[str, Any]]:
    (block,) = [b for b in DOC_BLOCKS if any(o.get("mti") == mti for o in b)]
    return block


def test_the_doc_settlement_example_is_the_hand_written_day() -> None:
    """The doc's CUP settlement records are the capture's, and its messages (as ``posguard iso8583 encode -d cup``
    takes them) are the records' hex."""
    records = [json.loads(line) for line in (HAND / "cup-unsettled.jsonl").read_text().splitlines()[1:]]
    block = _doc_block_with("0510")
    start = records.index(block[0])
    assert records[start:start + len(block)] == block and block[0] == {"t": 0.7, "k": "op", "op": "settle"}
    text = re.search(r"```text\n(.*?)```", DOC.read_text(), flags=re.S)
    assert text is not None
    docs = [json.loads(line) for line in text.group(1).splitlines()]
    assert [Message.from_dict(d, "cup").encode().hex().upper() for d in docs] == [r["hex"] for r in block[1:]]


@pytest.mark.parametrize("name", ["bom", "crlf", "trailing_blank_line", "bom_crlf_trailing_blank"])
def test_what_an_editor_adds_is_tolerated(name: str, posguard_replay: Any) -> None:
    raw = (MISTAKES / f"{name}.jsonl").read_bytes()  # the file holds what its name says (kept by .gitattributes)
    assert raw.startswith(b"\xef\xbb\xbf") == ("bom" in name) and (b"\r\n" in raw) == ("crlf" in name)
    assert raw.endswith(b"\n\n") or raw.endswith(b"\r\n\r\n") or "blank" not in name
    day = posguard_replay(MISTAKES / f"{name}.jsonl")
    assert [(i.kind, i.outcome) for i in day.incidents] == [("wrong_card", "corrected")]


#: mistake -> (the line named, words the one-line error holds)
REFUSED: dict[str, tuple[int, str]] = {
    "missing_amount": (4, "operator action 'sale' cannot be replayed: it needs \"amount\" (minor units"),
    "amount_as_decimal": (4, "\"amount\" is a string '45.00'; it must be minor units, a whole number"),
    "argument_not_taken": (7, "'wrong_card' cannot be replayed: it takes no \"amount\" (it takes \"txn\", \"card\")"),
    "missing_pan": (2, "card record needs \"pan\""),
    "masked_pan_in_card": (2, "card record's \"pan\" is masked; a capture holds the card's whole test PAN"),
    "bad_hex": (6, "iso record: 'hex' is not hex"),
    "out_before_its_op": (5, "iso record's \"t\" 0.05 is earlier than the 0.1 of line 4"),
    "answer_before_request": (5, "the recording received 0210 STAN 1 here, before the replay's 0200, but it "
                                 "answers no request"),
    "unknown_op": (7, "unknown operator action 'wrongcard'; known: sale,"),
    "unknown_dialect": (1, "unknown dialect 'iso93'; known: cup, "),  # then the built-in and registered dialects
    "older_format_version": (1, "capture format version 0: this posguard reads version 1"),
    "unknown_stan": (7, "op names STAN 000042 but the replay holds no transaction with it"),
    "unknown_card": (7, "operator action 'wrong_card' cannot be replayed: no card 'c9': the capture lists no card"),
    "duplicate_without_confirm": (9, "the recording sent 0200 STAN 5 here, but the replay sent nothing after the "
                                     "operator action at line 6"),
    "cup_reversal_new_stan": (6, "the replay sends 0400 STAN 1, the recording STAN 2"),
    "full_pan_in_report": (13, "pan_masked does not match"),
    # the answer does not echo the amount: invalid as live, so the engine reverses; the capture holds no 0400
    "answer_not_echoing_amount": (7, "the replay sends a 0400 where the recording has the operator action"),
    # CUP settlement written with the international recipe: the 0510 answered 95 (a CUP host answers 00 and flags
    # field 48), or the batch end written as a closing 0500 (CUP ends the batch with a 0320, 60.3 = 202)
    "cup_unbalanced_answered_95": (10, "the replay refused 'settle' (settlement of batch 1 stopped: the host "
                                       "answered the 0500 with RC 95; the batch stays open, run settlement again) "
                                       "where the recording sent 0320 at line 13"),
    "cup_batch_end_as_0500": (15, "the replay sends 0320, the recording 0500"),
    # the header's terminal and policies configure the replay's engine: a value of the wrong type is named at line
    # 1 with its key (it was a traceback from float(), or a policy quietly left at its default when misspelt)
    "header_timeout_not_a_number": (1, "header \"terminal\" key \"timeout\" is a string \"fast\"; it must be the host "
                                       "timeout in seconds, a number > 0"),
    "header_policy_not_a_number": (1, "header \"policies\" key \"saf_timeout\" is a string \"soon\"; it must be "
                                      "seconds"),
    "header_policies_not_an_object": (1, "header \"policies\" is a string; it must be an object"),
    # an answer that does not decode with the header's dialect is named at its own line, with the codec's field
    # and byte offset (it was reported as the failure of the operator action at line 3 that first read it)
    "answer_cut_short": (5, "iso record (in): its \"hex\" does not decode as cup: DecodeError: field runs past the "
                            "end of the message (field 42 at byte 61)"),
    "answer_in_another_dialect": (5, "iso record (in): its \"hex\" does not decode as iso87ascii: DecodeError: MTI is "
                                     "not 4 digits (MTI at byte 0)"),
    # a key written twice: JSON keeps the last without a word (the wrong_amount op replayed with whichever came last)
    "amount_written_twice": (6, "the key \"amount\" is written twice in one object (JSON keeps only the last value"),
    # hex typed by hand: the error says what is wrong and where (it said only "is not hex")
    "apdu_odd_hex_digits": (7, "apdu record: 'r' is not hex: 39 hex digits, an odd number: two make a byte"),
    "field55_letter_o": (3, "card record: 'field55' is not hex: \"O\" at character 26 is not a hex digit"),
    # a Twin frame whose last byte is not the LRC of the others (the recorder writes whole frames, or zeros)
    "frame_lrc_wrong": (2, "frame record: the LRC (byte 32) is B7, the frame's bytes give B6"),
    # hex, but no TLV: 9F02 says six value bytes and five follow (it went on the wire as written)
    "field55_cut_short": (3, "card record's \"field55\" is not BER-TLV (tag, length, value; field 55): value runs "
                             "past the end of the data (field 55.9F02 at byte 15); expected 6 value bytes, got 5 bytes left"),
    # an iso record's mti and stan: of the recorder's types, present where the replay checks a request against them,
    # and on an answer what its message says (each of these was read past without a word, the check skipped)
    "answer_stan_not_its_message": (5, "the in record says \"stan\" 2 but its message's field 11 is 000001: its "
                                       "keys describe the message in \"hex\""),
    "stan_as_digits_string": (4, "iso record's \"stan\" is a string \"000001\"; it must be the STAN (field 11) as a "
                                 "whole number"),
    "request_without_stan": (4, "iso record (out) with \"hex\": \"\" needs \"mti\" and \"stan\""),
    # the card number pasted where the card's ref or a transaction belongs: named, masked (it was quoted in clear)
    "card_named_by_its_pan": (3, "operator action 'sale' cannot be replayed: no card '476173******6019'"),
    "txn_named_by_the_pan": (6, "op names STAN '476173******6019'; a STAN is 1 to 999999"),
    # card data a capture never holds: a swipe's discretionary data (CVV) after PAN=YYMMSSS (it was read past)
    "swipe_with_cvv": (4, "swipe record's \"track2\" holds discretionary data (CVV, PVV) at character 24"),
    # a link event the replay does not know was read past (here the answer's absence happened to time out anyway)
    "link_event_time_out": (5, "link record's \"event\" is a string \"time_out\"; it must be one of timeout, "
                               "link_error, invalid_response, error, flow"),
    # "false" in quotes is a string, and a non-empty string was read as true: the sale waited for a signature
    "cvm_required_as_string": (2, "card record's \"cvm_required\" is a string \"false\"; it must be true or false"),
    # a card record typed by hand: the values the engine would put on the wire (2, 14, 22) as they must be; each
    # was sent as written (a PAN failing Luhn, expiry month 13, an entry mode no field 22 has a code for)
    "pan_mistyped": (2, "card record's \"pan\" fails the Luhn check"),
    "expiry_month_13": (2, "card record's \"expiry\" is a string \"2813\"; it must be YYMM in a string"),
    "entry_mode_tap": (2, "card record's \"entry_mode\" is \"tap\"; it must be one of chip, contactless, swipe, "
                          "fallback, manual (field 22)"),
    # a chip read's numbers: presentation 0 was met later as "the recording sent 0400 ... but the replay sent
    # nothing" (no card for presentation 1), an ATC in quotes was read past
    "presentation_zero": (3, "card record's \"presentation\" is a number 0; it must be a number (1, 2...)"),
    "atc_as_string": (6, "card_outcome record's \"atc\" is a string \"7\"; it must be the card's transaction "
                         "counter (9F36)"),
    # a card decline after approval written with the card listed once, or its read without "second_gac": true: the
    # card_outcome answers no read, named at its line (it was passed over; the error came at the 0400, line 7)
    "card_decline_card_listed_once": (6, "card_outcome of presentation 1 answers no card read: no card record has "
                                         "\"presentation\": 1 and \"second_gac\": true"),
    "card_decline_without_second_gac": (6, "card_outcome of presentation 1 answers no card read"),
    "header_policy_misspelt": (1, "header \"policies\" has the key \"saf_timout\", which is no engine policy (known: "
                                  "saf_timeout, backoff_initial, block_new_transactions, send_reversal_immediately; "
                                  "did you mean 'saf_timeout'?)"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_mistake_is_one_line_naming_the_line_and_what_is_wrong(name: str, posguard_replay: Any) -> None:
    line, words = REFUSED[name]
    with pytest.raises(CaptureError) as err:
        posguard_replay(MISTAKES / f"{name}.jsonl")
    assert err.value.line == line and words in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not any(pan in str(err.value) for pan in HAND_PANS)


@pytest.mark.parametrize(("name", "line", "words"), [
    ("sign_not_due", 7, "sign: transaction POSGRD01-00000001 (sale) is 'approved'; event 'sign' is not allowed"),
    ("reconcile_before_settle", 10, "reconcile: capture line 10 (inline report): no closed batch to compare"),
    # said the same every run: not the path of the run's scratch journal, nor a journal command for a journal gone
    ("confirm_unknown_incident", 6, "confirm: no incident 9 in the replay\n"),
])
def test_an_action_refused_with_nothing_sent_is_listed_not_skipped(name: str, line: int, words: str) -> None:
    out = _cli("replay", str(MISTAKES / f"{name}.jsonl"))
    assert out.returncode == 0
    assert f"refused at line {line}: {words}" in out.stdout
    assert "SettlementReport(" not in out.stdout  # the report's name, not its repr
    js = _cli("replay", "--json", str(MISTAKES / f"{name}.jsonl"))
    assert f"refused at line {line}: " in js.stderr and all(json.loads(x) for x in js.stdout.splitlines())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posguard", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=False)


def _in_process(*args: str) -> str:
    """``posguard ARGS`` in this process (the CLI's own main), its standard output and error."""
    from posguard.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(list(args)) == 0
    return out.getvalue() + err.getvalue()


def test_replays_are_deterministic_and_hold_no_pan(tmp_path: Path) -> None:
    """Every hand-written capture, replayed twice through the CLI (--json, --verbose): the same output both
    times, and no test PAN in clear (digits or hex of ASCII digits) in any of it, nor in a kept journal."""
    files = [str(p) for p in sorted(HAND.glob("*.jsonl"))]
    runs = [_in_process("replay", flag, f) for _ in range(2) for f in files for flag in ("--json", "-v")]
    half = len(runs) // 2
    quiet = {("--json", f) for f in files if not EXPECTED[Path(f).name]}  # --json of a day without incidents
    said = [run for run, key in zip(runs, [(flag, f) for f in files for flag in ("--json", "-v")] * 2, strict=True)
            if key not in quiet]
    assert runs[:half] == runs[half:] and all(said)
    text = "\n".join(runs)
    for pan in HAND_PANS:
        assert pan not in text and pan.encode().hex().upper() not in text.upper()
    from posguard.capture.replay import replay
    from posguard.service.till import Till

    for f in files:
        journal = tmp_path / f"{Path(f).stem}.db"
        replay(f, desk=Till.for_replay, journal_path=journal).close()
        data = b"".join(p.read_bytes() for p in tmp_path.glob(f"{journal.name}*"))
        for pan in HAND_PANS:
            assert pan.encode() not in data and pan.encode().hex().encode() not in data.lower()


# -- the examples of docs/capture-format.md, copied verbatim ---------------------------------------------------

def _doc_blocks() -> list[list[dict[str, Any]]]:
    """Every ```json block of the doc, as the JSON objects it holds (an object may be wrapped over lines)."""
    blocks = []
    for text in re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S):
        decoder, objs, pos = json.JSONDecoder(), [], 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos < len(text):
                obj, pos = decoder.raw_decode(text, pos)
                objs.append(obj)
        blocks.append(objs)
    return blocks


DOC_BLOCKS = _doc_blocks()
DOC_HEADER = next(b[0] for b in DOC_BLOCKS if len(b) == 1 and "posguard_capture" in b[0])


def test_the_doc_has_examples_of_each_sort() -> None:
    sorts = {("capture" if "posguard_capture" in b[0] and len(b) > 1 else "header" if "posguard_capture" in b[0]
              else "records" if "k" in b[0] else "output") for b in DOC_BLOCKS}
    assert sorts == {"capture", "header", "records", "output"}


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_every_example_of_the_doc_works_as_written(index: int, tmp_path: Path, posguard_replay: Any) -> None:
    objs = DOC_BLOCKS[index]
    if "posguard_capture" in objs[0] and len(objs) > 1:  # a whole capture: it replays as the doc says
        path = tmp_path / "doc.jsonl"
        path.write_text("".join(json.dumps(o) + "\n" for o in objs))
        day = posguard_replay(path)
        assert [(i.kind, i.rule, i.outcome, i.transactions, len(i.messages)) for i in day.incidents] == \
            [("wrong_amount", "customer_claim", "corrected", [T1], 2)]
        return
    if "incident" in objs[0]:  # replay --json output: the keys a replay writes
        day = posguard_replay(HAND / "iso87ascii-duplicate_charge.jsonl")
        assert set(objs[0]) <= set(day.incidents[-1].to_dict())
        return
    records = [o for o in objs if "posguard_capture" not in o]
    path = tmp_path / "doc.jsonl"  # the doc's header, then the example's records: the reader takes them
    path.write_text("".join(json.dumps(o) + "\n" for o in [DOC_HEADER, *records]))
    capture = read_capture(path)
    for n, rec in enumerate(capture.records, 2):
        if rec["k"] == "op":
            check_op(rec, n)
            if rec["op"] == "reconcile" and not (isinstance(rec["report"], str) and rec["report"].endswith(".csv")):
                report_of_op(rec["report"], base=tmp_path, source=f"doc example line {n}")


def test_one_card_record_charged_twice_is_refused_saying_how_a_capture_presents_the_card_again(
        tmp_path: Path, posguard_replay: Any) -> None:
    """A chip card's record used for a second sale: its cryptogram was sent with the first, so the second is refused
    before the wire; the refusal says what the author writes instead (a card record per charge), and names no ATC the
    record does not hold."""
    with open(MISTAKES / "card_decline_card_listed_once.jsonl", encoding="utf-8") as fh:
        header, card_line = fh.readline(), fh.readline()
    answer = ('{"t": 0.4, "k": "iso", "dir": "in", "mti": "0210", "stan": 1, "hex": "6000030000603100310000021030200000'
              '0EC080000000000000000012500000013333343231303030303030313132333435363030504F5347524430314D45524348414E'
              '5430303030303031313536"}\n')
    capture = tmp_path / "charged_twice.jsonl"
    capture.write_text(header + card_line + '{"t": 0.1, "k": "op", "op": "sale", "card": "c1", "amount": 1250}\n'
                       '{"t": 0.2, "k": "iso", "dir": "out", "mti": "0200", "stan": 1, "hex": ""}\n' + answer
                       + '{"t": 1.1, "k": "op", "op": "sale", "card": "c1", "amount": 1250}\n', encoding="utf-8")
    day = posguard_replay(capture)
    [(line, op, why)] = day.result.refused
    assert (line, op) == (6, "sale") and "was already sent in POSGRD01-00000001" in why, why
    assert "a card record of its own for each charge" in why and "ATC None" not in why
