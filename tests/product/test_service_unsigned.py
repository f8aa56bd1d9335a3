"""``posguard run`` with the unsigned verbs of guide 004 over stdin, against the host simulator and a real
pcscd+vpcd card: the follow-up task moves one incident per sale, the e-signature and the notices land under the
configured data directory, ``posguard incidents follow-ups`` lists what is to be done, and neither the
customer's phone number nor a card number is written anywhere in clear."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_sim.rig.sims import vpcd_card
from tests.product.conftest import ROOT, clear_pan_hits
from tests.product.stdin_service import stdin_service
from tests.product.test_service import host, write_config

__all__ = ["host"]  # the simulator fixture, shared with test_service

PHONE = "13912345678"


@pytest.mark.pcscd
def test_unsigned_follow_up_over_the_service(tmp_path: Path, host: object) -> None:
    config = write_config(tmp_path, host.port)  # type: ignore[attr-defined]
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    config.write_text(config.read_text().replace("[journal]\n", f'[journal]\ndata_dir = "{data}"\n')
                      + "\n[unsigned]\nfollow_up_hours = 48.0\n")
    pad = tmp_path / "pad.png"
    pad.write_bytes(b"\x89PNG strokes from the pad")
    with vpcd_card("visa_credit_sig"), stdin_service(config) as service:
        gone = service.ask("sale 1250")
        assert gone["ok"] and gone["state"] == "signature_pending", gone
        bad = service.ask(f"refuse {gone['txn']} contact=fax:{PHONE}")
        assert not bad["ok"] and "phone:NUMBER or email:ADDRESS" in bad["error"] and PHONE not in bad["error"]
        refused = service.ask(f"refuse {gone['txn']} contact=phone:{PHONE}")
        assert refused["ok"] and refused["incidents"][0]["outcome"] == "follow_up", refused
        iid = refused["incidents"][0]["incident_id"]
        contacted = service.ask(f"contacted {gone['txn']}")
        assert contacted["incidents"][0]["incident_id"] == iid
        no_sup = service.ask(f"consent_void {gone['txn']}")
        assert not no_sup["ok"]
        kept = service.ask(f"keep {gone['txn']}")
        assert kept["incidents"][0]["outcome"] == "kept_at_merchant_risk" and kept["state"] == "signature_pending"
        back = service.ask("sale 2250")
        signed = service.ask(f"sign {back['txn']} esig={pad}")
        assert signed["ok"] and signed["state"] == "signed" and signed["incidents"] == []  # in time: no incident
    out, err = service.out, service.err
    assert service.returncode == 0, err
    sigs = list((data / "signatures").iterdir())
    assert [p.read_bytes() for p in sigs] == [pad.read_bytes()] and sigs[0].name.startswith(back["txn"])
    notices = sorted(p.name for p in (data / "outbox").iterdir())
    assert notices == [f"incident-{iid:06d}-unsigned-follow_up.txt"]
    ask = (data / "outbox" / notices[0]).read_text(encoding="utf-8")
    assert "to: phone *******5678" in ask and "请您补签" in ask and "please sign" in ask
    show = subprocess.run([sys.executable, "-m", "posguard.cli", "incidents", "show", str(iid), "--config",
                           str(config)], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "outcome  kept_at_merchant_risk" in show and "contact: phone *******5678" in show and "contacted: 1" in show
    report = json.loads(subprocess.run([sys.executable, "-m", "posguard.cli", "report", "--json", "--config",
                                        str(config)], capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    assert report["by_kind"] == {"unsigned": 1} and report["unsigned"] == {"kept_at_merchant_risk": 1}
    from posguard.engine.journal import Journal

    with Journal(tmp_path / "journal.db") as journal:
        (ev,) = journal.query("SELECT txn_id, detail FROM events WHERE kind = 'e_signature'")
    assert ev["txn_id"] == back["txn"] and json.loads(ev["detail"]) == {
        "sha256": hashlib.sha256(pad.read_bytes()).hexdigest(), "path": str(sigs[0])}
    written = out.encode() + err.encode() + b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
                                                     and p.suffix != ".key" and p != pad)
    assert PHONE.encode() not in written and clear_pan_hits(written) == []


def test_follow_ups_cli_lists_open_tasks(tmp_path: Path) -> None:
    from posguard.flows import FlowRequest
    from tests.engine.conftest import card
    from tests.flows.conftest import desk_for

    with desk_for("cup", tmp_path) as desk:
        sale = desk.engine.sale(card(signature=True), 9_00)
        desk.run(FlowRequest("unsigned", (sale.txn_id,), customer_present=False, contact="email:wang@example.cn"))
        other = desk.engine.sale(card(signature=True), 8_00)
        desk.run(FlowRequest("unsigned", (other.txn_id,), customer_present=False, follow_up="kept_at_risk"))
    listing = subprocess.run([sys.executable, "-m", "posguard.cli", "incidents", "follow-ups", "--journal",
                              str(tmp_path / "journal.db")], capture_output=True, text=True, cwd=ROOT, check=True)
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and sale.txn_id in lines[1] and "email w***@example.cn" in lines[1]
    assert "2023-11-15 22:13 !" in lines[1]  # the virtual clock's start (2023-11-14 22:13:20Z) + 24 h: overdue now
    rows = subprocess.run([sys.executable, "-m", "posguard.cli", "incidents", "follow-ups", "--json", "--journal",
                           str(tmp_path / "journal.db")], capture_output=True, text=True, cwd=ROOT, check=True)
    (row,) = [json.loads(line) for line in rows.stdout.splitlines()]
    assert row["txn_id"] == sale.txn_id and row["contact"] == "email w***@example.cn" and row["outcome"] == "follow_up"


def test_config_checks_the_unsigned_follow_up_and_the_data_dir(tmp_path: Path) -> None:
    from posguard.config import data_dir, load_config
    from posguard.service.run import _flow_policies

    config = write_config(tmp_path, 5000)
    base = config.read_text()
    config.write_text(base + '\n[unsigned]\ncustomer_gone = "void"\nfollow_up_hours = 0\n')
    _cfg, problems = load_config(config)
    assert {p.key for p in problems} == {"unsigned.customer_gone", "unsigned.follow_up_hours"}
    config.write_text(base.replace("[journal]\n", f'[journal]\ndata_dir = "{tmp_path / "nowhere" / "data"}"\n'))
    _cfg, problems = load_config(config)
    assert [p.key for p in problems] == ["journal.data_dir"]
    config.write_text(base + '\n[unsigned]\ncustomer_gone = "keep"\nfollow_up_hours = 2.5\n')
    cfg, problems = load_config(config)
    assert problems == [] and data_dir(cfg) == tmp_path  # "" = the journal's directory
    policies = _flow_policies(cfg)
    assert (policies.outbox, policies.signature_dir) == (str(tmp_path / "outbox"), str(tmp_path / "signatures"))
    assert (policies.unsigned_customer_gone, policies.follow_up_deadline) == ("keep", 9000.0)


def test_an_override_takes_the_supervisor_who_approves_it() -> None:
    from posguard.service.commands import CommandError, parse

    c = parse("sale 2500 order=A-17 override=yes sup=secret", max_amount=10_000)
    assert c.override and c.supervisor == "secret" and "secret" not in repr(c)
    with pytest.raises(CommandError, match="sale takes no option 'sup' without override=yes"):
        parse("sale 2500 sup=secret", max_amount=10_000)
