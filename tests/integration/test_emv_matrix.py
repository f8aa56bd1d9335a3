"""Issue 11 §3 "Proof": the EMV end-to-end matrix — every card profile of the card simulator x each dialect family
(CUP and ISO 8583 ASCII), through the real parts: the till presents the simulated card (the applet in process,
``tests/emv/test_engine_card.AppletReader``) for each charge at its amount, the engine talks to the acquirer
simulator over real TCP (strict: signed on, every request MACed with the sign-on's key), whose issuer verifies
the ARQC with pyemv. The wire is read back with pyiso8583 and the simulator's own dialect tables (the
independent oracle, ``tests/integration/test_swipe_tc_wire.oracle``).

(a) approved with the card's TC, kept for the upload and on the upload's wire;
(b) the host approves, the card answers AAC: the sale is reversed (reason per dialect) with the card's final
    answer in the reversal's field 55, and the incident says so;
(c) the ARPC fails (``bad_arpc``): the card follows its own rules (AIP issuer-authentication bit, the profile's
    ``issuer_auth_failure``) and the terminal keeps the TC or reverses the AAC — the expectation is derived
    from the profile data;
(d) an issuer script (``issuer_script``, template 71 and 72): the card runs it, 9F5B reaches the kept result and
    the upload;
(e) an ATC replay (the card's ``atc_replay`` fault: the same ATC with a new ARQC): the terminal sends it (its
    single-use check is on the cryptogram; the ATC check is the issuer's), the issuer declines it and no charge
    stands;
(f) 9F02 != field 4 cannot be sent: ``CardAmountMismatch`` before the wire, nothing journaled or sent.

One host per test: the issuer remembers each card's last ATC, so a host shared between tests would see a fresh
card's ATC as a replay (the tests would depend on their order).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.card import Card
from firmware_sim.card.profiles import profile_names
from firmware_sim.host import HostSimulator
from posguard.clock import VirtualClock
from posguard.emv.presenter import EmvPresentation, present_chip
from posguard.emv.terminal import EmvTerminal, terminal_capabilities
from posguard.engine.chart import CHARGE_STANDS
from posguard.engine.detectors import Detectors
from posguard.engine.engine import REASON_CARD_DECLINED, TransactionEngine, TxnResult
from posguard.engine.errors import CardAmountMismatch
from posguard.engine.hostlink import LinkEvent, LinkEventKind
from posguard.engine.journal import Journal
from posguard.presenting import CardRequest
from posguard.service.till import Till
from tests.emv.test_engine_card import AppletReader
from tests.engine.conftest import TERMINAL, TOKEN_KEY
from tests.firmware_sim.emv import tlv_items
from tests.host_sim.harness import linked
from tests.integration.test_signon_settlement_with_host_sim import DECLINED_PAN
from tests.integration.test_swipe_tc_wire import oracle, swipe

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

DIALECTS = ("cup", "iso87ascii")
PROFILES = tuple(profile_names())  # every card the simulator has
#: the terminal without a PIN pad (9F33 announces no PIN): the UnionPay debit card's CVM list falls to signature
EMV = EmvTerminal(pan_token_key=TOKEN_KEY, capabilities=terminal_capabilities(pin_pad=False))
#: the issuer's RC for a replayed ATC per dialect family (firmware_sim/host/issuer.py table: 05 do not honor)
ATC_REPLAY_RC = {"cup": "05", "iso87ascii": "05"}
CID_TC, CID_AAC, CID_ARQC = 0x40, 0x00, 0x80
AIP1_ISSUER_AUTH = 0x04  # AIP byte 1 bit 3 (EMV Book 3 Annex C1)
TVR5_ISSUER_AUTH_FAILED = 0x40  # TVR byte 5 bit 7 (EMV Book 3 Annex C5)
#: the CVR (last 4 bytes of 9F10 for the simulator's CVN) byte 1 bits 8-7: the second GENERATE AC's answer
CVR_SECOND_GAC = {0b00: "AAC", 0b01: "TC", 0b10: "not requested"}
CVR3_ISSUER_AUTH_FAILED = 0x80


# -- the desk ---------------------------------------------------------------------------------------
class Wallet:
    """The customer's cards in the in-process slot: each charge reads the card the till names at the charge's
    amount (a new card session, :func:`posguard.emv.presenter.present_chip`)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.cards: dict[str, Card] = {}

    def present(self, request: CardRequest) -> EmvPresentation:
        return present_chip(AppletReader(self.cards[request.ref]), EMV, request, when=self.when())

    def when(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)


@dataclass
class Lane:
    dialect: str
    sim: HostSimulator
    clock: VirtualClock
    engine: TransactionEngine
    till: Till
    wallet: Wallet
    events: list[LinkEvent] = field(default_factory=list)

    def insert(self, profile: str, **overrides: Any) -> Card:
        card = Card(profile, **overrides)
        self.wallet.cards[profile] = card
        return card

    def sale(self, profile: str, amount: int) -> TxnResult:
        if profile not in self.wallet.cards:
            self.insert(profile)
        result = self.till.do("sale", card=profile, amount=amount)
        assert isinstance(result, TxnResult), self.till.refusal
        return result

    def wire(self, mti: str | None = None) -> list[dict[str, Any]]:
        """Every request the engine sent, decoded by pyiso8583 with the simulator's dialect spec."""
        docs = [oracle(m, self.dialect) for m in self.till.sent]
        return [d for d in docs if mti is None or d["t"] == mti]

    def answers(self, mti: str) -> list[dict[str, bytes]]:
        """Field 55 of each answer of ``mti`` the link received (the issuer's 91 and scripts)."""
        return [icc(m.get("55") or b"") for e in self.events if e.kind == LinkEventKind.RESPONSE
                and (m := e.message) is not None and m.mti == mti]

    def uploads_for(self, pan: str) -> list[dict[str, Any]]:
        """Settle, and return the uploads (0320) of ``pan``: CUP uploads the TC of a balanced batch (60.3 = 203);
        the ISO dialects upload only after an unbalanced 0500 (RC 95), so the host is made to book one sale
        declined while the terminal hears 00 (as ``test_swipe_tc_wire`` does)."""
        if self.dialect != "cup":
            self.sim.add_fault("wrong_rc", rc="00")
            self.engine.sale(swipe(pan=DECLINED_PAN), 25_00)
        result = self.engine.settle()
        assert result.balanced is (self.dialect == "cup")
        return [u for u in self.wire("0320") if u.get("2") == pan]


@pytest.fixture(params=DIALECTS)
def lane(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lane]:
    with linked(dialect=request.param) as (sim, link, clock, events):
        engine = TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, request.param, TERMINAL,
                                   clock, Detectors.default(clock))
        till = Till(engine, dialect=request.param)
        wallet = Wallet(clock)
        till.presenter = wallet
        try:
            yield Lane(request.param, sim, clock, engine, till, wallet, events)
        finally:
            till.close()
            engine.journal.close()


# -- reading what went on the wire --------------------------------------------------------------------
def icc(value: str | bytes) -> dict[str, bytes]:
    """The top-level objects of a field 55 (hex text or bytes) by tag, by the tests' own TLV reader (a script
    template 71/72 is one object; read inside it with ``icc`` again)."""
    raw = value if isinstance(value, bytes) else bytes.fromhex(value)
    return {tag: v for tag, v, _constructed in tlv_items(raw)}


def cvr(tags: dict[str, bytes]) -> bytes:
    return tags["9F10"][-4:]


def second_gac(tags: dict[str, bytes]) -> str:
    """What the CVR in 9F10 says the card answered at the second GENERATE AC."""
    return CVR_SECOND_GAC[cvr(tags)[0] >> 6]


def final_of(lane: Lane, txn_id: str) -> dict[str, bytes]:
    final = lane.engine.final_field55(txn_id)
    assert final is not None, f"no card result kept for {txn_id}"
    return icc(final)


def card_pan(card: Card) -> str:
    return str(card.profile["pan"])


def assert_reversed_with_the_cards_answer(lane: Lane, sale: TxnResult, arqc: dict[str, bytes]) -> dict[str, bytes]:
    """The sale was reversed after the card's AAC: one 0400 with the reason per dialect and the card's final
    answer in 55, acknowledged by the host (no charge stands), and the incident says why. Returns its 55."""
    assert sale.response_code == "00" and sale.state == "reversed", (sale.state, sale.message)
    assert sale.txn_id in lane.till.card_declined
    [req] = lane.wire("0200")
    [rev] = lane.wire("0400")
    if lane.dialect == "cup":  # CUP: the original's STAN and the reason in 39 (06: the card declined)
        assert rev["11"] == req["11"] and rev["39"] == REASON_CARD_DECLINED
    else:  # ISO 8583:1987: a STAN of its own, the original in 90, no reason on the wire
        assert rev["11"] != req["11"] and rev["90"][:10] == "0200" + req["11"] and "39" not in rev
    tags = icc(rev["55"])
    assert {"95", "9F10", "9F36"} <= set(tags) <= {"95", "9F10", "9F1E", "9F36", "DF31"}  # pos-flows.md §B
    assert second_gac(tags) == "AAC" and second_gac(arqc) == "not requested"  # the card's final answer
    assert tags["9F10"] != arqc["9F10"] and tags["9F36"] == arqc["9F36"]  # the same transaction's ATC
    (inc,) = lane.engine.journal.incidents("card_declined_after_approval")
    assert inc["txn_id"] == sale.txn_id and "the card declined at the second GENERATE AC (AAC)" in inc["message"]
    [entry] = lane.sim.ledger.find(kind="sale")
    assert entry.status == "reversed"  # the acquirer undid it
    [host_rev] = lane.sim.ledger.find(kind="reversal")
    assert "card answer at GENERATE AC 2: AAC" in host_rev.note, host_rev.note  # the issuer read the final 55
    return tags


# -- (a) approved with TC ------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_approved_with_the_cards_tc_kept_and_uploaded(lane: Lane, profile: str) -> None:
    sale = lane.sale(profile, 123_45)
    assert sale.response_code == "00" and sale.state in CHARGE_STANDS, (sale.state, sale.message)
    [req] = lane.wire("0200")
    arqc = icc(req["55"])
    assert arqc["9F27"][0] & 0xC0 == CID_ARQC and int(arqc["9F02"].hex()) == int(req["4"]) == 123_45
    final = final_of(lane, sale.txn_id)
    assert final["9F27"][0] & 0xC0 == CID_TC and second_gac(final) == "TC"
    assert final["9F36"] == arqc["9F36"] and final["9F26"] != arqc["9F26"]  # one ATC, a new cryptogram
    assert not lane.engine.awaiting_card(sale.txn_id)
    [done] = lane.engine.journal.query("SELECT detail FROM events WHERE txn_id = ? AND kind = 'card_completed'",
                                       (sale.txn_id,))
    assert json.loads(done["detail"])["cryptogram"] == "TC"
    assert lane.engine.journal.saf_items(["armed", "queued"]) == []  # the armed reversal was disarmed on the TC
    assert lane.wire("0400") == [] and lane.sim.ledger.find(kind="sale")[0].status == "approved"
    [upload] = lane.uploads_for(card_pan(lane.wallet.cards[profile]))
    if lane.dialect == "cup":
        assert upload["60"][8:11] == "203"  # the TC upload
    uploaded = icc(upload["55"])
    assert uploaded["9F26"] == final["9F26"] and uploaded["9F27"][0] & 0xC0 == CID_TC


# -- (b) the host approves, the card declines ---------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_host_approves_the_card_answers_aac_and_the_sale_is_reversed(lane: Lane, profile: str) -> None:
    lane.insert(profile, second_gac="decline")
    sale = lane.sale(profile, 42_00)
    arqc = icc(lane.wire("0200")[0]["55"])
    tags = assert_reversed_with_the_cards_answer(lane, sale, arqc)
    assert "DF31" not in tags  # no script was delivered
    assert lane.engine.final_field55(sale.txn_id) is None  # nothing to upload: the sale is gone


# -- (c) the ARPC fails: the card's own rules -------------------------------------------------------------
@pytest.mark.parametrize("rule", ["decline", "approve"])
@pytest.mark.parametrize("profile", PROFILES)
def test_a_bad_arpc_follows_the_cards_rules(lane: Lane, profile: str, rule: str) -> None:
    card = lane.insert(profile, issuer_auth_failure=rule)
    lane.sim.add_fault("bad_arpc", mti="0200")
    sale = lane.sale(profile, 77_00)
    arqc = icc(lane.wire("0200")[0]["55"])
    [answer] = lane.answers("0210")
    # what the card's data says: issuer authentication is performed when its AIP supports it and the issuer sent
    # 91; then a failed ARPC makes the card decline when the profile's rule says so (EMV Book 3 10.9, Book 2 8.2)
    performed = bool(bytes.fromhex(card.profile["aip"])[0] & AIP1_ISSUER_AUTH) and "91" in answer
    declines = performed and card.profile["issuer_auth_failure"] == "decline"
    if declines:
        tags = assert_reversed_with_the_cards_answer(lane, sale, arqc)
        assert cvr(tags)[2] & CVR3_ISSUER_AUTH_FAILED  # the reversal tells the issuer why the card declined
        assert "issuer authentication failed" in lane.sim.ledger.find(kind="reversal")[0].note
        return
    assert sale.response_code == "00" and sale.state in CHARGE_STANDS and lane.wire("0400") == []
    final = final_of(lane, sale.txn_id)
    assert final["9F27"][0] & 0xC0 == CID_TC
    assert bool(cvr(final)[2] & CVR3_ISSUER_AUTH_FAILED) is performed  # the card kept the failure in its CVR
    external_auth = performed and all(tag != "91" for tag, _ in card.profile["cdol2"])
    assert bool(final["95"][4] & TVR5_ISSUER_AUTH_FAILED) is external_auth  # EXTERNAL AUTHENTICATE 6300


# -- (d) issuer scripts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", ["71", "72"])
@pytest.mark.parametrize("profile", PROFILES)
def test_an_issuer_script_runs_and_its_result_reaches_the_upload(lane: Lane, profile: str, template: str) -> None:
    card = lane.insert(profile)
    lane.sim.add_fault("issuer_script", mti="0200", template=template, command="put_data")
    sale = lane.sale(profile, 15_00)
    assert sale.response_code == "00" and sale.state in CHARGE_STANDS
    [answer] = lane.answers("0210")
    script_id = icc(answer[template])["9F18"] if template in answer else None
    assert script_id is not None, f"the answer carries no {template} template"
    assert card.applet.memory.scripts_processed == 1 and not card.applet.memory.script_failed  # the card ran it
    assert card.applet.memory.put_data["9F58"] == bytes.fromhex("03")  # and its command took effect
    final = final_of(lane, sale.txn_id)
    results = final["9F5B"]
    assert results[0] >> 4 == 2 and results[1:5] == script_id  # EMV Book 4 A5: performed, script id 9F18
    [upload] = lane.uploads_for(card_pan(card))
    assert icc(upload["55"])["9F5B"] == results


# -- (e) a replayed ATC ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_a_replayed_atc_goes_to_the_issuer_and_is_declined(lane: Lane, profile: str) -> None:
    card = lane.insert(profile)
    first = lane.sale(profile, 10_00)
    assert first.response_code == "00"
    card.faults.add("atc_replay ins=AE")  # the card's next first GENERATE AC reuses its ATC (a new ARQC)
    replayed = lane.sale(profile, 11_00)
    one, two = (icc(r["55"]) for r in lane.wire("0200"))
    assert two["9F36"] == one["9F36"] and two["9F26"] != one["9F26"]  # the same ATC, a new cryptogram, sent
    rc = ATC_REPLAY_RC[lane.dialect]
    assert (replayed.response_code, replayed.state) == (rc, "declined"), replayed.message
    atc = int.from_bytes(one["9F36"], "big")
    [_, declined] = lane.sim.ledger.find(kind="sale")
    assert declined.status == "declined" and declined.rc == rc
    assert f"ATC {atc} is not greater than the last one seen ({atc})" in declined.note
    assert lane.wire("0400") == [] and replayed.txn_id not in lane.till.card_declined  # nothing to undo
    assert final_of(lane, replayed.txn_id)["9F27"][0] & 0xC0 == CID_AAC  # the card was told: AAC, kept as such
    assert lane.engine.batch_totals()["debit_count"] == 1  # the terminal's books: the first sale only
    assert [e.amount for e in lane.sim.ledger.find(kind="sale", status="approved")] == [10_00]  # no charge stands


# -- (f) 9F02 != field 4 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES)
def test_a_cryptogram_for_another_amount_never_reaches_the_wire(lane: Lane, profile: str) -> None:
    card = lane.insert(profile)
    shown = present_chip(AppletReader(card), EMV, CardRequest(profile, 50_00), when=lane.wallet.when())
    try:
        with pytest.raises(CardAmountMismatch, match="9F02 = 5000 .* field 4 would be 5001"):
            lane.engine.sale(shown.card, 50_01)
    finally:
        shown.close()
    assert lane.till.sent == [] and [r for r in lane.sim.received if r["t"] not in ("0800", "0820")] == []
    assert lane.engine.journal.find_txns() == []
    assert lane.engine.journal.query("SELECT id FROM events WHERE kind = 'cryptogram_sent'") == []
