"""read_card builds its CardSession in one step (session._new_session) instead of through the frozen dataclass
constructor: the object must be the one the constructor makes, with every field set."""

from __future__ import annotations

from datetime import datetime

from firmware_sim.card import Card, get_profile
from posguard.emv import read_card
from posguard.emv.session import CARD_SESSION_FIELDS, CardSession, _new_session
from posguard.emv.terminal import EmvTerminal, Transaction
from posguard.sensitive import Pan
from tests.emv.test_engine_card import AppletReader


def test_one_step_build_is_the_constructors_object() -> None:
    values = dict(masked_pan="625094******0014", pan_token="t", expiry="2912", aid="A000000333010101",
                  label="UnionPay Debit", cvm_required="online_pin", cvm_results=b"\x42\x03\x00",
                  cryptogram_type="ARQC", atc=7, tvr=bytes(5), tsi=b"\xe8\x00", field55=b"\x9f\x36\x02\x00\x07",
                  atr=b"\x3b\x00", pan_sequence="01", service_code="220", selection_method="PSE", apdu_count=21,
                  cvm_trace=("rule 4203: online PIN",), pan=Pan("6250947000000014"), track2=None, pin_block=None,
                  _ctx=None)
    assert set(values) == CARD_SESSION_FIELDS
    fast, slow = _new_session(**values), CardSession(**values)
    assert type(fast) is CardSession
    assert vars(fast) == vars(slow) and fast == slow and hash(fast) == hash(slow)
    assert repr(fast) == repr(slow) and fast.to_dict() == slow.to_dict()


def test_read_card_sets_every_field() -> None:
    reader = AppletReader(Card(get_profile("unionpay_debit_pin")))
    session = read_card(reader, EmvTerminal(pan_token_key=bytes(range(32))),
                        Transaction(amount=12345, when=datetime(2026, 5, 1, 10, 30)))
    assert set(vars(session)) == CARD_SESSION_FIELDS
