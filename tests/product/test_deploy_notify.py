"""sd_notify: the service tells a real ``$NOTIFY_SOCKET`` (a Unix datagram socket, as systemd's) READY=1 once it
serves, WATCHDOG=1 while its acting thread lives, STOPPING=1 on SIGTERM; both socket kinds (path, ``@abstract``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from posguard.service.notify import Heartbeat, Notifier, watchdog_interval
from tests.product.conftest import ROOT


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(20.0)  # a bound on a wait, not a measurement: a lost message fails the test
    return sock


def _messages(sock: socket.socket, until: str) -> list[str]:
    seen: list[str] = []
    while True:
        msg = sock.recv(4096).decode()
        seen.append(msg)
        if until in msg.split("\n"):
            return seen


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_notifier_sends_one_datagram_per_message(tmp_path: Path, kind: str) -> None:
    address = str(tmp_path / "notify") if kind == "path" else f"@posguard-test-{os.getpid()}-{kind}"
    with _listener(address) as sock:
        n = Notifier.from_env({"NOTIFY_SOCKET": address})
        assert n.enabled and n.ready("serving\nnow")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving now"
        assert n.send(WATCHDOG=1)
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_no_socket_means_silence_and_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).ready()
    gone = Notifier(str(tmp_path / "nobody"))
    assert not gone.ready() and gone.failed and "FileNotFoundError" in gone.failed


def test_watchdog_interval_is_half_the_period_for_this_pid_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


def test_heartbeat_stops_vouching_for_a_stuck_thread() -> None:
    now = [100.0]
    hb = Heartbeat(limit=90.0, clock=lambda: now[0])
    now[0] += 89.0
    assert hb.alive()
    now[0] += 2.0
    assert not hb.alive()
    hb.beat()
    assert hb.alive()


@pytest.fixture
def host() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        yield sim


def test_service_notifies_ready_watchdog_and_stopping(tmp_path: Path, host: HostSimulator) -> None:
    keys = {}
    for name in ("token", "data"):
        k = tmp_path / f"{name}.key"
        k.write_text(os.urandom(32).hex() + "\n")
        k.chmod(0o600)
        keys[name] = k
    op_socket = tmp_path / "op.sock"
    config = tmp_path / "posguard.toml"
    config.write_text(f"""
[terminal]
tid = "POSGRD01"
mid = "MERCHANT0000001"
currency = "156"
dialect = "iso87ascii"
token_key_file = "{keys['token']}"
data_key_file = "{keys['data']}"
[reader]
kind = "none"
[host]
address = "127.0.0.1"
port = {host.port}
timeout = 5
[journal]
path = "{tmp_path / 'journal.db'}"
[operator]
socket = "{op_socket}"
""")
    notify = str(tmp_path / "notify.sock")
    with _listener(notify) as sock:
        env = dict(os.environ, NOTIFY_SOCKET=notify, WATCHDOG_USEC="200000")
        proc = subprocess.Popen([sys.executable, "-m", "posguard", "run", "--config", str(config)], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = _messages(sock, "READY=1")
            assert op_socket.exists(), "READY=1 came before the operator socket was open"
            assert "STATUS=terminal POSGRD01: serving" in first[-1]
            _messages(sock, "WATCHDOG=1")
            proc.send_signal(signal.SIGTERM)
            last = _messages(sock, "STOPPING=1")
            assert "STATUS=terminal POSGRD01: stopping" in last[-1]
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert '"event": "service.stopped"' in out
