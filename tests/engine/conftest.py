"""Shared scenario pieces: a virtual clock, a journal on disk, an engine wired to a fake host, cards."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import EnginePolicies, TerminalConfig, TransactionEngine
from posguard.engine.journal import Journal
from posguard.iso8583.tlv import build_tlv
from posguard.presenting import CardNotPresented, CardRequest, StoredCard
from tests.engine.fakehost import FakeHost

TOKEN_KEY = b"T" * 32
_ATC = itertools.count(1)


def _fresh_atcs_in_child() -> None:
    """A forked child (the kill -9 tests) reads cards of its own: its ATCs never meet the parent's."""
    global _ATC
    _ATC = itertools.count(next(_ATC) + 30_000)


os.register_at_fork(after_in_child=_fresh_atcs_in_child)
DATA_KEY = bytes(range(32))
#: The fixture cards are CardData with invented chip data (not card sessions): their PANs are cards of issuers the
#: simulated acquirer does not play (not in firmware_sim/host/cardfile.json), so its issuer does not check their
#: cryptograms and the approval rules decide. Card sessions the issuer checks: tests/firmware_sim, tests/product.
VISA_PAN = "4761739001010127"
UNIONPAY_PAN = "6228480402564890018"
OTHER_PAN = "5413330089010442"
MONDAY_0900 = 1_700_470_800.0  # 2023-11-20 09:00:00 UTC

TERMINAL = TerminalConfig(terminal_id="TERM0001", merchant_id="MERCHANT0000001", token_key=TOKEN_KEY,
                          data_key=DATA_KEY, currency="CNY", host_timeout=30.0)


def card(pan: str = VISA_PAN, *, signature: bool = False, entry_mode: str = "chip", scheme: str | None = "visa",
         field55: bytes | None = None) -> CardData:
    # signature vs no CVM required (1F, EMV Book 3 C3): these terminals have no PIN pad, and the host refuses an
    # online-PIN CVM (9F34 = 42) that carries no PIN block (issue 12 §5); online PIN is tested with the EPP
    cvm = bytes.fromhex("1E0300") if signature else bytes.fromhex("1F0002")
    # every call is a new card read: a fresh cryptogram and ATC (an AC is single-use; the engine refuses a reuse)
    atc = next(_ATC) & 0xFFFF
    icc = field55 if field55 is not None else build_tlv([
        ("9F26", atc.to_bytes(8, "big")), ("9F27", b"\x80"), ("9F34", cvm), ("9F36", atc.to_bytes(2, "big")),
        ("95", bytes.fromhex("0000008000")), ("9F10", bytes.fromhex("0110A00003220000")),
    ])
    return CardData.from_pan(pan, TOKEN_KEY, expiry="2512", field55=icc, cvm_results=cvm, entry_mode=entry_mode,
                             scheme=scheme)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=MONDAY_0900)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def host(clock: VirtualClock) -> FakeHost:
    return FakeHost(clock)


EngineFactory = Callable[..., TransactionEngine]


@pytest.fixture
def make_engine(clock: VirtualClock, journal_path: Path, host: FakeHost) -> Any:
    opened: list[Journal] = []

    def factory(dialect: str = "iso87ascii", policies: EnginePolicies | None = None,
                detectors: Detectors | None = None, link: Any = None) -> TransactionEngine:
        journal = Journal(journal_path, clock=clock)
        opened.append(journal)
        return TransactionEngine(journal, link or host, dialect, TERMINAL, clock,
                                 detectors or Detectors.default(clock), policies)

    yield factory
    for j in opened:
        j.close()


@pytest.fixture
def engine(make_engine: Any) -> TransactionEngine:
    eng: TransactionEngine = make_engine()
    return eng


class FreshCards:
    """A card presenter for tests (:mod:`posguard.presenting`): each presentation of a reference is a new card
    read (a fresh cryptogram), as a customer's card inserted again for each charge."""

    def __init__(self, **makers: Callable[[], CardData]) -> None:
        self.makers = makers

    def present(self, request: CardRequest) -> StoredCard:
        if request.ref not in self.makers:
            raise CardNotPresented(f"no card {request.ref!r} in this test")
        return StoredCard(self.makers[request.ref]())
