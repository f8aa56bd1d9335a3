"""The simulators the demo (and ``posguard diagnose --simulate``) runs: a private pcscd with a vpcd card, or the
serial GemPC Twin reader on a pseudo-terminal when pcscd is not installed, and the acquirer host.

Each one is a subprocess in its own session; :class:`Rig` stops every one of them (and reaps it) on exit, even
after an error. pcscd gets its own socket the systemd way (``LISTEN_FDS``) and this process points
``PCSCLITE_CSOCK_NAME`` at it, so a demo never touches the machine's pcscd.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["RigError", "SimProcess", "Pcscd", "Rig", "free_port_pair", "VPCD_READER"]

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_READER = "Virtual PCD 00 00"
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
_LAUNCHER = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM)); "
    "os.dup2(int(sys.argv[1]), 3); "
    "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


class RigError(RuntimeError):
    """A simulator did not start or stopped answering; the text says what to check."""


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A TCP port P with P and P+1 free (vpcd listens on both)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind((host, 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind((host, port + 1))
                except OSError:
                    continue
            return port
    raise RigError("no free pair of TCP ports for vpcd")


def pcscd_available() -> bool:
    """pcscd, the vpcd driver, pcsc_scan and pyscard are all installed."""
    import importlib.util

    return (shutil.which("pcscd") is not None and shutil.which("pcsc_scan") is not None and VPCD_DRIVER.exists()
            and importlib.util.find_spec("smartcard") is not None)


class SimProcess:
    """``python -m firmware_sim.<module>``: waits for ``ready {json}``; ``command()`` sends one control line."""

    def __init__(self, module: str, args: list[str], *, ready_prefix: str = "ready",
                 quit_line: str | None = "quit") -> None:
        self.module, self.args, self.ready_prefix, self.quit_line = module, args, ready_prefix, quit_line
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self._answers: queue.Queue[str] = queue.Queue()
        self._stderr = tempfile.TemporaryFile(mode="w+")

    def start(self, timeout: float = 10.0) -> dict[str, Any]:
        self.proc = subprocess.Popen([sys.executable, "-m", f"firmware_sim.{self.module}", *self.args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     bufsize=1, start_new_session=True)
        threading.Thread(target=self._pump, name=f"sim-{self.module}", daemon=True).start()
        line = self._answer(timeout, "start")
        if self.ready_prefix:
            kind, _, payload = line.partition(" ")
            if kind != self.ready_prefix:
                raise RigError(f"{self.module} did not start: {line}")
        else:
            payload = line
        self.ready = json.loads(payload)
        return self.ready

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("#"):
                self._answers.put(line.rstrip("\n"))
        self._answers.put("eof")

    def _answer(self, timeout: float, what: str) -> str:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise RigError(f"{self.module} gave no answer to {what!r} within {timeout:.0f} s") from None
        if line == "eof":
            self._stderr.seek(0)
            raise RigError(f"{self.module} exited during {what!r}: {self._stderr.read()[-500:]}")
        return line

    def command(self, line: str, timeout: float = 5.0) -> dict[str, Any]:
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise RigError(f"{self.module} is not running")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        kind, _, payload = self._answer(timeout, line).partition(" ")
        if kind != "ok":
            raise RigError(f"{self.module} refused {line!r}: {payload}")
        result: dict[str, Any] = json.loads(payload) if payload else {}
        return result

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None and self.quit_line is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(self.quit_line + "\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout / 2)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin:
                self.proc.stdin.close()
        self._stderr.close()


_OWN_SOCKET: Path | None = None


def process_socket_path() -> Path:
    """This process's pcscd socket. libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, so every demo
    run in one process must use the same path; a path set by someone else is refused rather than taken over."""
    global _OWN_SOCKET
    if _OWN_SOCKET is not None:
        return _OWN_SOCKET
    if os.environ.get(SOCKET_ENV):
        raise RigError(f"{SOCKET_ENV} is already set in this process (another PC/SC rig owns it): run the demo in "
                       "its own process")
    base = Path(tempfile.mkdtemp(prefix="posguard-pcscd-sock-"))
    _OWN_SOCKET = base / "pcscd.comm"
    os.environ[SOCKET_ENV] = str(_OWN_SOCKET)
    return _OWN_SOCKET


class Pcscd:
    """A private pcscd serving one vpcd reader on ``vpcd_port`` (and +1)."""

    def __init__(self, vpcd_port: int, workdir: Path) -> None:
        self.vpcd_port = vpcd_port
        self.workdir = workdir
        self.socket_path = process_socket_path()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        confdir = self.workdir / "reader.conf.d"
        confdir.mkdir(exist_ok=True)
        (confdir / "vpcd").write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{self.vpcd_port}\n'
                                      f"LIBPATH {VPCD_DRIVER}\n")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o666)
            listener.listen(64)
            with open(self.workdir / "pcscd.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _LAUNCHER, str(listener.fileno()), "pcscd", "--foreground", "--info",
                     "-c", str(confdir)], pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            listener.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RigError(f"pcscd exited at start (code {self.proc.returncode}); see {self.workdir}/pcscd.log")
            if VPCD_READER in self.readers():
                return
            time.sleep(0.05)
        raise RigError(f"pcscd shows no {VPCD_READER!r} after {timeout:.0f} s; is vsmartcard-vpcd installed?")

    def readers(self) -> list[str]:
        env = dict(os.environ, **{SOCKET_ENV: str(self.socket_path)})
        try:
            proc = subprocess.run(["pcsc_scan", "-r"], capture_output=True, text=True, env=env, timeout=5,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return []
        names = []
        for line in proc.stdout.splitlines():
            index, sep, name = line.partition(": ")
            if sep and index.strip().isdigit():
                names.append(name.strip())
        return names

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Rig:
    """Host simulator + card reader simulator. Use as a context manager."""

    def __init__(self, dialect: str, *, profile: str = "visa_credit_sig", reader: str = "auto",
                 magstripe: bool = False) -> None:
        self.dialect = dialect
        self.with_magstripe = magstripe
        self.mag: SimProcess | None = None
        self.mag_path: Path | None = None
        self.profile = profile
        self.reader_kind = ("pcsc" if pcscd_available() else "twin") if reader == "auto" else reader
        self.workdir = Path(tempfile.mkdtemp(prefix="posguard-demo-"))
        self.host: SimProcess | None = None
        self.card: SimProcess | None = None
        self.pcscd: Pcscd | None = None
        self.host_port = 0
        self.control_port = 0
        self.twin_path: Path | None = None
        self.current_profile: str | None = None

    def __enter__(self) -> Rig:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.host = SimProcess("host", ["--dialect", self.dialect, "--port", "0", "--control-port", "0"],
                               ready_prefix="", quit_line=None)  # the host stops on SIGTERM
        ready = self.host.start()
        self.host_port, self.control_port = int(ready["port"]), int(ready["control_port"])
        if self.reader_kind == "pcsc":
            port = free_port_pair()
            self.pcscd = Pcscd(port, self.workdir)
            self.pcscd.start()
            self.card = SimProcess("vpcd_bridge", ["--port", str(port), "--profile", self.profile])
            self.card.start()
        else:
            self.twin_path = self.workdir / "twin"
            self.card = SimProcess("twin_reader", ["--link", str(self.twin_path), "--profile", self.profile])
            self.card.start()
        self.current_profile = self.profile
        if self.with_magstripe:
            self.mag_path = self.workdir / "mag"
            self.mag = SimProcess("magstripe", ["--link", str(self.mag_path)])
            self.mag.start()

    def swap(self, profile: str) -> None:
        """Put another card in the reader (waits until the reader sees it)."""
        if profile == self.current_profile or self.card is None:
            return
        self.card.command(f"swap {profile}")
        self.current_profile = profile

    def swipe(self, profile: str, **overrides: str) -> None:
        """Swipe a card through the magstripe reader (``overrides``: profile fields, e.g. service_code)."""
        if self.mag is None:
            raise RigError("the rig was started without a magstripe reader")
        self.mag.command(" ".join(["swipe", profile, *(f"{k}={v}" for k, v in overrides.items())]))

    def host_fault(self, kind: str, **kw: Any) -> None:
        from firmware_sim.host.control import ControlClient

        with ControlClient(("127.0.0.1", self.control_port)) as ctl:
            ctl.add_fault(kind, **kw)

    def ledger(self) -> list[dict[str, Any]]:
        from firmware_sim.host.control import ControlClient

        with ControlClient(("127.0.0.1", self.control_port)) as ctl:
            return ctl.ledger()

    def stop(self) -> None:
        for sim in (self.mag, self.card, self.host):
            if sim is not None:
                with contextlib.suppress(Exception):
                    sim.stop()
        if self.pcscd is not None:
            self.pcscd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
