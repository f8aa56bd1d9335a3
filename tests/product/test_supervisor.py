"""Guide 001: money going back (void, refund, and the corrections that send them) needs the supervisor.

The credential is configured as a scrypt hash, checked in constant time, rate-limited on the service's clock,
never shown or stored; who approved is journaled with the action (and, for a correction, in its incident).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.config import load_config
from posguard.incidents import get_incident
from posguard.logs import setup_logging
from posguard.service.commands import parse
from posguard.service.run import EventLog, Service
from posguard.service.supervisor import (
    SupervisorGate,
    SupervisorRefused,
    check_stored,
    hash_credential,
    verify,
)
from tests.engine.conftest import VISA_PAN
from tests.product.test_service import write_config

SECRET = "7391-blue"
STORED = hash_credential(SECRET, salt=bytes(range(16)), n=2**14)


def test_the_credential_is_stored_as_scrypt_and_weak_lines_are_refused() -> None:
    assert STORED.startswith("scrypt$16384$8$1$000102") and SECRET not in STORED
    assert verify(SECRET, STORED) and not verify("7391-Blue", STORED)
    assert check_stored(STORED) is None
    assert "power of two >= 16384" in (check_stored(hash_credential(SECRET, n=2**4)) or "")
    assert "not a scrypt$N$r$p$salt$hash line" in (check_stored("sha1$abc") or "")
    assert "hexadecimal" in (check_stored("scrypt$16384$8$1$zz$zz") or "")


def test_missing_wrong_and_rate_limited_credentials() -> None:
    clock = VirtualClock(start=1_700_000_000.0)
    gate = SupervisorGate("S01", STORED, clock, max_failures=3, lockout=60.0)
    with pytest.raises(SupervisorRefused, match=r"^void gives money back: add the supervisor's credential"):
        gate.approve(None, "void")
    with pytest.raises(SupervisorRefused, match=r"wrong supervisor credential \(2 attempt\(s\) left\)"):
        gate.approve("guess-1", "refund")
    with pytest.raises(SupervisorRefused, match=r"\(1 attempt\(s\) left\)"):
        gate.approve("guess-2", "refund")
    with pytest.raises(SupervisorRefused, match=r"3 wrong in a row, the supervisor gate is shut for 60 s") as exc:
        gate.approve("guess-3", "refund")
    assert "guess" not in str(exc.value)
    with pytest.raises(SupervisorRefused, match=r"too many wrong supervisor credentials; try again in 31 s"):
        clock.advance(30.0)
        gate.approve(SECRET, "refund")  # even the right one, while shut
    clock.advance(31.0)
    assert gate.approve(SECRET, "refund") == "S01"
    nobody = SupervisorGate("", "", clock)
    with pytest.raises(SupervisorRefused, match=r"none is configured: set supervisor.id and supervisor.credential"):
        nobody.approve(SECRET, "void")


def test_the_parser_takes_sup_only_on_money_back_and_never_shows_it() -> None:
    c = parse(f"void POSGRD01-00000001 sup={SECRET}", max_amount=100)
    assert c.supervisor == SECRET and SECRET not in repr(c)
    with pytest.raises(ValueError, match="sale takes no option 'sup'"):
        parse("sale 100 sup=1", max_amount=1000)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Service, io.StringIO]]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        path = write_config(tmp_path, sim.port)
        path.write_text(path.read_text().replace('name = "Virtual PCD 00 00"', 'name = ""').replace(
            'kind = "pcsc"', 'kind = "none"') + f'\n[supervisor]\nid = "S01"\ncredential = "{STORED}"\n')
        cfg, problems = load_config(path)
        assert problems == []
        out = io.StringIO()
        handler = setup_logging("debug", out)  # every event of the service, the till and the engine
        svc = Service(cfg, EventLog())
        try:
            svc.till.add_card("c1", CardData.from_pan(VISA_PAN, cfg.token_key, expiry="2512", scheme="visa"))
            yield svc, out
        finally:
            svc.journal.close()
            svc.lock.release()
            logging.getLogger("posguard").removeHandler(handler)


def test_void_and_refund_need_the_supervisor(service: tuple[Service, io.StringIO]) -> None:
    svc, log = service
    sale = svc.till.do("sale", card="c1", amount=50_00)
    assert sale is not None and sale.approved
    missing = svc.handle(f"void {sale.txn_id}")
    assert not missing["ok"] and "needs" not in missing and "add the supervisor's credential" in missing["error"]
    wrong = svc.handle(f"refund {sale.txn_id} 1000 sup=not-it")
    assert not wrong["ok"] and "wrong supervisor credential" in wrong["error"]
    assert svc.journal.get_txn(sale.txn_id).state == "approved"  # nothing was sent
    assert [t.kind for t in svc.journal.find_txns()] == ["sale"]
    right = svc.handle(f"refund {sale.txn_id} 1000 sup={SECRET}")
    assert right["ok"], right
    events = svc.journal.query("SELECT detail FROM events WHERE kind = 'supervisor_approval'")
    assert [json.loads(e["detail"]) for e in events] == [{"action": "refund", "supervisor": "S01"}]
    corrected = svc.handle(f"wrong_amount {sale.txn_id} 3000 sup={SECRET}")
    assert corrected["ok"], corrected
    (inc,) = corrected["incidents"]
    incident = get_incident(svc.journal, inc["incident_id"])
    assert incident.to_dict()["operator"] == "supervisor S01"
    dump = json.dumps([dict(r) for r in svc.journal.query("SELECT * FROM events")]) + log.getvalue()
    assert SECRET not in dump and "not-it" not in dump


def test_cli_prints_a_line_the_config_accepts() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "posguard.cli", "supervisor-hash"], input=SECRET + "\n",
                          capture_output=True, text=True, check=True)
    line = done.stdout.strip()
    assert check_stored(line) is None and verify(SECRET, line) and SECRET not in done.stdout + done.stderr


def test_confirm_and_decline_on_the_operator_channel(service: tuple[Service, io.StringIO]) -> None:
    svc, _log = service
    a = svc.till.do("sale", card="c1", amount=20_00)
    b = svc.till.do("sale", card="c1", amount=20_00)
    assert a is not None and b is not None
    (inc,) = svc.till.incidents
    assert inc.outcome == "awaiting_confirmation" and inc.incident_id is not None
    refused = svc.handle(f"confirm {inc.incident_id}")
    assert not refused["ok"] and "add the supervisor's credential" in refused["error"]
    done = svc.handle(f"confirm {inc.incident_id} sup={SECRET}")
    assert done["ok"], done
    assert [i["outcome"] for i in done["incidents"]] == ["voided"]
    assert get_incident(svc.journal, inc.incident_id).operator == "supervisor S01"
    again = svc.handle(f"decline {inc.incident_id}")
    assert not again["ok"] and "not awaiting confirmation" in again["error"]


def test_a_sale_for_a_paid_order_is_refused_before_the_reader(service: tuple[Service, io.StringIO]) -> None:
    svc, _log = service
    paid = svc.till.do("sale", card="c1", amount=20_00, order="A-1042")
    assert paid is not None and paid.approved
    refused = svc.handle("sale 2000 order=A-1042")
    assert not refused["ok"] and f"order A-1042 is already paid by {paid.txn_id}" in refused["error"]
    assert [t.kind for t in svc.journal.find_txns()] == ["sale"]
    # with the override, the line goes on to the card reader (none is configured here)
    assert "no card reader" in svc.handle("sale 2000 order=A-1042 override=yes")["error"]
    assert "no card reader" in svc.handle("sale 2000 order=A-1043")["error"]
