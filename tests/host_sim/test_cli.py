"""The simulator as a separate program: start it, read its port, drive it over TCP and the control port."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from firmware_sim.host import ControlClient

from .wire import WireClient, cup_sale

ROOT = Path(__file__).resolve().parents[2]


def test_program_prints_ports_serves_and_obeys_the_control_channel(tmp_path: Path):
    dump = tmp_path / "ledger.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.host", "--dialect", "cup", "--port", "0", "--control-port", "0",
         "--ledger-dump", str(dump), "--security", "open"],  # the control channel, not sign-on/MAC (test_security)
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        client = WireClient(("127.0.0.1", info["port"]), "cup")
        with ControlClient(("127.0.0.1", info["control_port"])) as ctl:
            assert client.exchange(cup_sale(1, 1000))["39"] == "00"
            ctl.add_fault("wrong_rc", rc="91")
            assert client.exchange(cup_sale(2, 1000))["39"] == "91"
            ctl.set_rules({"rules": [{"rc": "51", "min_amount": 5000}]})
            assert client.exchange(cup_sale(3, 5000))["39"] == "51"
            entries = ctl.ledger()
            assert [(e["stan"], e["rc"]) for e in entries] == [("000001", "00"), ("000002", "00"), ("000003", "51")]
            # the host counts a frame as handled once its answer is out: the count may trail the answer a moment
            deadline = time.monotonic() + 5
            while ctl.stats()["frames_handled"] < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert ctl.stats()["frames_handled"] == 3
            ctl.stop()
        client.close()
        assert proc.wait(timeout=10) == 0
        assert len(json.loads(dump.read_text())) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_print_dialect():
    out = subprocess.run([sys.executable, "-m", "firmware_sim.host", "--print-dialect", "iso87bcd"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "dialect iso87bcd" in out and "BCD" in out


def _program(*args: str) -> tuple[subprocess.Popen[str], WireClient]:
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.host", "--dialect", "cup", "--port", "0",
                             "--security", "open", *args],  # sign-on/MAC are test_security's concern
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, WireClient(("127.0.0.1", info["port"]), "cup")


def _stop(proc: subprocess.Popen[str], client: WireClient) -> None:
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def test_the_program_refuses_a_pin_cvm_without_a_pin_block_and_a_far_date_by_default() -> None:
    """Issue 12 §5: both checks are fault-free defaults of the real server; its clock is the wall clock, or the
    one ``--clock-start`` sets (a terminal on virtual time)."""
    start = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC = 11-15 06:13:20 in Shanghai
    proc, client = _program("--clock-start", str(start))
    try:
        pin_promised = cup_sale(1, 1000) | {"22": "051"}  # 22.3 = 1: a PIN is included, but no field 52
        assert client.exchange(pin_promised)["39"] == "55"
        assert client.exchange(cup_sale(2, 1000) | {"13": "1115", "12": "061320"})["39"] == "00"
        assert client.exchange(cup_sale(3, 1000) | {"13": "1117", "12": "061320"})["39"] == "05"  # two days on
    finally:
        _stop(proc, client)
    proc, client = _program("--clock-start", str(start), "--no-require-pin-block", "--no-date-window")
    try:
        assert client.exchange(cup_sale(1, 1000) | {"22": "051"})["39"] == "00"
        assert client.exchange(cup_sale(2, 1000) | {"13": "1117", "12": "061320"})["39"] == "00"
    finally:
        _stop(proc, client)
