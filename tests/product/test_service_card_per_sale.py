"""``posguard run``: ``sale AMOUNT`` reads the card inside the sale, at that amount (issue 11 section 2): each sale
of the same card in the reader carries its own ARQC and ATC with 9F02 = field 4 (checked on the recorded wire by
pyiso8583), and the card's second GENERATE AC answers TC after the host's approval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator
from firmware_sim.rig.sims import vpcd_card
from tests.product.conftest import clear_pan_hits
from tests.product.stdin_service import LOGS, stdin_service
from tests.product.test_service import host, write_config
from tests.product.wire_audit import amount_problems, authorisations, replay_problems

__all__ = ["host"]  # the simulator fixture, shared with test_service


@pytest.mark.pcscd
def test_each_sale_reads_the_card_at_its_amount(tmp_path: Path, host: HostSimulator) -> None:
    config = write_config(tmp_path, host.port)
    LOGS.clear()  # ask keeps the log lines it reads past
    capture = tmp_path / "session.jsonl"
    with vpcd_card("mastercard_nocvm"), stdin_service(config, record=capture) as service:
        first = service.ask("sale 1250")
        second = service.ask("sale 4000")
        assert first["ok"] and first["state"] == "approved", first
        assert second["ok"] and second["state"] == "approved", second
    out, err = service.out, service.err
    assert service.returncode == 0, err
    auths = authorisations(capture, "iso87ascii")
    assert [a.amount for a in auths] == [12_50, 40_00]
    assert [int(a.icc["9F02"].hex()) for a in auths] == [12_50, 40_00]
    assert amount_problems(auths) == [] and replay_problems(auths) == []
    records = [json.loads(line) for line in capture.read_text().splitlines()[1:]]
    assert [(r["ref"], r["presentation"]) for r in records if r["k"] == "card"] == [("c1", 1), ("c2", 2)]
    assert [r["cryptogram"] for r in records if r["k"] == "card_outcome"] == ["TC", "TC"]
    logs = [json.loads(line) for line in LOGS + out.splitlines() if line.strip()]
    reads = [r for r in logs if r.get("event") == "card.read"]
    assert [r["msg"].rsplit(" ", 1)[-1] for r in reads] == ["12.50", "40.00"]
    assert clear_pan_hits("".join(LOGS).encode() + out.encode() + err.encode() + capture.read_bytes()) == []
