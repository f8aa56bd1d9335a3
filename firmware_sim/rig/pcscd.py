"""A private pcscd for the rig: its own reader.conf directory, socket, vpcd port and log.

pcsc-lite 1.9.9 hard-codes the daemon's socket (/run/pcscd/pcscd.comm) but accepts a listening
socket handed over the systemd way (LISTEN_FDS=1, LISTEN_PID, fd 3), and the client library
(libpcsclite: pyscard, pcsc_scan, opensc-tool) honours ``PCSCLITE_CSOCK_NAME``. So every test
process binds its own socket, hands it to its own pcscd and points ``PCSCLITE_CSOCK_NAME`` at it:
several test runs (and demos) can run at once without sharing a daemon or touching the machine's pcscd.

libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, so a process keeps one socket path
for its whole life (:func:`process_socket_path`); pcscd may be restarted behind it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
TWIN_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libccidtwin.so")
VPCD_FRIENDLY = "Virtual PCD"
TWIN_FRIENDLY = "GemPCTwin serial"
VPCD_READER = "Virtual PCD 00 00"  # slot 0; slot 1 is "Virtual PCD 00 01" on port+1
TWIN_READER = "GemPCTwin serial 00 00"
# Runs in the child before exec: the listening socket becomes fd 3 (systemd socket activation),
# and PR_SET_PDEATHSIG makes pcscd exit with the test process even if it is killed.
_LAUNCHER = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM)); "
    "os.dup2(int(sys.argv[1]), 3); "
    "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid()); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


class RigError(RuntimeError):
    """A simulator did not start, refused a command or stopped answering, or the rig could not reach the
    state asked for; the text says what to check."""


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
    return (shutil.which("pcscd") is not None and shutil.which("pcsc_scan") is not None and VPCD_DRIVER.exists()
            and importlib.util.find_spec("smartcard") is not None)


_OWN_SOCKET: Path | None = None


def process_socket_path(*, adopt: bool = True) -> Path:
    """This process's pcscd socket path; exported as PCSCLITE_CSOCK_NAME before any PC/SC call.

    libpcsclite reads the variable once per process, so a process keeps one path. With ``adopt`` (tests) a
    path already set in the environment is used as it is; without it (the demo) a path this module did not
    set is refused rather than taken over, so a demo never replaces somebody else's pcscd."""
    global _OWN_SOCKET
    existing = os.environ.get(SOCKET_ENV)
    if existing:
        if not adopt and Path(existing) != _OWN_SOCKET:
            raise RigError(f"{SOCKET_ENV} is already set in this process (another PC/SC rig owns it): run the "
                           "demo in its own process")
        return Path(existing)
    base = Path(tempfile.gettempdir()) / f"posguard-rig-{os.getpid()}"
    base.mkdir(mode=0o755, exist_ok=True)
    path = base / "pcscd.comm"
    os.environ[SOCKET_ENV] = str(path)
    _OWN_SOCKET = path
    return path


def pcsc_env() -> dict[str, str]:
    """Environment for a PC/SC client subprocess (pcsc_scan, opensc-tool...) of this rig."""
    env = dict(os.environ)
    env[SOCKET_ENV] = str(process_socket_path())
    return env


def list_readers(timeout: float = 5.0) -> list[str] | None:
    """Reader names as ``pcsc_scan -r`` prints them; None when pcscd does not answer."""
    try:
        proc = subprocess.run(["pcsc_scan", "-r"], capture_output=True, text=True, env=pcsc_env(),
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    names = []
    for line in proc.stdout.splitlines():
        index, sep, name = line.partition(": ")
        if sep and index.strip().isdigit():
            names.append(name.strip())
    return names


@dataclass(frozen=True)
class ReaderConfig:
    """Which readers a pcscd serves: vpcd on ``vpcd_port`` (and +1), a Twin on ``twin_device``."""

    vpcd_port: int | None = None
    twin_device: Path | None = None

    def files(self) -> dict[str, str]:
        out = {}
        if self.vpcd_port is not None:
            out["vpcd"] = (f'FRIENDLYNAME "{VPCD_FRIENDLY}"\nDEVICENAME /dev/null:{self.vpcd_port}\n'
                           f"LIBPATH {VPCD_DRIVER}\n")
        if self.twin_device is not None:
            if ":" in str(self.twin_device):
                raise RigError(f"serial device path {self.twin_device} must not contain ':'")
            out["twin"] = (f'FRIENDLYNAME "{TWIN_FRIENDLY}"\nDEVICENAME {self.twin_device}\n'
                           f"LIBPATH {TWIN_DRIVER}\n")
        return out

    def reader_names(self) -> list[str]:
        names = [VPCD_READER] if self.vpcd_port is not None else []
        return names + ([TWIN_READER] if self.twin_device is not None else [])


@dataclass
class Pcscd:
    """One pcscd process with a private config directory, listening on ``socket_path``."""

    config: ReaderConfig
    socket_path: Path = field(default_factory=process_socket_path)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="posguard-pcscd-")))
    debug: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "pcscd.log"

    def start(self, timeout: float = 10.0) -> Pcscd:
        for binary in ("pcscd", "pcsc_scan"):
            if shutil.which(binary) is None:
                raise RigError(f"{binary} not found: run scripts/setup.sh (Debian packages pcscd, pcsc-tools)")
        confdir = self.workdir / "reader.conf.d"
        confdir.mkdir(exist_ok=True)
        for old in confdir.iterdir():
            old.unlink()
        for name, text in self.config.files().items():
            (confdir / name).write_text(text)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, 0o666)
            listener.listen(64)
            argv = ["pcscd", "--foreground", "--debug" if self.debug else "--info", "-c", str(confdir)]
            env = dict(os.environ)
            if self.debug:  # the CCID driver's own log: commands, responses, periodic polls
                env.setdefault("LIBCCID_ifdLogLevel", "0x000F")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _LAUNCHER, str(listener.fileno()), *argv],
                    pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        finally:
            listener.close()
        try:
            self.wait_for_readers(self.config.reader_names(), timeout)
        except BaseException:
            self.stop(keep_workdir=True)  # never leave a half-started pcscd holding the vpcd port
            raise
        return self

    def wait_for_readers(self, names: list[str], timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        seen: list[str] | None = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RigError(f"pcscd exited with {self.proc.returncode}\n{self.log_tail()}")
            seen = list_readers()
            if seen is not None and all(name in seen for name in names):
                return seen
            if time.monotonic() > deadline:
                raise RigError(f"pcscd did not list {names} within {timeout:.1f} s (it lists {seen})\n"
                               f"{self.log_tail()}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0, *, keep_workdir: bool = False) -> None:
        """Terminate and reap pcscd (a killed, unreaped pcscd blocks the next one)."""
        if self.proc is None:
            return
        reap(self.proc, timeout)
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if not keep_workdir and not os.environ.get("POSGUARD_RIG_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no pcscd log)"
        return "pcscd log tail:\n" + "\n".join(text[-lines:])


class PcscdRig:
    """The pcscd of this (test) process; restarted only when a test needs other readers."""

    def __init__(self) -> None:
        self.vpcd_port = free_port_pair()
        self.pcscd: Pcscd | None = None
        self.starts = 0

    def ensure(self, *, vpcd: bool = True, twin_device: Path | None = None, timeout: float = 10.0) -> Pcscd:
        """A running pcscd with vpcd (if asked) and the Twin on ``twin_device`` (if given)."""
        current = self.pcscd
        if current is not None and current.alive():
            cfg = current.config
            vpcd_ok = not vpcd or cfg.vpcd_port is not None
            twin_ok = twin_device is None or cfg.twin_device == twin_device
            if vpcd_ok and twin_ok:
                return current
            twin_device = twin_device or cfg.twin_device
            vpcd = vpcd or cfg.vpcd_port is not None
        self.stop()
        config = ReaderConfig(self.vpcd_port if vpcd else None, twin_device)
        self.pcscd = Pcscd(config).start(timeout)
        self.starts += 1
        return self.pcscd

    def drop_twin(self, twin_device: Path) -> None:
        """Forget a Twin reader that is gone: the next ``ensure`` starts pcscd without it."""
        if self.pcscd is not None and self.pcscd.config.twin_device == twin_device:
            self.stop()

    def stop(self) -> None:
        if self.pcscd is not None:
            self.pcscd.stop()
            self.pcscd = None

    def log_tail(self, lines: int = 40) -> str:
        return self.pcscd.log_tail(lines) if self.pcscd else "(pcscd not running)"


_RIG: PcscdRig | None = None


def get_rig() -> PcscdRig:
    """The process-wide rig (created on first use; stop it with :func:`shutdown_rig`)."""
    global _RIG
    process_socket_path()
    if _RIG is None:
        _RIG = PcscdRig()
    return _RIG


def shutdown_rig() -> None:
    """Stop this process's pcscd and remove its socket folder (when the rig created it)."""
    global _RIG
    if _RIG is not None:
        _RIG.stop()
        _RIG = None
    folder = Path(tempfile.gettempdir()) / f"posguard-rig-{os.getpid()}"
    if os.environ.get(SOCKET_ENV, "").startswith(str(folder)):
        shutil.rmtree(folder, ignore_errors=True)


def reap(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """End ``proc`` if it still runs — SIGTERM, then SIGKILL after ``timeout`` — and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
