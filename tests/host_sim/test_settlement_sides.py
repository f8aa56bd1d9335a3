"""The simulated CUP acquirer is as strict as a real one about field 48: each card side (domestic = CUP cards,
foreign = every other organisation) is compared with its own books and answered with its own flag; approvals
carry the card organisation in 63; the settlement report lists every booking with its side."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from firmware_sim.host import ControlClient, HostSimulator, SimConfig

from .wire import PAN, WireClient, cup_sale

#: a Visa card of an issuer the simulator does not play (not in its card file): its magstripe-less test sales are
#: approved by the rules, so these tests are about the books, not about authorisation
VISA = "4111111111111111"


def settlement(groups: list[tuple[int, int]], stan: int = 9) -> dict[str, str]:
    """A CUP 0500 whose field 48 holds (sale amount, sale count) per group, no refunds, flags 0."""
    f48 = "".join(f"{amount:012d}{count:03d}{0:012d}{0:03d}0" for amount, count in groups)
    return {"t": "0500", "3": "000000", "11": f"{stan:06d}", "41": "TERM0001", "42": "123456789012345",
            "48": f48, "49": "156", "60": "00000001201"}


def flags(resp: dict[str, str]) -> tuple[str, str]:
    return resp["48"][30], resp["48"][61]


def test_each_side_is_compared_with_its_own_books(cup_sim: HostSimulator, cup_client: WireClient) -> None:
    assert cup_client.exchange(cup_sale(1, 1000))["63"] == "CUP"
    assert cup_client.exchange(cup_sale(2, 2000, pan=VISA))["63"] == "VIS"
    # a terminal that counts the Visa sale as domestic (the old mistake) is unbalanced on both sides
    wrong = cup_client.exchange(settlement([(3000, 2), (0, 0)]))
    assert wrong["39"] == "00" and flags(wrong) == ("2", "2")
    [note] = [e.note for e in cup_sim.ledger.find(kind="settlement")]
    assert note == "unbalanced: domestic, foreign differ from the books"
    assert not any(e.batch_closed for e in cup_sim.ledger.find(kind="sale"))  # the batch stays open
    right = cup_client.exchange(settlement([(1000, 1), (2000, 1)], stan=10))
    assert flags(right) == ("1", "1") and all(e.batch_closed for e in cup_sim.ledger.find(kind="sale"))


def test_the_report_lists_every_booking_with_its_side() -> None:
    with HostSimulator(SimConfig(dialect="cup", control_port=0)) as sim:
        client = WireClient(sim.address, "cup")
        client.exchange(cup_sale(1, 1000))
        sim.add_fault("wrong_rc", rc="51")
        assert client.exchange(cup_sale(2, 2000, pan=VISA))["39"] == "51"  # the host booked it all the same
        assert sim.control_port is not None
        with ControlClient(("127.0.0.1", sim.control_port)) as ctl:
            text = ctl.report("TERM0001")
        client.close()
    rows = list(csv.DictReader(io.StringIO("".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("#")))))
    assert [(r["stan"], r["amount_minor"], r["status"], r["card_org"], r["side"], r["batch"]) for r in rows] == [
        ("000001", "1000", "approved", "CUP", "domestic", "000001"), ("000002", "2000", "approved", "VIS", "foreign",
                                                                      "000001")]
    assert PAN not in text and VISA not in text and rows[1]["pan_masked"] == "411111******1111"


def test_the_program_writes_the_report_on_exit(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.host", "--dialect", "cup", "--port", "0",
                             "--control-port", "0", "--settlement-report", str(out)],
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        client = WireClient(("127.0.0.1", info["port"]), "cup")
        assert client.exchange(cup_sale(1, 1500, pan=VISA))["39"] == "00"
        client.close()
        with ControlClient(("127.0.0.1", info["control_port"])) as ctl:
            ctl.stop()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    doc = json.loads(out.read_text())
    assert doc["format"] == "posguard-settlement-report/1"
    assert [(r["stan"], r["amount_minor"], r["card_org"], r["side"]) for r in doc["rows"]] == [
        ("000001", "1500", "VIS", "foreign")]
