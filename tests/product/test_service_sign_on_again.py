"""RC 77 after a sale (issue 12 §1, pos-flows.md §B "RC 77 requires a new sign-on"): the till signs on again at once
and says so — "signed on again ... present the card again" — and does **not** re-send the sale: the host did not
process it, and the card's ARQC is single use (EMV Book 2 A1.3; the engine refuses a reused cryptogram). The sale
ends cleanly declined: RC 77 journaled, the card completed with its AAC (nothing awaits the card), no reversal owed,
nothing booked at the host; the card presented again is a new sale with a new cryptogram and ATC.

Real parts: the acquirer host as its own program (strict: sign-on, MAC, PIN block, local date), the simulated
card in the serial GemPC Twin reader on a pty, the service's till (tests/product/test_card_per_transaction.py's
desk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.product.test_card_per_transaction import DIALECTS, desk_for


@pytest.mark.parametrize("dialect", DIALECTS)
def test_rc_77_on_a_sale_signs_on_again_and_asks_for_the_card_again(dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        first = desk.till.do("sale", card="c3", amount=10_00)  # signs on (keys from the host), approved
        assert first is not None and first.approved, desk.lines
        host = desk.rig.host
        before = host.ctl.call("keys", tid=desk.terminal.terminal_id)
        host.ctl.call("demand_signon", mode="rc")  # the acquirer wants a new sign-on: everything else 77
        refused = desk.till.do("sale", card="c3", amount=20_00)
        assert refused is not None and (refused.state, refused.response_code) == ("declined", "77"), desk.lines
        said = [line for line in desk.lines if "RC 77" in line]
        assert said and "signed on again" in said[-1] and "present the card again" in said[-1], desk.lines
        after = host.ctl.call("keys", tid=desk.terminal.terminal_id)
        assert after["state"] == "signed_on" and after["serial"] > before["serial"]  # a new sign-on, new keys
        assert not desk.engine.journal.sign_on_required()
        # clean: declined once, the card's final word was an AAC, no reversal owed, nothing booked
        assert desk.engine.journal.get_txn(refused.txn_id).state == "declined"
        assert not desk.engine.awaiting_card(refused.txn_id)
        assert desk.engine.journal.saf_items(["armed", "queued"]) == []
        assert [e["amount"] for e in desk.host_saw("sale") if e["status"] == "approved"] == [10_00]
        assert desk.host_saw("reversal") == []
        # not re-sent: one 0200 for the 77'd sale on the wire, then the sign-on
        auths = desk.auths()
        assert [a.amount for a in auths] == [10_00, 20_00]
        again = desk.till.do("sale", card="c3", amount=20_00)  # the card presented again
        assert again is not None and again.approved and again.txn_id != refused.txn_id, desk.lines
        auths = desk.auths()
        assert [a.amount for a in auths] == [10_00, 20_00, 20_00]
        assert auths[1].response_code == "77" and auths[2].icc["9F26"] != auths[1].icc["9F26"]  # a new cryptogram
        assert int(auths[2].icc["9F36"].hex(), 16) > int(auths[1].icc["9F36"].hex(), 16)  # and a new ATC
