"""Issue 10, ``posguard run`` under faults and hostile input, as a real process on a real operator socket
against the real host simulator. Each test names the finding it answers."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.rig.pcscd import pcsc_env
from firmware_sim.rig.sims import vpcd_card
from tests.product.conftest import ROOT, clear_pan_hits
from tests.product.test_service import write_config


@pytest.fixture
def host() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        yield sim


def _config(tmp_path: Path, port: int, *, reader: str = "none") -> tuple[Path, Path]:
    config = write_config(tmp_path, port)
    sock = tmp_path / "run" / "op.sock"
    text = config.read_text().replace('socket = "stdin"', f'socket = "{sock}"')
    if reader == "none":
        text = text.replace('kind = "pcsc"', 'kind = "none"')
    config.write_text(text)
    return config, sock


def _start(config: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "posguard.cli", "run", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_socket(sock: Path, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sock.exists():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(str(sock))
                return
            except OSError:
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the operator socket never came up")


def _client(sock: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(60)
    c.connect(str(sock))
    return c


def _ask(c: socket.socket, line: bytes | str) -> dict[str, Any]:
    c.sendall((line.encode() if isinstance(line, str) else line) + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed; got {data!r}")
        data += chunk
    return json.loads(data)


def _stop(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def test_clients_that_misbehave_never_stop_the_service(tmp_path: Path, host: HostSimulator) -> None:
    """Findings "any socket client stops the service" (a client that closes before its answer: exit 0; bytes
    that are not UTF-8: a traceback; one client at a time, an idle client blocking everyone and SIGTERM) and
    "operator input" (sale 0, Arabic-Indic digits, missing arguments, ``sale abc`` reading the card first,
    refusals without a reason)."""
    config, sock = _config(tmp_path, host.port)
    proc = _start(config)
    try:
        _wait_socket(sock, proc)
        idle = [_client(sock) for _ in range(5)]  # connected, never say a word
        rude = _client(sock)
        rude.sendall(b"status\n")
        rude.close()  # gone before its answer
        c = _client(sock)
        assert "not UTF-8" in _ask(c, b"\xff\xfe sale 100")["error"]
        for line, words in (("sale 0", "from 1 to"), ("sale ١٢٥٠", "ASCII digits"), ("refund", "needs TXN"),
                            ("sale abc", "ASCII digits"), ("sale 1000000000000", "from 1 to"),
                            ("sale 4761739001010119", "looks like a card number")):
            answer = _ask(c, line)
            assert not answer["ok"] and words in answer["error"], (line, answer)
        assert "no card reader" in _ask(c, "sale 100")["error"]  # a good line reaches the reader
        refused = _ask(c, "void POSGRD01-00000999")
        assert not refused["ok"] and refused["error"]  # the refusal says why
        status = _ask(c, "status")
        assert status["ok"] and status["journal"] == "ok" and status["batch"] == 1
        started = time.monotonic()
        code, out, err = _stop(proc)
        assert time.monotonic() - started < 10  # idle clients do not hold SIGTERM up
        for s in idle:
            s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert "Traceback" not in err and '"event": "service.stopped"' in out
    # nothing above reached the host: only the sign-on (0800/001) and the sign-off at the clean stop (0800/002)
    assert [(r["t"], r["70"]) for r in host.received] == [("0800", "001"), ("0800", "002")]
    assert clear_pan_hits(out.encode() + err.encode()) == []
    for f in tmp_path.glob("journal.db*"):
        assert clear_pan_hits(f.read_bytes()) == []


def test_a_second_service_on_the_same_journal_refuses(tmp_path: Path, host: HostSimulator) -> None:
    """Finding "two services on one journal": the second refuses at start, naming the first one's pid."""
    config, sock = _config(tmp_path, host.port)
    first = _start(config)
    try:
        _wait_socket(sock, first)
        second = _start(config)
        out, _err = second.communicate(timeout=30)  # it stops by itself
        code = second.returncode
        assert code == 2
        refusal = [json.loads(line) for line in out.splitlines() if '"service.not_started"' in line]
        assert refusal and refusal[0]["holder_pid"] == first.pid and str(first.pid) in refusal[0]["msg"]
        assert _ask(_client(sock), "status")["ok"]  # the first one goes on
    finally:
        code, _out, err = _stop(first)
    assert code == 0, err


def test_a_broken_log_stream_is_not_a_quiet_exit(tmp_path: Path) -> None:
    """Finding "exit codes": a one-shot command whose reader goes away ends cleanly (0) for that command."""
    proc = subprocess.run(f"{sys.executable} -m posguard.cli iso8583 spec --dialect cup | head -c 10",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.pcscd
def test_fifty_clients_at_once_every_answer_arrives_memory_bounded(tmp_path: Path, host: HostSimulator) -> None:
    """The load test: 50 socket clients issuing ``status`` and sales at once (a bounded count, not a minute:
    every client sends 20 status and 1 sale). Every answer arrives and the service's memory stays bounded."""
    config, sock = _config(tmp_path, host.port, reader="pcsc")
    text = config.read_text().replace('name = "Virtual PCD 00 00"', 'name = "Virtual PCD 00 00"')
    config.write_text(text)
    with vpcd_card("visa_credit_sig"):
        proc = _start(config, env=pcsc_env())
        try:
            _wait_socket(sock, proc)
            warm = _client(sock)
            assert _ask(warm, "sale 100")["ok"]
            rss_before = _rss_kib(proc.pid)
            answers: list[dict[str, Any]] = []
            lock = threading.Lock()

            def client(i: int) -> None:
                c = _client(sock)
                got = [_ask(c, "status") for _ in range(10)]
                got.append(_ask(c, f"sale {200 + i}"))
                got += [_ask(c, "status") for _ in range(10)]
                c.close()
                with lock:
                    answers.extend(got)

            threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            rss_after = _rss_kib(proc.pid)
        finally:
            code, out, err = _stop(proc, timeout=30)
    assert code == 0, err
    assert len(answers) == 50 * 21
    sales = [a for a in answers if "txn" in a]
    assert len(sales) == 50 and all(a["ok"] or a.get("refused") for a in sales)
    assert all(a["ok"] for a in answers if "txn" not in a)
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)  # KiB


@pytest.mark.pcscd
def test_kill_9_with_clients_connected_loses_nothing(tmp_path: Path, host: HostSimulator) -> None:
    """kill -9 at random moments while clients are selling: after each restart every charge the host holds is
    one the journal holds as approved, or it is reversed; nothing is charged twice."""
    config, sock = _config(tmp_path, host.port, reader="pcsc")
    rnd = random.Random(20261130)
    with vpcd_card("visa_credit_sig"):
        for _round in range(3):
            proc = _start(config, env=pcsc_env())
            _wait_socket(sock, proc)
            stop = threading.Event()

            def sell(stop: threading.Event = stop) -> None:
                try:
                    c = _client(sock)
                    while not stop.is_set():
                        _ask(c, f"sale {rnd.randint(100, 999)}")
                except (OSError, AssertionError):
                    pass  # the service died under us

            sellers = [threading.Thread(target=sell) for _ in range(3)]
            for t in sellers:
                t.start()
            time.sleep(rnd.uniform(0.2, 1.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            for t in sellers:
                t.join(30)
        proc = _start(config, env=pcsc_env())  # the last restart recovers what the last kill left
        _wait_socket(sock, proc)
        c = _client(sock)
        for _ in range(20):  # the queue drains (reversals of what was in flight)
            if _ask(c, "status")["pending"] == 0:
                break
            _ask(c, "flush")
            time.sleep(0.2)
        status = _ask(c, "status")
        code, _out, err = _stop(proc)
    assert code == 0, err
    assert status["pending"] == 0 and status["journal"] == "ok"
    from posguard.engine.journal import Journal

    with Journal(tmp_path / "journal.db") as journal:
        sales = [t for t in journal.find_txns() if t.kind == "sale"]
        approved = {t.rrn for t in sales if t.state in ("approved", "signature_pending", "signed", "unsigned")}
    assert len(sales) >= 3 and approved  # the kills hit a service that was trading
    charged = {e.rrn for e in host.ledger.find(kind="sale", status="approved")}
    assert charged <= approved, charged - approved  # every standing charge is one the terminal holds as approved


def _posguard(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posguard.cli", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def test_posguard_op_is_the_operators_client(tmp_path: Path, host: HostSimulator) -> None:
    """``posguard op``: one command or a line mode; exit 0 ok, 1 refused, 2 service unreachable."""
    config, sock = _config(tmp_path, host.port)
    gone = _posguard("op", "--socket", str(sock), "status")
    assert gone.returncode == 2 and "is `posguard run` running" in gone.stderr
    proc = _start(config)
    try:
        _wait_socket(sock, proc)
        ok = _posguard("op", "--config", str(config), "status")
        assert ok.returncode == 0 and ok.stdout.startswith("ok ") and "batch=1" in ok.stdout, ok
        refused = _posguard("op", "--socket", str(sock), "sale", "abc")
        assert refused.returncode == 1 and refused.stdout.startswith("refused: amount"), refused
        lines = _posguard("op", "--socket", str(sock), "--json", stdin="status\nsale 0\n")
        answers = [json.loads(line) for line in lines.stdout.splitlines()]
        assert lines.returncode == 1 and [a["ok"] for a in answers] == [True, False]
    finally:
        code, _out, err = _stop(proc)
    assert code == 0, err


def test_incidents_and_report_on_a_damaged_journal_are_one_line(tmp_path: Path) -> None:
    """Finding "tracebacks instead of one-line errors": ``incidents``/``report``/``engine journal`` on a corrupt
    journal."""
    journal = tmp_path / "journal.db"
    journal.write_bytes(b"garbage" * 1000)
    for cmd in (("incidents", "--journal", str(journal)), ("report", "--journal", str(journal)),
                ("engine", "journal", str(journal))):
        res = _posguard(*cmd)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.count("\n") == 1 and "is damaged" in res.stderr, res.stderr


def test_run_on_a_damaged_journal_is_one_line_and_exit_2(tmp_path: Path, host: HostSimulator) -> None:
    """Finding "tracebacks instead of one-line errors": ``run`` on a corrupt journal."""
    config, _sock = _config(tmp_path, host.port)
    (tmp_path / "journal.db").write_bytes(b"garbage" * 1000)
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "run", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    [line] = [json.loads(x) for x in res.stdout.splitlines() if '"service.not_started"' in x]
    assert "is damaged" in line["msg"] and line["level"] == "error"
