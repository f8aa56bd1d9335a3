"""``posguard run``: config problems listed all at once; a session over stdin against the simulators with
recovery at start, structured logs without card data and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.host.keys import TEST_TMK
from firmware_sim.rig.sims import vpcd_card
from posguard.config import load_config
from tests.product.conftest import ROOT, clear_pan_hits
from tests.product.stdin_service import LOGS, stdin_service


def write_config(tmp_path: Path, port: int, **over: str) -> Path:
    """A service configuration for the simulators. Like a real terminal's it names a TMK file (the test TMK the
    simulator knows by default), so the service signs on for working keys and MACs; ``tmk_file=""`` leaves it
    out."""
    keys = {}
    for name in ("token", "data"):
        k = tmp_path / f"{name}.key"
        k.write_text(os.urandom(32).hex())
        k.chmod(0o600)
        keys[name] = k
    tmk_file = over.get("tmk_file")
    if tmk_file is None:
        tmk = tmp_path / "tmk.key"
        tmk.write_text(TEST_TMK + "\n")
        tmk.chmod(0o600)
        tmk_file = str(tmk)
    tmk_line = f'tmk_file = "{tmk_file}"' if tmk_file else ""
    text = f"""
[terminal]
tid = "{over.get('tid', 'POSGRD01')}"
mid = "MERCHANT0000001"
currency = "156"
dialect = "iso87ascii"
token_key_file = "{keys['token']}"
data_key_file = "{keys['data']}"
{tmk_line}

[reader]
kind = "pcsc"
name = "Virtual PCD 00 00"

[host]
address = "127.0.0.1"
port = {port}
timeout = 5

[journal]
path = "{tmp_path / 'journal.db'}"

[operator]
socket = "stdin"
"""
    path = tmp_path / "posguard.toml"
    path.write_text(text)
    return path


def test_every_config_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[terminal]\ntid = "X"\ndialect = "klingon"\ncolour = 1\n[host]\nport = "80"\n[nope]\n')
    _cfg, problems = load_config(path)
    keys = {p.key for p in problems}
    assert {"terminal.tid", "terminal.mid", "terminal.dialect", "terminal.colour", "host.port", "host.address",
            "nope", "terminal.token_key_file", "terminal.data_key_file"} <= keys
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "run", "--config", str(path)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert res.returncode == 2
    logs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len([r for r in logs if r["event"] == "config.problem"]) == len(problems)


@pytest.fixture
def host() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        yield sim


@pytest.mark.pcscd
def test_service_session_over_stdin(tmp_path: Path, host: HostSimulator) -> None:
    config = write_config(tmp_path, host.port)
    capture = tmp_path / "session.jsonl"
    LOGS.clear()
    with vpcd_card("visa_credit_sig"), stdin_service(config, record=capture) as service:
        sale = service.ask("sale 1250")
        assert sale["ok"] and sale["state"] == "signature_pending", sale
        again = service.ask("sale 1250")  # same card, same amount, seconds apart
        assert again["ok"] and again["incidents"][0]["incident"] == "duplicate_charge"
        assert service.ask(f"sign {sale['txn']}")["state"] == "signed"
        status = service.ask("status")
        assert status["ok"] and status["pending"] == 0
        settle = service.ask("settle")
        assert settle["ok"], settle
        bad = service.ask("void NOPE")
        assert not bad["ok"] and bad["error"]
    out, err = service.out, service.err
    assert service.returncode == 0, err
    logs = [json.loads(line) for line in LOGS + out.splitlines() if line.strip()]
    events = [r["event"] for r in logs]
    assert events[0] == "service.recovered" and "service.started" in events and events[-1] == "service.stopped"
    assert "service.signal" in events
    assert all({"ts", "level", "event", "msg"} <= set(r) for r in logs)
    charged = [r for r in logs if r["event"] == "sale.signature_pending"]
    assert charged and charged[0]["txn"] == sale["txn"] and charged[0]["rrn"] == sale["rrn"]  # RRN readable
    assert {"stan", "rc"} <= set(charged[0])
    assert any(r["event"] == "incident.recorded" and r["level"] == "warning" for r in logs)
    written = "".join(LOGS).encode() + out.encode() + err.encode() + capture.read_bytes()
    for f in tmp_path.glob("journal.db*"):
        written += f.read_bytes()
    assert clear_pan_hits(written) == []
    # issue 12: signed on at start with fresh keys, every financial message MACed, signed off at the clean stop
    assert [r["70"] for r in host.received if r["t"] == "0800"] == ["001", "002"] and not host.refusals
    assert all("64" in r or "128" in r for r in host.received if r["t"] in ("0200", "0500", "0320"))
    assert "service.signed_off" in events and host.keys.state("POSGRD01") == "not_signed_on"
    for issued in host.keys.history:
        for key in (issued.mac_key, issued.pin_key):
            assert key.hex().encode() not in written.lower() and key not in written


def test_operator_socket_and_quit(tmp_path: Path, host: HostSimulator) -> None:
    import socket as sk

    config = write_config(tmp_path, host.port)
    sock_path = tmp_path / "op.sock"
    text = config.read_text().replace('kind = "pcsc"', 'kind = "none"').replace('socket = "stdin"',
                                                                                f'socket = "{sock_path}"')
    config.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "posguard.cli", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as c, c.makefile("rw") as fh:
            c.connect(str(sock_path))
            fh.write("status\n")
            fh.flush()
            status = json.loads(fh.readline())
            fh.write("sale 100\n")
            fh.flush()
            sale = json.loads(fh.readline())
            fh.write("quit\n")
            fh.flush()
            json.loads(fh.readline())
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status["ok"] and status["batch"] == 1 and status["pending"] == 0
    assert not sale["ok"] and "no card reader" in sale["error"]
    assert proc.returncode == 0 and not sock_path.exists()
    assert '"event": "service.stopped"' in out
