"""acq-audit: an acquirer's audit of a recorded demo day in both dialects, beyond test_demo_wire_audit.py.

``posguard demo --record --journal-dir`` for each dialect; every message decoded by pyiso8583 with the audit's own
spec dicts (tests/product/acquirer_audit.py, written from pos-flows.md and CONTRACTS.md, importing neither
posguard nor the host simulator). Found by this audit and fixed: the CUP TC/detail upload (0320) of an
online-PIN sale said 22 = 052 where its 0200 said 051 (now the authorisation's own 22; the host refuses a
mismatch with RC 22); the reversal of an online-PIN sale kept 26 (now left out with 52/53; the host refuses 26 or
53 without 52, RC 30); the flows' voids claimed a chip read (22 = 05x, 23) of a card nobody presented (now 01x,
keyed from the till's records). The last test shows each check fails on the behaviour it guards against."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from posguard.demo.day import ERROR_KINDS
from tests.product import acquirer_audit as audit
from tests.product.conftest import CAPTURES, ROOT, SIM_PANS

DIALECTS = ("cup", "iso87ascii")


@pytest.fixture(scope="module", params=DIALECTS)
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[audit.Day, Path, Path]:
    dialect = str(request.param)
    where = tmp_path_factory.mktemp(f"acq-audit-{dialect}")
    record, journal = where / "day.jsonl", where / "journal"
    proc = subprocess.run([sys.executable, "-m", "posguard.cli", "demo", "--dialect", dialect, "--reader", "twin",
                           "--record", str(record), "--journal-dir", str(journal)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return audit.read_day(record, dialect), record, journal / "journal.db"


def test_every_request_carries_the_fields_its_class_requires(recorded: tuple[audit.Day, Path, Path]) -> None:
    day, _record, _journal = recorded
    kinds = {day.kind(m) for m in day.out()}
    assert {"network", "sale", "void", "reversal", "settlement", "upload"} <= kinds, kinds
    assert audit.mandatory_problems(day) == []


def test_stans_are_unique_per_terminal_and_day(recorded: tuple[audit.Day, Path, Path]) -> None:
    day, _record, _journal = recorded
    assert audit.stan_problems(day) == []


def test_every_answer_matches_its_request_and_every_timeout_was_reversed(recorded: tuple[audit.Day, Path, Path]
                                                                         ) -> None:
    day, _record, _journal = recorded
    assert len(day.timeouts) == 2  # the day's lost sale answer and lost void answer
    assert audit.response_problems(day) == []


def test_voids_and_reversals_carry_their_originals_data(recorded: tuple[audit.Day, Path, Path]) -> None:
    day, _record, _journal = recorded
    assert sum(day.kind(m) == "void" for m in day.out()) >= 4
    assert sum(day.kind(m) == "reversal" for m in day.out()) == 2
    assert audit.correction_problems(day) == []


def test_uploads_repeat_the_authorisations_and_the_totals_add_up(recorded: tuple[audit.Day, Path, Path]) -> None:
    day, _record, _journal = recorded
    uploads = [m for m in day.out() if day.kind(m) == "upload"]
    assert len(uploads) == len(audit.standing_sales(day)) == 8
    if day.cup:  # the online-PIN sales' uploads say "PIN included", as their 0200s did
        assert sum(m.get("22")[2:] == "1" for m in uploads) == 2
    assert audit.upload_problems(day) == []
    assert audit.totals_problems(day) == []
    assert audit.settlement_action_problems(day) == []


def test_reversals_leave_the_pin_and_track_fields_out(recorded: tuple[audit.Day, Path, Path]) -> None:
    """The day's lost online-PIN sale is reversed without 52/53 and without 26 (found by this audit: its 0400
    carried 26 = 12); 52, 53 and 26 travel together, and with every online-PIN authorisation only."""
    day, _record, _journal = recorded
    reversals = [m for m in day.out() if day.kind(m) == "reversal"]
    pin_sale = next(m for m in day.out() if day.kind(m) == "sale" and "52" in m.removed and day.answer(m) is None)
    assert any(audit._reversed(day, r) is pin_sale for r in reversals)
    assert audit.reversal_copy_problems(day) == []
    assert audit.pin_field_problems(day) == []


def test_field_22_says_how_the_card_came_in_for_each_request(recorded: tuple[audit.Day, Path, Path]) -> None:
    """Found by this audit: the voids of the wrong-card, wrong-amount and dispute flows said 05x with 23 (a chip
    read) for a card nobody presented; a void keyed from the terminal's records says 01x, as the operator's does."""
    day, _record, _journal = recorded
    voids = [m for m in day.out() if day.kind(m) == "void"]
    assert len(voids) >= 4 and {m.get("22")[:2] for m in voids} == {"01"}
    assert not [m for m in voids if "23" in m.doc or "35" in m.doc]
    assert len(day.presentations) >= 14  # a card record per presentation: what the check reads
    assert audit.entry_mode_problems(day) == []


def test_the_host_books_differ_only_by_the_sale_it_answered_51(recorded: tuple[audit.Day, Path, Path]) -> None:
    """The day's staged acquirer fault: the host booked a sale it declined (51); the terminal's totals are the
    wire's, so the difference is the host's, and it is exactly that sale."""
    day, record, _journal = recorded
    declined = [day.answer(m) for m in day.out() if day.kind(m) == "sale"]
    rc51 = [a.get("37") for a in declined if a is not None and a.get("39") == "51"]
    assert audit.booking_differences(day, audit.host_report(record)) == {"host_only": rc51, "wire_only": []}
    assert len(rc51) == 1


def test_the_journal_holds_no_card_data_in_clear(recorded: tuple[audit.Day, Path, Path]) -> None:
    _day, _record, journal = recorded
    assert journal.exists()
    assert audit.journal_card_data_problems(journal, SIM_PANS) == []


def test_each_check_fails_on_what_it_guards_against(recorded: tuple[audit.Day, Path, Path]) -> None:
    day, _record, _journal = recorded

    def mutated(pick: str | audit.Msg, change: dict[str, str | None]) -> audit.Day:
        """The day with ``change`` made to the first request of kind ``pick`` (or to the message ``pick``)."""
        bad = copy.deepcopy(day)
        m = next(m for m in bad.out() if (bad.kind(m) == pick if isinstance(pick, str) else m.line == pick.line))
        for f, v in change.items():
            if v is None:
                m.doc.pop(f, None)
            else:
                m.doc[f] = v
        return bad

    upload = next(m for m in day.out() if day.kind(m) == "upload")
    pin_digit = "2" if upload.get("22")[2] == "1" else "1"  # the old CUP bug: the upload's PIN digit differs
    assert audit.upload_problems(mutated("upload", {"22": upload.get("22")[:2] + pin_digit}))
    assert audit.upload_problems(mutated("upload", {"4": "000000000001"}))
    assert audit.mandatory_problems(mutated("void", {"37": None}))
    assert audit.stan_problems(mutated("void", {"11": day.out()[1].get("11")}))
    assert audit.correction_problems(mutated("void", {"4": "000000000001"}))
    assert audit.totals_problems(mutated("settlement", {"48": "0" * 62, "88": "0" * 16}))
    twice = copy.deepcopy(day)  # the old retry after a lost answer: the same upload again, a new 0320 and STAN
    again = copy.deepcopy(upload)
    again.line, again.doc["11"] = day.messages[-1].line + 1, "999999"
    twice.messages.append(again)
    assert any("uploaded again" in p for p in audit.upload_problems(twice))
    end = next(m for m in day.out() if day.kind(m) in ("batch_end", "settlement") and m.line > upload.line)
    assert audit.settlement_action_problems(mutated(end, {"60": "00000001207", "3": "920000"}))
    first_in = next(m for m in day.messages if m.dir == "in" and "3" in m.doc)
    bad = copy.deepcopy(day)
    next(m for m in bad.messages if m.line == first_in.line).doc["3"] = "999999"
    assert audit.response_problems(bad)
    # acq-audit, second pass: the 0400 that kept 26; a void claiming a chip read; a sale without its presentation
    assert audit.reversal_copy_problems(mutated("reversal", {"26": "12"}))
    assert audit.pin_field_problems(mutated("reversal", {"26": "12"}))
    assert audit.pin_field_problems(mutated("sale", {"26": "12"}))
    chip = "051" if not day.cup else "052"
    assert audit.entry_mode_problems(mutated("void", {"22": chip, "23": "001"}))
    assert audit.entry_mode_problems(mutated("void", {"23": "001"}))
    unseen = copy.deepcopy(day)
    first_sale = next(m for m in day.out() if day.kind(m) == "sale")
    unseen.presentations = [p for p in unseen.presentations if p[0] > first_sale.line]
    assert audit.entry_mode_problems(unseen)
    fallback = copy.deepcopy(day)
    fallback.presentations = [(line, pan, "fallback" if line < first_sale.line else how)
                              for line, pan, how in fallback.presentations]
    assert audit.entry_mode_problems(fallback)  # a fallback presentation sent as a chip read


@pytest.mark.parametrize("name", [f"{d}-{k}.jsonl" for d in DIALECTS for k in ERROR_KINDS])
def test_the_recorded_captures_pass_the_audit(name: str) -> None:
    """tests/captures (make_captures.py): one recorded day per error kind; cup-unsettled.jsonl was regenerated
    when its uploads stopped saying 052 for the online-PIN sale the 0200 sent as 051; the reversal, void_mismatch,
    wrong_amount and wrong_card days of both dialects when the 0400 stopped carrying 26 and the flows' voids
    stopped claiming a chip read (same incidents in expected.json)."""
    day = audit.read_day(CAPTURES / name, name.split("-")[0])
    checks = (audit.mandatory_problems, audit.stan_problems, audit.response_problems, audit.correction_problems,
              audit.upload_problems, audit.totals_problems, audit.settlement_action_problems,
              audit.reversal_copy_problems, audit.pin_field_problems, audit.entry_mode_problems)
    assert [p for check in checks for p in check(day)] == []
