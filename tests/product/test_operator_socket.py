"""Issue 10, "any socket client stops the service": the operator socket as a real server, on real Unix sockets.

(Idle and stop bounds are real seconds here, kept to fractions: a socket timeout cannot run on a virtual clock.)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from posguard.service.operator import OperatorServer, Peer, SocketRefused


def _client(path: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(str(path))
    return c


def _ask(c: socket.socket, line: bytes) -> dict[str, Any]:
    c.sendall(line + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data.decode()) if data else {}


def _closed(c: socket.socket) -> bool:
    try:
        return c.recv(10) == b""
    except ConnectionResetError:  # still in the listen queue when the server stopped
        return True


def echo(line: str, peer: Peer) -> dict[str, Any]:
    return {"ok": True, "echo": line, "uid": peer.uid}


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "operator.sock"


def test_many_clients_at_once_each_get_their_answers(sock_path: Path) -> None:
    with OperatorServer(sock_path, echo) as srv:
        clients = [_client(sock_path) for _ in range(50)]
        results: list[bool] = []

        def talk(i: int, c: socket.socket) -> None:
            results.append(all(_ask(c, f"status {i} {n}".encode())["echo"] == f"status {i} {n}" for n in range(20)))

        threads = [threading.Thread(target=talk, args=(i, c)) for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [True] * 50 and srv.served == 1000
        for c in clients:
            c.close()


def test_one_clients_trouble_stays_with_that_client(sock_path: Path) -> None:
    with OperatorServer(sock_path, echo, max_line=64) as srv:
        good = _client(sock_path)
        rude = _client(sock_path)
        rude.sendall(b"status\n")
        rude.close()  # gone before reading its answer
        assert _ask(good, b"\xff\xfe status")["error"].startswith("not UTF-8")
        assert _ask(good, b"status")["ok"] is True  # the same connection goes on
        long = _client(sock_path)
        answer = _ask(long, b"x" * 10_000)
        assert "longer than 64 bytes" in answer["error"]
        assert _closed(long)
        assert _ask(good, b"status")["ok"] is True and srv.clients >= 1


def test_an_idle_client_is_closed_and_stop_is_bounded(sock_path: Path) -> None:
    srv = OperatorServer(sock_path, echo, idle_timeout=0.3).open()
    idle = _client(sock_path)
    assert "idle" in json.loads(idle.recv(1000).decode())["error"]
    others = [_client(sock_path) for _ in range(5)]
    started = time.monotonic()
    srv.stop(timeout=2.0)
    assert time.monotonic() - started < 2.5
    assert not sock_path.exists()
    assert all(_closed(c) for c in others)


def test_directory_0750_whatever_the_umask_and_socket_0660(sock_path: Path) -> None:
    old = os.umask(0)
    try:
        with OperatorServer(sock_path, echo):
            assert sock_path.parent.stat().st_mode & 0o777 == 0o750
            assert sock_path.stat().st_mode & 0o777 == 0o660
    finally:
        os.umask(old)


def test_a_path_that_is_not_ours_is_refused_never_removed(sock_path: Path) -> None:
    sock_path.parent.mkdir(mode=0o750)
    sock_path.write_text("not a socket")
    with pytest.raises(SocketRefused, match="not a socket"):
        OperatorServer(sock_path, echo).open()
    assert sock_path.read_text() == "not a socket"
    sock_path.unlink()
    with OperatorServer(sock_path, echo), pytest.raises(SocketRefused, match="already running"):
        OperatorServer(sock_path, echo).open()


def test_a_stale_socket_of_ours_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir(mode=0o750)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock_path))
    dead.close()  # left behind by a service that died
    with OperatorServer(sock_path, echo):
        assert _ask(_client(sock_path), b"status")["ok"] is True


def test_a_world_writable_directory_is_refused(sock_path: Path) -> None:
    sock_path.parent.mkdir()
    os.chmod(sock_path.parent, 0o777)
    with pytest.raises(SocketRefused, match="writable by others"):
        OperatorServer(sock_path, echo).open()


@pytest.mark.skipif(os.getuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to run a client as another user) and the system python")
def test_peer_credentials_decide_who_may_operate() -> None:
    nobody = 65534
    base = Path(tempfile.mkdtemp(prefix="posguard-peer-"))  # pytest's tmp dirs are 0700: nobody cannot enter
    os.chmod(base, 0o755)
    sock_path = base / "run" / "operator.sock"
    client = "\n".join([
        "import socket, sys",
        "c = socket.socket(socket.AF_UNIX)",
        "c.connect(sys.argv[1])",
        "try:",
        "    c.sendall(b'status\\n')",
        "except OSError:",  # a refused client may be closed before it writes
        "    pass",
        "print(c.recv(1000).decode())",
    ])

    def as_nobody() -> None:
        os.setgid(nobody)
        os.setuid(nobody)

    for allowed, expect in (((), "may not operate"), ((nobody,), '"ok": true')):
        with OperatorServer(sock_path, echo, allow_uids=allowed) as srv:
            os.chmod(sock_path.parent, 0o755)
            os.chmod(sock_path, 0o666)  # let the kernel pass it: the credentials are the gate under test
            # the system's python: the project's venv lives under root's home, which nobody cannot enter
            out = subprocess.run(["/usr/bin/python3", "-c", client, str(sock_path)], preexec_fn=as_nobody, cwd=base,
                                 capture_output=True, text=True, timeout=20, check=False)
            assert out.returncode == 0, out.stderr
            out = out.stdout
            assert expect in out, out
            assert srv.refused == (0 if allowed else 1)
    shutil.rmtree(base)


def test_quick_commands_answer_while_a_slow_one_runs(sock_path: Path) -> None:
    gate = threading.Event()

    def slow(line: str, peer: Peer) -> dict[str, Any]:
        gate.wait(10)  # a sale waiting for the host
        return {"ok": True, "done": line}

    with OperatorServer(sock_path, slow, quick=lambda line, peer: {"ok": True, "status": "busy"}):
        seller = _client(sock_path)
        seller.sendall(b"sale 100\n")
        time.sleep(0.1)
        assert _ask(_client(sock_path), b"status") == {"ok": True, "status": "busy"}
        gate.set()
        assert json.loads(seller.recv(1000).decode())["done"] == "sale 100"


def test_the_client_asks_and_says_what_is_wrong(sock_path: Path) -> None:
    from posguard.service.operator import OperatorClient

    with pytest.raises(ConnectionError, match="is `posguard run` running"):
        OperatorClient(sock_path).connect()
    with OperatorServer(sock_path, echo), OperatorClient(sock_path) as client:
        assert client.ask("status")["echo"] == "status"
        assert client.ask("sale 100")["echo"] == "sale 100"
