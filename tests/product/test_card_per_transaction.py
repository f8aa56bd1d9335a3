"""One card session per transaction, end to end per dialect family (CUP, ISO 8583 ASCII): the till presents the
card for every charge (the simulated card in the serial GemPC Twin reader on a pty), the engine talks to the
acquirer host simulator over real TCP, and the wire is checked by pyiso8583 (tests/product/wire_audit.py).

Approved with the card's TC; the host approves but the card answers AAC -> the sale is reversed and the
incident says so; a card read is single-use (also after a restart); 9F02 != field 4 never reaches the wire;
wrong amount and wrong card read the card again; an approval the card never answered is reversed at recovery;
a stored chip read is sent once, a card not presented sends nothing, a card pulled before its second GENERATE AC
after an approval is reversed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from posguard.capture.format import CaptureWriter
from posguard.capture.replay import replay
from posguard.clock import SystemClock
from posguard.demo import demo_policies
from posguard.demo.rig import load_simulators
from posguard.demo.run import DEMO_POLICY_DATA, DEMO_TMK, DemoCards, _open_reader
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TerminalConfig, TransactionEngine
from posguard.engine.errors import CardAmountMismatch, CryptogramReused
from posguard.engine.hostlink import HostLinkConfig, TcpHostLink
from posguard.engine.journal import Journal
from posguard.engine.keys import TerminalMasterKey
from posguard.presenting import CardRequest, HostAnswer
from posguard.service.till import Till
from tests.product import acquirer_audit
from tests.product.wire_audit import Auth, amount_problems, authorisations, ber_tlv, replay_problems

DIALECTS = ("cup", "iso87ascii")
CARDS = {"c1": "visa_credit_sig", "c2": "unionpay_debit_pin", "c3": "mastercard_nocvm"}
TID, MID = "POSGRD01", "MERCHANT0000001"


@dataclass
class Desk:
    dialect: str
    rig: Any
    till: Till
    engine: TransactionEngine
    terminal: TerminalConfig
    record: Path
    lines: list[str]
    tmp: Path

    def auths(self) -> list[Auth]:
        return authorisations(self.record, self.dialect)

    def insert(self, profile: str, **overrides: str) -> None:
        """Put a card in the reader with profile overrides (e.g. a card that declines at the 2nd GENERATE AC)."""
        self.rig.card.command(" ".join(["swap", profile, *(f"{k}={v}" for k, v in overrides.items())]))
        self.rig.current_profile = profile

    def host_saw(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.rig.ledger() if e["kind"] == kind]

    def engine_again(self) -> TransactionEngine:
        """A new engine on the same journal (a restart): a second link to the same host."""
        self.engine.journal.close()
        clock = SystemClock()
        return TransactionEngine(Journal(self.tmp / "journal.db", clock=clock), _link(self.dialect, self.rig, clock),
                                 self.dialect, self.terminal, clock, Detectors.default(clock), demo_policies())


def _link(dialect: str, rig: Any, clock: SystemClock) -> TcpHostLink:
    return TcpHostLink(HostLinkConfig("127.0.0.1", rig.host_port, dialect=dialect, response_timeout=3.0,
                                      reversal_timeout=2.0, connect_timeout=2.0, connect_attempts=2, backoff=0.1),
                       clock=clock)


@contextmanager
def desk_for(dialect: str, tmp: Path) -> Iterator[Desk]:
    make_rig, _ = load_simulators()
    clock = SystemClock()
    # the demo terminal's identity and master key: the host simulator issues working keys under it at sign-on
    terminal = TerminalConfig(TID, MID, secrets.token_bytes(32), secrets.token_bytes(32), currency="156",
                              host_timeout=3.0, timezone="Asia/Shanghai",
                              tmk=TerminalMasterKey(bytes.fromhex(DEMO_TMK)))
    with make_rig(dialect, profile="mastercard_nocvm", reader="twin", magstripe=False) as rig:
        journal = Journal(tmp / "journal.db", clock=clock)
        link = _link(dialect, rig, clock)
        engine = TransactionEngine(journal, link, dialect, terminal, clock, Detectors.default(clock), demo_policies())
        record = tmp / "wire.jsonl"
        writer = CaptureWriter(record, dialect=dialect, tid=TID, mid=MID, clock=clock,
                               extra={"policies": DEMO_POLICY_DATA},
                               terminal_extra={"currency": "156", "timeout": 3.0})
        lines: list[str] = []
        till = Till(engine, dialect=dialect, say=lines.append, writer=writer)
        reader = _open_reader(rig)
        till.presenter = DemoCards(rig, reader, CARDS, terminal, lines.append, writer)
        try:
            yield Desk(dialect, rig, till, engine, terminal, record, lines, tmp)
        finally:
            reader.close()
            link.close()
            writer.close()
            engine.journal.close()


def _events(engine: TransactionEngine, txn_id: str, kind: str) -> list[Any]:
    return engine.journal.query("SELECT detail FROM events WHERE txn_id = ? AND kind = ?", (txn_id, kind))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_approved_sale_ends_with_the_cards_tc(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        sale = desk.till.do("sale", card="c3", amount=30_00)
        assert sale is not None and sale.state == "approved", desk.lines
        final = desk.engine.final_field55(sale.txn_id)  # sealed in the journal for the TC upload
        assert final is not None
        tags = ber_tlv(final)
        assert tags["9F27"][0] & 0xC0 == 0x40 and len(tags["9F26"]) == 8  # TC
        assert not desk.engine.awaiting_card(sale.txn_id)
        assert desk.engine.journal.saf_items(["armed", "queued"]) == []  # the reversal was disarmed on the TC
        (auth,) = desk.auths()
        assert int(auth.icc["9F02"].hex()) == auth.amount == 30_00
        assert auth.icc["9F27"] == b"\x80" and auth.icc["9F26"] != tags["9F26"]  # ARQC on the wire, TC kept
        assert int(auth.icc["9F36"].hex(), 16) == int(tags["9F36"].hex(), 16)  # one transaction, one ATC
        assert [e["status"] for e in desk.host_saw("sale")] == ["approved"] and desk.host_saw("reversal") == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_host_approves_but_the_card_declines_the_sale_is_reversed(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        desk.insert("mastercard_nocvm", second_gac="decline")
        sale = desk.till.do("sale", card="c3", amount=42_00)
        assert sale is not None and sale.response_code == "00"
        assert sale.state == "reversed", desk.lines  # host said 00, the card said AAC: reversed, acknowledged
        assert sale.txn_id in desk.till.card_declined
        (inc,) = desk.till.incidents
        assert (inc.kind, inc.rule, inc.outcome) == ("reversal", "card_declined_after_approval", "reversed")
        assert "card declined" in inc.detail
        (row,) = desk.engine.journal.incidents("card_declined_after_approval")
        assert row["txn_id"] == sale.txn_id
        reversal = desk.till.sent[-1]
        assert reversal.mti == "0400"
        if dialect == "cup":
            assert reversal["39"] == "06"  # CUP reversal reason: other (pos-flows.md §B)
        assert [e["status"] for e in desk.host_saw("sale")] == ["reversed"]
        assert desk.till.notices, "the customer is told the charge was cancelled"
        assert any("AAC" in line for line in desk.lines)
    # the capture replays to the same: the recorded card answers AAC again and the replay's engine reverses
    with replay(desk.record, desk=Till.for_replay) as replayed:
        assert [(i.kind, i.rule, i.outcome) for i in replayed.incidents] == [
            ("reversal", "card_declined_after_approval", "reversed")]
        assert [m.mti for m in replayed.sent] == ["0200", "0400"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_card_read_is_single_use_also_after_a_restart(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        shown = desk.till.present("c1", 10_00)
        first = desk.engine.sale(shown.card, 10_00)
        assert first.approved
        sent = len(desk.till.sent)
        with pytest.raises(CryptogramReused) as err:
            desk.engine.sale(shown.card, 10_00)
        assert err.value.used_by == first.txn_id and first.txn_id in str(err.value)
        assert len(desk.till.sent) == sent  # refused before the wire
        outcome = shown.complete(HostAnswer("00"))
        assert outcome is not None and outcome.cryptogram_type == "TC"
        shown.close()
        engine = desk.engine_again()
        desk.engine = engine
        with pytest.raises(CryptogramReused, match=first.txn_id):
            engine.sale(shown.card, 10_00)
        assert len(desk.host_saw("sale")) == 1
        assert len(engine.journal.find_txns()) == 1  # nothing journaled for the refused attempts


@pytest.mark.parametrize("dialect", DIALECTS)
def test_9f02_not_field_4_is_refused_before_the_wire(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        shown = desk.till.present("c3", 4_00)  # the card computes its ARQC over 4.00
        try:
            with pytest.raises(CardAmountMismatch) as err:
                desk.engine.sale(shown.card, 5_00)
        finally:
            shown.close()
        assert (err.value.card_amount, err.value.amount) == (4_00, 5_00)
        assert "9F02 = 400" in str(err.value) and "field 4 would be 500" in str(err.value)
        assert desk.till.sent == [] and desk.engine.journal.find_txns() == [] and desk.host_saw("sale") == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_wrong_amount_and_wrong_card_read_the_card_again(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        over = desk.till.do("sale", card="c3", amount=100_00)
        assert over is not None and over.approved
        desk.till.do("wrong_amount", txn=over.txn_id, amount=10_00)
        wrong = desk.till.do("sale", card="c1", amount=45_00)
        assert wrong is not None and wrong.approved
        desk.till.do("wrong_card", txn=wrong.txn_id, card="c2")
        assert [i.outcome for i in desk.till.incidents] == ["corrected", "corrected"], desk.till.incidents
        auths = [a for a in desk.auths() if a.icc]
        assert [a.amount for a in auths] == [100_00, 10_00, 45_00, 45_00]
        assert amount_problems(auths) == [] and replay_problems(auths) == []
        original, resale = auths[0], auths[1]
        assert resale.pan == original.pan  # the same card, read again:
        assert resale.icc["9F26"] != original.icc["9F26"]  # a new cryptogram
        assert int(resale.icc["9F36"].hex(), 16) > int(original.icc["9F36"].hex(), 16)  # a new, higher ATC
        assert int(resale.icc["9F02"].hex()) == resale.amount == 10_00
        right = auths[3]
        assert right.pan != auths[2].pan and int(right.icc["9F02"].hex()) == 45_00
        reads = [line for line in desk.lines if line.startswith("card read for sale")]
        assert len(reads) == 4 and "(c3, 10.00)" in reads[1] and "(c2, 45.00)" in reads[3]
        # acq-audit: the voids of the overcharge and of the wrong card read no card (c3 was read for the new
        # sale, c1 not at all): keyed from the till's records, 22 = 01x, no 23, no track
        day = acquirer_audit.read_day(desk.record, dialect)
        voids = [m for m in day.out() if day.kind(m) == "void"]
        assert [(m.get("22")[:2], "23" in m.doc, "35" in m.doc) for m in voids] == [("01", False, False)] * 2
        assert acquirer_audit.entry_mode_problems(day) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_approval_the_card_never_answered_is_reversed_at_recovery(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        shown = desk.till.present("c3", 20_00)
        sale = desk.engine.sale(shown.card, 20_00)  # the terminal stops here: no second GENERATE AC
        shown.close()
        assert sale.approved and desk.engine.awaiting_card(sale.txn_id)
        assert [i.kind for i in desk.engine.journal.saf_items(["armed"])] == ["reversal"]  # still armed
        engine = desk.engine_again()
        desk.engine = engine
        report = engine.recover()
        assert report.reversals_released == [sale.txn_id]
        assert engine.journal.get_txn(sale.txn_id).state == "reversed"
        (row,) = engine.journal.incidents("card_declined_after_approval")
        assert row["txn_id"] == sale.txn_id and "second GENERATE AC" in row["message"]
        assert [e["status"] for e in desk.host_saw("sale")] == ["reversed"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_stored_chip_read_is_sent_once_and_no_card_sends_nothing(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        shown = desk.till.present("c3", 10_00)
        shown.close()  # the read is kept, the card is gone: a stored chip read (a test card, a replay)
        desk.till.add_card("k1", replace(shown.card, second_gac=False))
        first = desk.till.do("sale", card="k1", amount=10_00)
        assert first is not None and first.approved, desk.lines
        assert desk.till.do("sale", card="k1", amount=10_00) is None
        assert desk.till.refusal is not None and f"already sent in {first.txn_id}" in desk.till.refusal
        assert desk.till.do("sale", card="c9", amount=10_00) is None  # no such card is presented
        assert desk.till.refusal is not None and "no card 'c9'" in desk.till.refusal
        assert len(desk.host_saw("sale")) == 1 and len(desk.engine.journal.find_txns()) == 1


class PulledBeforeTheSecondGac:
    """The card is read, then leaves the reader before the terminal gives it the host's answer."""

    def __init__(self, inner: DemoCards) -> None:
        self.inner = inner

    def present(self, request: CardRequest) -> Any:
        shown = self.inner.present(request)

        def pulled(answer: HostAnswer) -> None:
            raise OSError("card removed")

        shown.complete = pulled
        return shown


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_card_pulled_before_the_second_generate_ac_is_reversed(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        assert isinstance(desk.till.presenter, DemoCards)
        desk.till.presenter = PulledBeforeTheSecondGac(desk.till.presenter)
        sale = desk.till.do("sale", card="c3", amount=33_00)
        assert sale is not None and sale.response_code == "00" and sale.state == "reversed"
        assert any("did not complete" in line and "card removed" in line for line in desk.lines)
        (inc,) = desk.till.incidents
        assert (inc.kind, inc.rule) == ("reversal", "card_declined_after_approval")
        assert [e["status"] for e in desk.host_saw("sale")] == ["reversed"]
