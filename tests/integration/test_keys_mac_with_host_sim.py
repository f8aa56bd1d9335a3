"""Issue 12 §1, §2, §5 (keys and MAC): the real engine over the real TcpHostLink against the acquirer simulator in
its strict default, both dialect families, on a virtual clock.

The host generates fresh working keys under the terminal's TMK at every sign-on (CUP field 62, ISO field 48),
requires a MAC under the issued MAC key on every message that needs one (A0 otherwise, nothing booked), and
answers 77 to a terminal that is not signed on or whose keys are older than its key life.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from firmware_sim.host.keys import kcv4
from firmware_sim.host.mac import MACED_MTIS
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import EnginePolicies, TransactionEngine
from posguard.engine.errors import SignOnFailed
from posguard.engine.hostlink import TcpHostLink
from posguard.engine.journal import Journal
from posguard.engine.mac import MacKey, MacScheme
from posguard.iso8583.message import Message
from tests.engine.conftest import TERMINAL, card
from tests.host_sim.harness import keyed, linked

DIALECTS = ["iso87ascii", "iso87", "cup"]
TID = TERMINAL.terminal_id
OTHER_TMK = "1111111111111111FEDCBA9876543210"


@dataclass
class Desk:
    dialect: str
    sim: HostSimulator
    link: TcpHostLink
    clock: VirtualClock
    path: Path
    engine: TransactionEngine

    def restart(self, policies: EnginePolicies | None = None) -> None:
        self.link.close()
        self.engine.journal.close()
        self.engine = TransactionEngine(Journal(self.path, clock=self.clock), self.link, self.dialect, keyed(TERMINAL),
                                        self.clock, Detectors.default(self.clock), policies)

    def events(self, kind: str) -> list[dict[str, Any]]:
        rows = self.engine.journal.query("SELECT detail FROM events WHERE kind = ? ORDER BY id", (kind,))
        return [json.loads(r["detail"]) for r in rows]

    def requests(self, mti: str | None = None) -> list[dict[str, str]]:
        return [r for r in self.sim.received if mti is None or r["t"] == mti]


@contextmanager
def desk(dialect: str, tmp_path: Path, *, policies: EnginePolicies | None = None,
         **sim_config: Any) -> Iterator[Desk]:
    with linked(dialect=dialect, sim_config=sim_config) as (sim, link, clock, _events):
        journal = Journal(tmp_path / "journal.db", clock=clock)
        engine = TransactionEngine(journal, link, dialect, keyed(TERMINAL), clock, Detectors.default(clock), policies)
        d = Desk(dialect, sim, link, clock, tmp_path / "journal.db", engine)
        try:
            yield d
        finally:
            d.engine.journal.close()


def _mac_field(doc: dict[str, str]) -> str | None:
    return next((f for f in ("64", "128") if f in doc), None)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sign_on_brings_fresh_keys_that_check(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        sale = d.engine.sale(card(), 12_00)
        assert sale.approved, sale.operator_message
        [signon] = d.requests("0800")
        assert signon.get("70", "001") == "001" and signon.get("60", "00000000" + "003")[8:11] in ("001", "003")
        issued = d.sim.processor.working_keys(TID)
        assert issued is not None and d.engine.working_keys is not None
        assert d.engine.working_keys.mac.kcv == kcv4(issued.mac_key).hex().upper()[:6]
        assert d.engine.working_keys.pin_kcv == kcv4(issued.pin_key)
        [sealed] = d.events("working_keys")
        assert sealed["mac_kcv"] == d.engine.working_keys.mac.kcv and "sealed" in sealed
        key_field = "62" if dialect == "cup" else "48"
        [answer] = [r for r in d.sim.sent if r["t"] == "0810"]
        assert len(answer[key_field]) == 80  # 40 bytes: PIN key, KCV, MAC key, KCV (hex text)
        [host_sale] = d.sim.ledger.find(kind="sale", tid=TID)
        assert host_sale.status == "approved" and not d.sim.refusals


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_check_value_means_no_transaction(dialect: str, tmp_path: Path) -> None:
    """The host holds another TMK for this terminal: the keys decrypt to values that fail their check values."""
    with desk(dialect, tmp_path, terminal_keys={TID: OTHER_TMK}) as d:
        with pytest.raises(SignOnFailed, match="does not match its check value"):
            d.engine.sale(card(), 12_00)
        with pytest.raises(SignOnFailed):
            d.engine.sale(card(), 13_00)
        assert d.sim.ledger.find(kind="sale") == [] and d.requests("0200") == []
        incidents = d.engine.journal.query("SELECT kind FROM incidents WHERE kind = 'key_check_failed'")
        assert len(incidents) == 2 and d.engine.working_keys is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_message_of_a_short_day_is_maced_and_verified(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        e = d.engine
        kept = e.sale(card(), 100_00)
        voided = e.sale(card(), 20_00)
        assert kept.approved and voided.approved
        assert e.void(voided.txn_id).approved
        assert e.refund(kept.txn_id, 10_00).approved
        d.sim.add_fault("no_response", mti="0200", times=1)
        lost = e.sale(card(), 5_00)  # timeout -> reversal (0400)
        assert not lost.approved
        pre = e.preauth(card(), 30_00)
        assert pre.approved
        assert e.complete(pre.txn_id).approved  # ISO: 0220 advice
        if dialect != "cup":
            d.sim.add_fault("wrong_rc", mti="0200", rc="51", times=1)  # host books it: 95, uploads, 0500/96
            e.sale(card(), 7_00)
        e.flush()
        result = e.settle()
        assert result is not None
        assert not d.sim.refusals, d.sim.refusals
        maced = {r["t"] for r in d.requests() if r["t"] in MACED_MTIS}
        want = {"0200", "0400", "0100", "0220", "0500", "0320"}  # sale/void, reversal, preauth, advice, settlement
        assert want <= maced, maced
        for r in d.requests():
            if r["t"] in MACED_MTIS:
                assert _mac_field(r) is not None, f"{r['t']} STAN {r.get('11')} went without a MAC"
        for r in d.sim.sent:
            if r["t"][:2] != "08":
                assert _mac_field(r) is not None, f"the host answered {r['t']} without a MAC"
        assert d.sim.ledger.find(kind="sale", tid=TID, status="reversed")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_mac_is_answered_a0_and_nothing_is_booked(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        assert d.engine.sale(card(), 1_00).approved
        wrong = MacScheme(d.engine.profile.mac_algorithm, MacKey(bytes.fromhex("00112233445566778899AABBCCDDEEFF")))
        d.link.use_mac_key(wrong)
        res = d.engine.sale(card(), 2_00)
        assert res.response_code == "A0" and not res.approved
        assert "could not verify the MAC" in res.operator_message and "signs on again" in res.operator_message
        assert [e.amount for e in d.sim.ledger.find(kind="sale", tid=TID)] == [1_00]
        assert d.sim.refusals[-1][3:] == ("A0", "the MAC does not verify under the terminal's working MAC key")
        assert d.engine.journal.sign_on_required()  # the keys are not the host's: a sign-on before the next message
        signs_on = len(d.requests("0800"))
        again = d.engine.sale(card(), 2_00)  # signs on first, then MACs under the fresh key
        assert again.approved and len(d.requests("0800")) == signs_on + 1
        # and a request with no MAC at all, raw on the wire
        d.link.use_mac_key(None)
        with d.engine.journal.atomic("test"):
            stan = d.engine.journal.allocate_stan()
        fields = d.engine.profile.request_fields("sale", card=card(), amount_minor=3_00, currency="156", stan=stan,
                                                 batch_no=1, terminal_id=TID, merchant_id=TERMINAL.merchant_id,
                                                 now=d.clock.now())
        answer = d.link.exchange(d.engine.profile.message("0200", fields))
        assert answer.response_code == "A0"
        assert d.sim.refusals[-1][3] == "A0" and d.sim.refusals[-1][4].startswith("no MAC in field")
        assert [e.amount for e in d.sim.ledger.find(kind="sale", tid=TID)] == [1_00, 2_00]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_mac_on_an_approval_is_reversed_under_the_sign_on_key(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        d.sim.add_fault("corrupt_mac", mti="0200", times=1)
        res = d.engine.sale(card(), 4_00)
        assert not res.approved and "MacFailure" in res.operator_message
        [rev] = d.requests("0400")
        assert _mac_field(rev) is not None and not d.sim.refusals  # the reversal itself MACed and accepted
        if dialect == "cup":
            assert rev["39"] == "A0"  # CUP reversal reason: bad MAC
        [sale] = d.sim.ledger.find(kind="sale", tid=TID)
        assert sale.status == "reversed"


@pytest.mark.parametrize("source,approved", [("static", True), ("sign_on", False)])
def test_a_host_with_a_static_key_keeps_it_when_the_link_says_static(source: str, approved: bool,
                                                                     tmp_path: Path) -> None:
    """``HostLinkConfig.mac_key_source``: "static" keeps the configured key after a sign-on brings keys (for an
    acquirer that MACs with a fixed key); the default "sign_on" MACs with the sign-on's key."""
    static = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")
    with linked(dialect="iso87ascii", sim_config={"mac_algorithm": "x919", "mac_key": static},
                link_config={"mac": MacScheme("x919", MacKey(static)), "mac_key_source": source}) as (
            sim, link, clock, _events):
        engine = TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, "iso87ascii",
                                   keyed(TERMINAL), clock, Detectors.default(clock))
        res = engine.sale(card(), 1_00)  # signs on first (the TMK terminal has no keys yet)
        assert engine.working_keys is not None and res.approved is approved
        # the host refused the sign-on key's MAC (A0, its answer MACed with the static key): nothing booked
        assert [e.status for e in sim.ledger.find(kind="sale")] == (["approved"] if approved else [])
        engine.journal.close()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stale_keys_get_77_then_the_terminal_signs_on_again_and_goes_on(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path, key_life=600.0) as d:
        assert d.engine.sale(card(), 1_00).approved
        first = d.sim.processor.working_keys(TID)
        d.clock.advance(601.0)
        stale = d.engine.sale(card(), 2_00)
        assert stale.response_code == "77" and "sign-on" in stale.operator_message
        assert d.sim.refusals[-1][3] == "77" and "older than the host's key life" in d.sim.refusals[-1][4]
        again = d.engine.sale(card(), 3_00)  # signs on first: the host's demand is journaled
        assert again.approved
        second = d.sim.processor.working_keys(TID)
        assert first is not None and second is not None and second.serial > first.serial
        assert [e["reason"] for e in d.events("signed_on")] == ["no working keys", "demanded by the host"]
        assert sorted(e.amount or 0 for e in d.sim.ledger.find(kind="sale", tid=TID, status="approved")) == [1_00, 3_00]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_terminal_renews_keys_older_than_key_max_age(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path, policies=EnginePolicies(key_max_age=300.0)) as d:
        assert d.engine.sale(card(), 1_00).approved
        d.clock.advance(200.0)
        assert d.engine.sale(card(), 2_00).approved and len(d.requests("0800")) == 1
        d.clock.advance(100.0)
        assert d.engine.sale(card(), 3_00).approved
        assert len(d.requests("0800")) == 2 and not d.sim.refusals  # before the host had to say so
        assert d.events("signed_on")[-1]["reason"] == "working keys older than 300 s"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_key_rotation_refuses_the_old_mac_key(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        assert d.engine.sale(card(), 1_00).approved
        old = d.engine.working_keys
        d.engine.sign_on(reason="operator")
        new = d.engine.working_keys
        assert old is not None and new is not None and old.mac.kcv != new.mac.kcv
        assert d.engine.sale(card(), 2_00).approved  # under the new key
        d.link.use_mac_key(MacScheme(d.engine.profile.mac_algorithm, old.mac))
        refused = d.engine.sale(card(), 3_00)
        assert refused.response_code == "A0"
        assert sorted(e.amount or 0 for e in d.sim.ledger.find(kind="sale", tid=TID)) == [1_00, 2_00]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sign_off_forgets_the_keys_on_both_sides(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        assert d.engine.sale(card(), 1_00).approved
        assert d.sim.keys.state(TID) == "signed_on"
        result = d.engine.sign_off()
        assert result is not None and result.response_code == "00"
        off = d.requests("0820" if dialect == "cup" else "0800")[-1]
        assert (off["60"][8:11] if dialect == "cup" else off["70"]) == "002"
        assert d.sim.keys.state(TID) == "not_signed_on" and d.engine.working_keys is None
        assert d.engine.sign_off() is None  # not signed on: nothing to send
        d.restart()  # the next start finds the sign-off in the journal: no keys to take back
        assert d.engine.sign_on_due == "no working keys"
        assert d.engine.sale(card(), 2_00).approved


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_restart_takes_the_keys_back_from_the_journal(dialect: str, tmp_path: Path) -> None:
    with desk(dialect, tmp_path) as d:
        assert d.engine.sale(card(), 1_00).approved
        kcv = d.engine.working_keys.mac.kcv if d.engine.working_keys else ""
        d.restart()
        assert d.engine.sign_on_due is None and d.engine.working_keys is not None
        assert d.engine.working_keys.mac.kcv == kcv
        assert d.engine.sale(card(), 2_00).approved and len(d.requests("0800")) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_no_working_key_in_clear_anywhere(dialect: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with desk(dialect, tmp_path) as d:
        with d.engine.recording() as wire:
            assert d.engine.sale(card(), 1_00).approved
            d.engine.sign_on()
            assert d.engine.sale(card(), 2_00).approved
        texts = [repr(d.engine.working_keys), repr(d.engine.terminal), repr(d.link), repr(d.sim.keys),
                 repr(d.sim.processor.working_keys(TID)), caplog.text, json.dumps(d.sim.received),
                 json.dumps(d.sim.sent), " ".join(repr(m) for m in wire if isinstance(m, Message))]
        d.engine.journal.close()
        blob = Path(d.path).read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("journal.db*"))
        d.engine = TransactionEngine(Journal(d.path, clock=d.clock), d.link, dialect, keyed(TERMINAL), d.clock)
        for keys in d.sim.keys.history:
            for key in (keys.pin_key, keys.mac_key):
                for form in (key.hex(), key.hex().upper()):
                    assert all(form not in t for t in texts), "a working key in clear in a log/repr/wire record"
                    assert form.encode() not in blob
                assert key not in blob, "a working key in clear in the journal"


def test_the_demo_terminal_holds_the_tmk_the_simulator_knows() -> None:
    from firmware_sim.host.keys import TEST_TMK
    from posguard.demo.run import DEMO_TMK

    assert DEMO_TMK == TEST_TMK


def test_cup_takes_the_batch_number_from_the_sign_on(tmp_path: Path) -> None:
    """The acquirer's books put this terminal at batch 7 (its journal was replaced): the 0810's 60.2 says so and
    the empty open batch takes the number; a batch with transactions keeps its own."""
    with desk("cup", tmp_path) as d:
        d.sim.keys.set_batch(TID, 7)
        assert d.engine.sale(card(), 1_00).approved
        assert d.engine.journal.current_batch() == 7
        [sale] = d.sim.ledger.find(kind="sale", tid=TID)
        assert sale.batch == "000007"
        assert d.events("batch_from_sign_on") == [{"was": 1, "now": 7}]
        d.sim.keys.set_batch(TID, 9)
        d.engine.sign_on()
        assert d.engine.journal.current_batch() == 7  # not empty: it stays until settlement
