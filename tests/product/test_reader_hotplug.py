"""The reader in the field: a reader missing when the service starts is opened when it appears (the Twin's
serial port created later; pcscd's reader attached later), the service says where it stands, and the wait
for a card ends on the operator's ``cancel`` or on SIGTERM — on real parts (ptys, pcscd + vpcd, loopback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.rig import SimProcess, get_rig, pcsc_env, vpcd_card
from tests.product.conftest import ROOT, clear_pan_hits
from tests.product.test_service import write_config


@pytest.fixture
def host() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        yield sim


class Op:
    """One operator connection to the service's socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.fh: IO[str] = self.sock.makefile("rw")

    def ask(self, line: str) -> dict[str, Any]:
        self.fh.write(line + "\n")
        self.fh.flush()
        answer: dict[str, Any] = json.loads(self.fh.readline())
        return answer

    def close(self) -> None:
        self.fh.close()
        self.sock.close()


def _service(tmp_path: Path, port: int, reader: str, *, env: dict[str, str] | None = None,
             card_wait: float = 30, tmk_file: str | None = None) -> tuple[subprocess.Popen[str], Path]:
    config = write_config(tmp_path, port) if tmk_file is None else write_config(tmp_path, port, tmk_file=tmk_file)
    sock = tmp_path / "op.sock"
    text = config.read_text().replace('kind = "pcsc"\nname = "Virtual PCD 00 00"\n',
                                      reader + f"card_wait = {card_wait}\n")
    config.write_text(text.replace('socket = "stdin"', f'socket = "{sock}"'))
    proc = subprocess.Popen([sys.executable, "-m", "posguard.cli", "run", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, sock


def _until(op: Op, pred: Any, what: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = op.ask("status")
        if pred(status):
            return status
        assert time.monotonic() < deadline, f"{what}; last status: {status}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return out, err


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_twin_port_appearing_after_start_is_opened(tmp_path: Path, host: HostSimulator) -> None:
    port = tmp_path / "ttyPOS"  # what udev would create when the reader is plugged in
    proc, sock = _service(tmp_path, host.port, f'kind = "twin"\nserial_port = "{port}"\n')
    twin = SimProcess("twin_reader", ["--link", str(tmp_path / "ttyTwin"), "--profile", "visa_credit_sig"])
    op = Op(sock)
    try:
        status = op.ask("status")
        assert status["reader"].startswith(f"waiting for {port} since "), status
        refused = op.ask("sale 1250")
        assert not refused["ok"] and refused["error"].startswith(f"no card reader: waiting for {port}"), refused
        twin.start()
        os.symlink(os.readlink(tmp_path / "ttyTwin"), port)  # the port appears
        _until(op, lambda s: s["reader"] == "open", "the Twin was never opened")
        sale = op.ask("sale 1250")
        assert sale["ok"] and sale["state"] in ("approved", "signature_pending"), sale
    finally:
        op.close()
        out, err = _stop(proc)
        twin.stop()
    assert proc.returncode == 0, err
    events = [r["event"] for r in _events(out)]
    assert events.index("reader.waiting") < events.index("reader.open") < events.index("sale." + sale["state"])
    assert clear_pan_hits(out.encode() + err.encode()) == []


@pytest.mark.pcscd
def test_pcscds_reader_appearing_after_start_is_opened(tmp_path: Path, host: HostSimulator) -> None:
    rig = get_rig()
    rig.stop()
    rig.ensure(vpcd=False)  # pcscd up, no reader yet
    proc, sock = _service(tmp_path, host.port, 'kind = "pcsc"\nname = "Virtual PCD 00 00"\n', env=pcsc_env())
    op = Op(sock)
    try:
        status = op.ask("status")
        assert status["reader"].startswith("waiting for PC/SC reader 'Virtual PCD 00 00' since "), status
        with vpcd_card("visa_credit_sig"):  # the reader is attached to pcscd, a card in it
            _until(op, lambda s: s["reader"] == "open", "the PC/SC reader was never opened")
            sale = op.ask("sale 1250")
            assert sale["ok"] and sale["state"] in ("approved", "signature_pending"), sale
    finally:
        op.close()
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    events = _events(out)
    names = [r["event"] for r in events]
    assert names.index("reader.waiting") < names.index("reader.open")
    assert [r["level"] for r in events if r["event"] == "reader.waiting"][0] == "warning"


def test_the_card_wait_ends_on_cancel_and_on_sigterm(tmp_path: Path, host: HostSimulator) -> None:
    link = tmp_path / "ttyTwin"
    twin = SimProcess("twin_reader", ["--link", str(link), "--profile", "visa_credit_sig", "--removed"])
    twin.start()
    proc, sock = _service(tmp_path, host.port, f'kind = "twin"\nserial_port = "{link}"\n', card_wait=120)
    seller, other = Op(sock), Op(sock)
    try:
        _until(other, lambda s: s["reader"] == "open", "the Twin was never opened")
        seller.fh.write("sale 1250\n")
        seller.fh.flush()
        _until(other, lambda s: s["waiting_for_card"], "the sale never waited for a card")
        assert other.ask("cancel") == {"ok": True, "cancelled": True, "incidents": []}
        answer = json.loads(seller.fh.readline())
        assert not answer["ok"] and answer["error"].startswith("cancelled: no card was read"), answer
        assert other.ask("cancel")["cancelled"] is False  # nothing waits now
        seller.fh.write("sale 1250\n")  # waits again; SIGTERM must not wait the 120 s out
        seller.fh.flush()
        _until(other, lambda s: s["waiting_for_card"], "the second sale never waited for a card")
        out, err = _stop(proc)
    finally:
        seller.close()
        other.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        twin.stop()
    assert proc.returncode == 0, err
    events = [r["event"] for r in _events(out)]
    assert events.count("card.cancelled") == 2 and events[-1] == "service.stopped"
    assert host.ledger.find(kind="sale") == []  # a cancelled wait sends nothing


def test_a_sale_the_host_never_saw_is_a_warning_with_its_fields(tmp_path: Path) -> None:
    """The host is down: the sale's event and the link's failure are warnings, not info."""
    with HostSimulator(SimConfig(dialect="iso87ascii")) as gone:
        dead_port = gone.port  # nothing listens there any more
    link = tmp_path / "ttyTwin"
    twin = SimProcess("twin_reader", ["--link", str(link), "--profile", "visa_credit_sig"])
    twin.start()
    # no TMK: a terminal with one would not start a sale unsigned-on (the host being down); this is about the
    # log level of a sale that went out and was never answered
    proc, sock = _service(tmp_path, dead_port, f'kind = "twin"\nserial_port = "{link}"\n', tmk_file="")
    op = Op(sock)
    try:
        sale = op.ask("sale 1250")
    finally:
        op.close()
        out, err = _stop(proc)
        twin.stop()
    assert proc.returncode == 0, err
    events = _events(out)
    [sold] = [r for r in events if r["event"].startswith("sale.")]
    assert sold["event"] == f"sale.{sale['state']}" and sold["level"] == "warning", sold
    assert sold["txn"] == sale["txn"] and "stan" in sold
    failures = [r for r in events if r["event"].startswith("link.")]
    assert failures and {r["level"] for r in failures} == {"warning"}, failures
