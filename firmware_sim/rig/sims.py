"""Start the firmware simulators as subprocesses and drive them through their control channel.

Cards always run in their own process: a vpcd card inside the process that calls pyscard
deadlocks (vpcd has no timeouts). Context managers here clean up even when a test fails:

    with vpcd_card("visa_credit_sig") as card:        # pcscd + a card in "Virtual PCD 00 00"
        conn = connect(card.reader)                     # pyscard connection
        card.swap("mastercard_nocvm")
    with twin_reader("visa_credit_sig") as twin: ...    # GemPC Twin on a pty, libccidtwin in pcscd
    with magstripe_reader() as mag: mag.swipe()         # serial magstripe on a pty
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware_sim.rig.pcscd import (
    TWIN_READER,
    VPCD_READER,
    PcscdRig,
    RigError,
    get_rig,
    process_socket_path,
    reap,
)

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 10.0
COMMAND_TIMEOUT = 5.0


class SimError(RigError):
    """A simulator refused a command, did not start, or stopped answering."""


class SimProcess:
    """A ``python -m firmware_sim.<module>`` subprocess with its line control channel.

    It waits for the ``ready {json}`` line (``ready_prefix=""``: the first line is the JSON itself, as the
    acquirer host prints it); ``stop()`` sends ``quit_line`` (None: the program stops on SIGTERM)."""

    def __init__(self, module: str, args: list[str], *, ready_prefix: str = "ready",
                 quit_line: str | None = "quit") -> None:
        self.module, self.args, self.ready_prefix, self.quit_line = module, args, ready_prefix, quit_line
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.logs: list[str] = []
        self._answers: queue.Queue[str] = queue.Queue()
        self._stderr = tempfile.TemporaryFile(mode="w+")

    def start(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"firmware_sim.{self.module}", *self.args], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
            start_new_session=True)
        threading.Thread(target=self._read_stdout, name=f"sim-{self.module}", daemon=True).start()
        line = self._next_answer(timeout, "start")
        if self.ready_prefix:
            kind, _, payload = line.partition(" ")
            if kind != self.ready_prefix:
                raise SimError(f"{self.module} did not start: {line}\n{self.stderr()}")
        else:
            payload = line
        self.ready = json.loads(payload)
        return self.ready

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("#"):
                self.logs.append(line[2:])
            else:
                self._answers.put(line)
        self._answers.put("eof")

    def _next_answer(self, timeout: float, what: str) -> str:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise SimError(f"{self.module} gave no answer to {what!r} within {timeout:.1f} s\n"
                           f"{self.stderr()}") from None
        if line == "eof":
            code = self.proc.poll() if self.proc else None
            raise SimError(f"{self.module} exited (code {code}) during {what!r}\n{self.stderr()}")
        return line

    def command(self, line: str, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        """Send one control line; the simulator's ``ok`` payload, or SimError with its ``err`` text."""
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise SimError(f"{self.module} is not running; cannot send {line!r}\n{self.stderr()}")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self._next_answer(timeout, line)
        kind, _, payload = answer.partition(" ")
        if kind != "ok":
            raise SimError(f"{self.module} refused {line!r}: {payload}")
        result: dict[str, Any] = json.loads(payload) if payload else {}
        return result

    def stderr(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read()
        return f"{self.module} stderr:\n{text}" if text.strip() else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the program to quit (or SIGTERM it), then kill it if it lingers; always reaped."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.quit_line is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(self.quit_line + "\n")
                self.proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        reap(self.proc, timeout)
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin:
                self.proc.stdin.close()
        self._stderr.close()


# -- card presence as pcscd reports it ---------------------------------------------------------
def reader_state(reader: str) -> tuple[bool, bytes]:
    """(card present?, ATR) for ``reader`` as pcscd sees it right now."""
    from smartcard import scard

    rc, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rc != scard.SCARD_S_SUCCESS:
        raise RigError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(rc)} "
                       f"(socket {process_socket_path()})")
    try:
        rc, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        if rc != scard.SCARD_S_SUCCESS:
            raise RigError(f"reader {reader!r}: {scard.SCardGetErrorMessage(rc)}")
        _, event, atr = states[0]
        return bool(event & scard.SCARD_STATE_PRESENT), bytes(atr)
    finally:
        scard.SCardReleaseContext(ctx)


def wait_card(reader: str, present: bool, timeout: float = 5.0, rig: PcscdRig | None = None) -> bytes:
    """Wait until pcscd shows a card in ``reader`` (or shows it empty); returns the ATR."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            is_present, atr = reader_state(reader)
            if is_present == present:
                return atr
        except RigError as exc:
            last = exc
        time.sleep(0.02)
    state = "a card" if present else "no card"
    tail = rig.log_tail(25) if rig else ""
    raise RigError(f"reader {reader!r} did not show {state} within {timeout:.1f} s"
                   f"{f' (last error: {last})' if last else ''}\n{tail}")


def connect(reader: str, protocol: str = "any") -> Any:
    """A connected pyscard ``CardConnection`` on ``reader`` (protocol "any", "T0" or "T1")."""
    from smartcard.CardConnection import CardConnection
    from smartcard.System import readers

    wanted = {"any": None, "T0": CardConnection.T0_protocol, "T1": CardConnection.T1_protocol}[protocol]
    for r in readers():
        if str(r) == reader:
            conn = r.createConnection()
            conn.connect(wanted)
            return conn
    raise RigError(f"reader {reader!r} not listed by pcscd")


@contextlib.contextmanager
def connected(reader: str, protocol: str = "any") -> Iterator[Any]:
    """``connect()`` that disconnects and releases the PC/SC context on exit."""
    conn = connect(reader, protocol)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.disconnect()
        with contextlib.suppress(Exception):
            conn.release()


def transmit(conn: Any, apdu: str | bytes) -> tuple[bytes, int]:
    """Send one APDU (hex text or bytes) on a pyscard connection; returns (data, SW as int)."""
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    data, sw1, sw2 = conn.transmit(list(raw))
    return bytes(data), (sw1 << 8) | sw2


# -- handles -----------------------------------------------------------------------------------
class SimHandle:
    """Common control verbs of every simulator."""

    def __init__(self, sim: SimProcess) -> None:
        self.sim = sim

    def fault(self, spec: str) -> dict[str, Any]:
        """Add a fault, e.g. ``"sw sw=6F00 ins=B2"`` (see firmware_sim.faults)."""
        return self.sim.command(f"fault {spec}")

    def clear_faults(self) -> dict[str, Any]:
        return self.sim.command("clear")

    def status(self) -> dict[str, Any]:
        return self.sim.command("status")

    def command(self, line: str, timeout: float = COMMAND_TIMEOUT) -> dict[str, Any]:
        return self.sim.command(line, timeout)


def _overrides(overrides: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict, bool)) else str(v)
    return " ".join(f"{k}={text(v)}" for k, v in overrides.items())


class CardSlot(SimHandle):
    """A simulator holding a card in a reader that the rig's pcscd serves (vpcd slot or Twin on a pty)."""

    rig: PcscdRig
    reader: str
    timeout: float

    @property
    def atr(self) -> bytes:
        return reader_state(self.reader)[1]

    def wait_present(self, timeout: float | None = None) -> bytes:
        return wait_card(self.reader, True, timeout or self.timeout, self.rig)

    def wait_absent(self, timeout: float | None = None) -> None:
        wait_card(self.reader, False, timeout or self.timeout, self.rig)

    def insert(self, profile: str | None = None, *, wait: bool = True, **overrides: Any) -> None:
        self.sim.command(f"insert {profile or ''} {_overrides(overrides)}")
        if wait:
            self.wait_present()

    def remove(self, *, wait: bool = True) -> None:
        self.sim.command("remove")
        if wait:
            self.wait_absent()

    def swap(self, profile: str, *, wait: bool = True, **overrides: Any) -> None:
        """Remove, wait until pcscd shows the reader empty, insert ``profile``."""
        self.remove(wait=True)
        self.insert(profile, wait=wait, **overrides)

    def unplug(self) -> None:
        self.sim.command("unplug")


class VpcdCard(CardSlot):
    """A simulated card in a vpcd slot of the rig's pcscd."""

    def __init__(self, sim: SimProcess, rig: PcscdRig, reader: str, timeout: float) -> None:
        super().__init__(sim)
        self.rig, self.reader, self.timeout = rig, reader, timeout



@contextlib.contextmanager
def vpcd_card(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (), *,
              seed: int = 0, slot: int = 0, inserted: bool = True, rig: PcscdRig | None = None,
              timeout: float = 10.0, **overrides: Any) -> Iterator[VpcdCard]:
    """A card subprocess in vpcd slot ``slot`` of the rig's pcscd, present when the block starts."""
    rig = rig or get_rig()
    rig.ensure(vpcd=True, timeout=timeout)
    args = ["--port", str(rig.vpcd_port + slot), "--profile", profile, "--seed", str(seed)]
    args += [a for f in faults for a in ("--fault", f)]
    args += [a for k, v in overrides.items() for a in ("--set", f"{k}={_overrides({'x': v})[2:]}")]
    if not inserted:
        args.append("--removed")
    reader = VPCD_READER if slot == 0 else f"Virtual PCD 00 {slot:02d}"
    _settle_empty(reader, rig)
    sim = SimProcess("vpcd_bridge", args)
    try:
        sim.start()
        card = VpcdCard(sim, rig, reader, timeout)
        if inserted:
            card.wait_present()
        yield card
    finally:
        unclean = _ended_uncleanly(sim)
        sim.stop()
        _settle_empty(reader, rig)
        if unclean:
            time.sleep(VPCD_POLL_GUARD)


# pcscd polls vpcd every 0.4 s. A disconnect in the middle of a command marks the slot empty for
# clients at once, before pcscd's poll has seen it; a card connecting within that window is then
# never reported. After such a disconnect the next card must wait one poll period.
VPCD_POLL_GUARD = 0.5


def _ended_uncleanly(sim: SimProcess) -> bool:
    try:
        event = str(sim.command("status", timeout=2.0).get("last_event", ""))
    except RigError:
        return True
    return "mid-command" in event or event.startswith(("unplugged", "send failed"))


def _settle_empty(reader: str, rig: PcscdRig) -> None:
    """Wait until pcscd shows the slot empty: a card inserted before its 0.4 s poll noticed the
    previous removal gets SCARD_E_NOT_TRANSACTED on its first APDU."""
    with contextlib.suppress(RigError):
        if rig.pcscd is not None and rig.pcscd.alive():
            wait_card(reader, False, 3.0)


class TwinReader(CardSlot):
    """A simulated GemPC Twin on a pty, served by libccidtwin in the rig's pcscd."""

    def __init__(self, sim: SimProcess, rig: PcscdRig, link: Path, timeout: float) -> None:
        super().__init__(sim)
        self.rig, self.link, self.timeout = rig, link, timeout
        self.reader = TWIN_READER



@contextlib.contextmanager
def twin_reader(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (), *,
                seed: int = 0, echo: bool = True, inserted: bool = True, rig: PcscdRig | None = None,
                timeout: float = 10.0, **overrides: Any) -> Iterator[TwinReader]:
    """A Twin reader subprocess on a pty; pcscd is (re)started with libccidtwin pointed at it."""
    rig = rig or get_rig()
    link = Path(tempfile.mkdtemp(prefix="posguard-twin-")) / "ttyTwin"
    args = ["--link", str(link), "--profile", profile, "--seed", str(seed)]
    args += [a for f in faults for a in ("--fault", f)]
    args += [a for k, v in overrides.items() for a in ("--set", f"{k}={_overrides({'x': v})[2:]}")]
    if not echo:
        args.append("--no-echo")
    if not inserted:
        args.append("--removed")
    sim = SimProcess("twin_reader", args)
    try:
        sim.start()
        rig.ensure(vpcd=True, twin_device=link, timeout=timeout)
        twin = TwinReader(sim, rig, link, timeout)
        if inserted:
            twin.wait_present()
        yield twin
    finally:
        sim.stop()
        rig.drop_twin(link)
        with contextlib.suppress(OSError):
            link.parent.rmdir()


class MagstripeReader(SimHandle):
    """A simulated serial magstripe reader; ``open_serial()`` gives the host side (pyserial)."""

    def __init__(self, sim: SimProcess, link: Path) -> None:
        super().__init__(sim)
        self.link = link

    def swipe(self, profile: str | None = None, *, mode: str = "ok", **overrides: Any) -> bytes:
        """Swipe a card; returns the frame as sent before any noise fault."""
        answer = self.sim.command(f"swipe {profile or ''} mode={mode} {_overrides(overrides)}")
        return bytes.fromhex(answer["frame"])

    def open_serial(self, timeout: float = 2.0) -> Any:
        import serial

        return serial.Serial(str(self.link), 9600, timeout=timeout)

    def unplug(self) -> None:
        self.sim.command("unplug")


@contextlib.contextmanager
def magstripe_reader(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (), *,
                     seed: int = 0, bcc: bool = False, **overrides: Any) -> Iterator[MagstripeReader]:
    """A magstripe reader subprocess publishing a pty symlink (no pcscd involved)."""
    link = Path(tempfile.mkdtemp(prefix="posguard-mag-")) / "ttyMag"
    args = ["--link", str(link), "--profile", profile, "--seed", str(seed)]
    args += [a for f in faults for a in ("--fault", f)]
    args += [a for k, v in overrides.items() for a in ("--set", f"{k}={_overrides({'x': v})[2:]}")]
    if bcc:
        args.append("--bcc")
    sim = SimProcess("magstripe", args)
    try:
        sim.start()
        yield MagstripeReader(sim, link)
    finally:
        sim.stop()
        with contextlib.suppress(OSError):
            link.parent.rmdir()


class PinPadSim(SimHandle):
    """A simulated encrypting PIN pad (:mod:`firmware_sim.pinpad`); the cardholder's keys are these methods."""

    def __init__(self, sim: SimProcess, link: Path, tmk_kcv: str) -> None:
        super().__init__(sim)
        self.link = link
        self.tmk_kcv = tmk_kcv

    def key_pin(self, pin: str) -> dict[str, Any]:
        """The cardholder keys ``pin`` and presses OK (the pending entry ends with the encrypted block)."""
        return self.sim.command(f"pin {pin}")

    def bypass(self) -> dict[str, Any]:
        return self.sim.command("bypass")

    def cancel(self) -> dict[str, Any]:
        return self.sim.command("cancel")

    def expire(self) -> dict[str, Any]:
        """The pad's own entry timeout fires now."""
        return self.sim.command("expire")

    def pad_status(self) -> dict[str, Any]:
        return self.sim.command("status")

    def unplug(self) -> None:
        self.sim.command("unplug")


@contextlib.contextmanager
def pin_pad(tmk: bytes | None = None, faults: tuple[str, ...] | list[str] = (), *,
            seed: int = 0) -> Iterator[PinPadSim]:
    """An encrypting PIN pad subprocess publishing a pty symlink."""
    link = Path(tempfile.mkdtemp(prefix="posguard-pin-")) / "ttyPin"
    args = ["--link", str(link), "--seed", str(seed)]
    if tmk is not None:
        args += ["--tmk", tmk.hex()]
    args += [a for f in faults for a in ("--fault", f)]
    sim = SimProcess("pinpad", args)
    try:
        ready = sim.start()
        yield PinPadSim(sim, link, str(ready.get("tmk_kcv", "")))
    finally:
        sim.stop()
        with contextlib.suppress(OSError):
            link.parent.rmdir()
