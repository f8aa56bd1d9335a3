"""Issue 13 item 1, through the real service (``posguard run --stdin``): the operator's ``reconcile FILE`` delivers
the notices to the outbox (``<data dir>/outbox``), not only to the journal — one notice per customer a finding
concerns (nobody else), the merchant's list with the acquirer-contact step beside them, each file named by its
incident, mode 0600, with no full card number in any of them (pos-flows.md §A "Not arrived")."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from firmware_sim.host.report import to_csv
from tests.engine.conftest import UNIONPAY_PAN, VISA_PAN
from tests.flows.conftest import TID, desk_for
from tests.flows.test_settlement_report_import import _config, _service_session, _unbalanced_batch


@pytest.mark.parametrize("dialect", ["cup", "iso87ascii"])
def test_the_service_reconcile_writes_only_the_concerned_customers_and_the_merchants_list(
        dialect: str, tmp_path: Path) -> None:
    with desk_for(dialect, tmp_path) as desk:
        declined = _unbalanced_batch(desk)  # UnionPay 10.00 approved (both agree); Visa 15.00: terminal 51, host booked
        kept = desk.journal.find_txns("state = 'settled'", ())
        report = tmp_path / "acquirer.csv"
        report.write_text(to_csv(desk.sim.ledger, dialect, TID))
        config = _config(tmp_path, desk.path, dialect)
        first, again = _service_session(config, [f"reconcile {report}", f"reconcile {report}"])
    assert first["ok"] and first["reconciled"] == [1], first
    assert again["ok"] and again["reconciled"] == [] and again["outbox"] == []  # compared already: nothing new
    outbox = tmp_path / "outbox"  # the data dir defaults to the journal's directory
    names = sorted(p.name for p in outbox.iterdir())
    assert sorted(Path(str(p)).name for p in first["outbox"]) == names  # the answer says where they are
    merchant = [n for n in names if "-merchant-" in n]
    assert [n for n in names if n not in merchant] == [f"incident-000001-unsettled_charged-001-{declined}.txt"]
    assert len(merchant) == 1 and merchant[0].startswith("incident-000001-unsettled-merchant-")
    texts = {p.name: p.read_text() for p in outbox.iterdir()}
    for path in outbox.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for text in texts.values():  # masked card numbers only
        assert VISA_PAN not in text and UNIONPAY_PAN not in text
    listing = texts[merchant[0]]
    assert f"host_booked_not_approved: {declined} sale" in listing and VISA_PAN[:6] in listing
    assert "tell the acquirer:" in listing and "sha256 " in listing and "customers told: 1" in listing
    # the approved customer both sides agree on is told nothing, anywhere
    assert kept and all(t.id not in listing.split("host_booked_not_approved")[0] for t in kept)
    assert all(t.id not in n for t in kept for n in names)
