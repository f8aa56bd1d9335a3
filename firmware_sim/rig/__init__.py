"""The one launcher of the simulators, used by the tests, the benchmarks and ``posguard demo``.

- :mod:`firmware_sim.rig.pcscd` -- a private pcscd per process (its own reader.conf directory and socket,
  handed over systemd-style; ``PCSCLITE_CSOCK_NAME`` points the PC/SC clients of this process at it).
- :mod:`firmware_sim.rig.sims` -- any simulator program as a subprocess with its line control channel
  (:class:`SimProcess`), and the card-side handles: a vpcd card, the GemPC Twin on a pty, the magstripe
  reader on a pty (insert / remove / swap / swipe / faults / unplug).
- :mod:`firmware_sim.rig.launcher` -- the acquirer host as a program on free loopback ports
  (:class:`HostProcess`: faults, ledger, stats over its control port) and :class:`Rig`, host + reader
  (+ magstripe) at once for the demo and the benchmarks.

Pytest fixtures over these live in ``tests/rig/fixtures.py``.
"""

from firmware_sim.rig.launcher import HostProcess, Rig, host_process
from firmware_sim.rig.pcscd import (
    TWIN_READER,
    VPCD_READER,
    Pcscd,
    PcscdRig,
    ReaderConfig,
    RigError,
    free_port_pair,
    get_rig,
    list_readers,
    pcsc_env,
    pcscd_available,
    process_socket_path,
    shutdown_rig,
)
from firmware_sim.rig.sims import (
    MagstripeReader,
    SimError,
    SimHandle,
    SimProcess,
    TwinReader,
    VpcdCard,
    connect,
    connected,
    magstripe_reader,
    transmit,
    twin_reader,
    vpcd_card,
    wait_card,
)

__all__ = [
    "TWIN_READER", "VPCD_READER", "HostProcess", "MagstripeReader", "Pcscd", "PcscdRig", "ReaderConfig",
    "Rig", "RigError", "SimError", "SimHandle", "SimProcess", "TwinReader", "VpcdCard", "connect", "connected",
    "free_port_pair", "get_rig", "host_process", "list_readers", "magstripe_reader", "pcsc_env",
    "pcscd_available", "process_socket_path", "shutdown_rig", "transmit", "twin_reader", "vpcd_card",
    "wait_card",
]
