"""The acquirer host as a program, and :class:`Rig`: every simulator the demo (or a benchmark) needs at once.

:class:`HostProcess` runs ``python -m firmware_sim.host`` on free loopback ports and drives it over its JSON
control port (faults, ledger, stats). :class:`Rig` adds a card reader -- a private pcscd with a vpcd card, or
the serial GemPC Twin on a pseudo-terminal when pcscd is not installed -- and optionally the serial magstripe
reader. Each simulator is a subprocess in its own session; :class:`Rig` stops every one of them (and reaps it)
on exit, even after an error. pcscd gets its own socket the systemd way (``LISTEN_FDS``) and this process
points ``PCSCLITE_CSOCK_NAME`` at it, so a demo never touches the machine's pcscd.

``Rig`` satisfies ``posguard.demo.rig.DemoRig``; it is published to posguard through the
``posguard.simulators`` entry point of this distribution, never imported by the product.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware_sim.host.control import ControlClient
from firmware_sim.rig.pcscd import (
    Pcscd,
    ReaderConfig,
    RigError,
    free_port_pair,
    pcscd_available,
    process_socket_path,
)
from firmware_sim.rig.sims import SimProcess, pin_pad

__all__ = ["HostProcess", "Rig", "RigError", "host_process"]


class HostProcess:
    """``python -m firmware_sim.host`` on free loopback ports, driven over its JSON control port (``ctl``)."""

    def __init__(self, dialect: str, framing: str = "binary2", *, timeout: float = 10.0,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.dialect = dialect
        self.framing = framing
        self.sim = SimProcess("host", ["--dialect", dialect, "--framing", framing, "--port", "0",
                                       "--control-port", "0", *extra_args], ready_prefix="", quit_line=None)
        try:
            info = self.sim.start(timeout)
            self.port: int = int(info["port"])
            self.control_address = ("127.0.0.1", int(info["control_port"]))
            self.ctl = ControlClient(self.control_address)
        except BaseException:
            self.sim.stop()
            raise

    @property
    def proc(self) -> Any:
        return self.sim.proc

    def stop(self) -> None:
        """Ask the host to stop over its control port; SIGTERM / SIGKILL it if that fails. Always reaped."""
        try:
            with contextlib.suppress(Exception):
                self.ctl.stop()
            with contextlib.suppress(Exception):
                self.ctl.close()
            if self.sim.proc is not None:
                with contextlib.suppress(Exception):
                    self.sim.proc.wait(timeout=5)
        finally:
            self.sim.stop()

    def add_fault(self, kind: str, **kw: Any) -> None:
        self.ctl.add_fault(kind, **kw)

    def clear_faults(self) -> None:
        self.ctl.clear_faults()

    def reset(self) -> None:
        self.wait_idle()
        self.ctl.call("reset_ledger")
        self.ctl.clear_faults()

    def ledger(self, tid: str | None = None) -> list[dict[str, Any]]:
        entries = self.ctl.ledger()
        return [e for e in entries if tid is None or e["tid"] == tid]

    def wait_idle(self, real_limit: float = 5.0) -> dict[str, Any]:
        """Until no client is connected and every frame received was handled (after a client was killed)."""
        give_up = time.monotonic() + real_limit
        while True:
            stats = self.ctl.stats()
            if stats["open_connections"] == 0 and stats["frames_in"] == stats["frames_handled"]:
                return stats
            if time.monotonic() > give_up:
                raise RigError(f"the simulator never went idle: {stats}")
            time.sleep(0.002)


@contextlib.contextmanager
def host_process(dialect: str, framing: str = "binary2", *, extra_args: tuple[str, ...] = ()
                 ) -> Iterator[HostProcess]:
    """A :class:`HostProcess` (``extra_args``: more of the host's command line), stopped and reaped at the end."""
    host = HostProcess(dialect, framing, extra_args=extra_args)
    try:
        yield host
    finally:
        host.stop()


class Rig:
    """Host simulator + card reader simulator (+ magstripe reader). Use as a context manager."""

    def __init__(self, dialect: str, *, profile: str = "visa_credit_sig", reader: str = "auto",
                 magstripe: bool = False, pin_pad: dict[str, Any] | None = None) -> None:
        self.dialect = dialect
        #: an encrypting PIN pad: {"tmk": bytes, "pin_key": bytes, "card_pins": {PAN: PIN}}; the host checks PINs
        self.pin_pad_spec = pin_pad
        self.pad: Any = None  # the PinPadSim (firmware_sim.rig.sims.pin_pad) while the rig runs
        self._pad_cm: Any = None
        self.with_magstripe = magstripe
        self.mag: SimProcess | None = None
        self.mag_path: Path | None = None
        self.profile = profile
        self.reader_kind = ("pcsc" if pcscd_available() else "twin") if reader == "auto" else reader
        self.workdir = Path(tempfile.mkdtemp(prefix="posguard-demo-"))
        self.host: HostProcess | None = None
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
        pin_args: tuple[str, ...] = ()
        if self.pin_pad_spec is not None:
            spec = self.pin_pad_spec
            pin_args = ("--pin-key", spec["pin_key"].hex(), "--require-pin-block",
                        *(a for pan, pin in spec["card_pins"].items() for a in ("--card-pin", f"{pan}={pin}")))
            self._pad_cm = pin_pad(spec["tmk"])
            self.pad = self._pad_cm.__enter__()
        self.host = HostProcess(self.dialect, extra_args=pin_args)
        self.host_port, self.control_port = self.host.port, self.host.control_address[1]
        if self.reader_kind == "pcsc":
            port = free_port_pair()
            self.pcscd = Pcscd(ReaderConfig(vpcd_port=port), socket_path=process_socket_path(adopt=False),
                               workdir=self.workdir / "pcscd", debug=False)
            self.pcscd.workdir.mkdir()
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

    def swap(self, profile: str, **overrides: str) -> None:
        """Put another card in the reader (waits until the reader sees it). ``overrides`` are profile fields
        of the card put in (e.g. ``atc``: the same card again keeps counting where it stopped)."""
        if profile == self.current_profile or self.card is None:
            return
        self.card.command(" ".join(["swap", profile, *(f"{k}={v}" for k, v in overrides.items())]))
        self.current_profile = profile

    def swipe(self, profile: str, **overrides: str) -> None:
        """Swipe a card through the magstripe reader (``overrides``: profile fields, e.g. service_code)."""
        if self.mag is None:
            raise RigError("the rig was started without a magstripe reader")
        self.mag.command(" ".join(["swipe", profile, *(f"{k}={v}" for k, v in overrides.items())]))

    def host_fault(self, kind: str, **kw: Any) -> None:
        with ControlClient(("127.0.0.1", self.control_port)) as ctl:
            ctl.add_fault(kind, **kw)

    def settlement_report(self, tid: str | None = None, fmt: str = "csv") -> str:
        """The host's settlement report as text (docs/settlement-report.md)."""
        with ControlClient(("127.0.0.1", self.control_port)) as ctl:
            return ctl.report(tid, fmt)

    def ledger(self) -> list[dict[str, Any]]:
        with ControlClient(("127.0.0.1", self.control_port)) as ctl:
            return ctl.ledger()

    def stop(self) -> None:
        for sim in (self.mag, self.card, self.host):
            if sim is not None:
                with contextlib.suppress(Exception):
                    sim.stop()
        if self._pad_cm is not None:
            with contextlib.suppress(Exception):
                self._pad_cm.__exit__(None, None, None)
            self._pad_cm = self.pad = None
        if self.pcscd is not None:
            self.pcscd.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
