"""What the demo needs from the simulators, and how it finds them without importing them.

The simulators (acquirer host, card reader, magstripe reader) are a separate distribution,
``posguard-firmware-sim`` (the ``firmware_sim`` folder of the repository; ``scripts/setup.sh`` installs it
into the development venv). It publishes a rig factory and its error class under the
:data:`ENTRY_POINT_GROUP` entry-point group; the product only knows the :class:`DemoRig` protocol below.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ENTRY_POINT_GROUP", "DemoRig", "RigFactory", "SimulatorsMissing", "load_simulators"]

ENTRY_POINT_GROUP = "posguard.simulators"
INSTALL_HINT = "install them with scripts/setup.sh, or: pip install -e ./firmware_sim"


class DemoRig(Protocol):
    """Running simulators: the acquirer host on ``host_port``, a card reader (``reader_kind`` "pcsc": a vpcd
    card in "Virtual PCD 00 00" of this process's pcscd; "twin": a GemPC Twin on ``twin_path``) and, when asked
    for, a magstripe reader on ``mag_path``. A context manager: every simulator is stopped on exit."""

    reader_kind: str
    host_port: int
    twin_path: Path | None
    mag_path: Path | None

    def __enter__(self) -> DemoRig: ...

    def __exit__(self, *exc: object) -> None: ...

    def swap(self, profile: str, **overrides: str) -> None: ...

    def swipe(self, profile: str, **overrides: str) -> None: ...

    def host_fault(self, kind: str, **kw: Any) -> None: ...

    def ledger(self) -> list[dict[str, Any]]: ...

    def settlement_report(self, tid: str | None = None, fmt: str = "csv") -> str: ...


class RigFactory(Protocol):
    def __call__(self, dialect: str, *, profile: str, reader: str, magstripe: bool,
                 pin_pad: dict[str, Any] | None = None) -> DemoRig: ...


class SimulatorsMissing(RuntimeError):
    """The simulator distribution is not installed."""


def load_simulators() -> tuple[RigFactory, type[Exception]]:
    """The installed simulators' rig factory and the error their rig raises when a simulator fails."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if "rig" not in found or "error" not in found:
        raise SimulatorsMissing(f"the simulators (posguard-firmware-sim) are not installed: {INSTALL_HINT}")
    try:
        factory: RigFactory = found["rig"].load()
        error: type[Exception] = found["error"].load()
    except ImportError as exc:
        raise SimulatorsMissing(f"the simulators (posguard-firmware-sim) cannot be imported ({exc}): "
                                f"{INSTALL_HINT}") from exc
    return factory, error
