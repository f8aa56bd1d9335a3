"""A simulated acquirer host: ISO 8583 over TCP on loopback, with its own ledger, rules and faults.

It is the *other side of the wire* and never imports posguard; its codec is pyiso8583.

In-process (tests)::

    from firmware_sim.host import HostSimulator, SimConfig
    with HostSimulator(SimConfig(dialect="cup", framing="binary2")) as sim:
        sim.add_fault("no_response", mti="0200")
        ...  # talk to ("127.0.0.1", sim.port)
        sim.ledger.find(kind="sale", status="approved")

As a program::

    python -m firmware_sim.host --dialect cup --port 0 --control-port 0
    # prints one JSON line: {"port": 40123, "control_port": 40124, "dialect": "cup", ...}
"""

from .control import ControlClient, ControlError
from .dialects import DIALECTS, get_spec
from .faults import FAULT_KINDS, Fault
from .ledger import Entry, Ledger
from .processor import Processor
from .rules import DEFAULT_RULES, Rule, RuleSet
from .server import HostSimulator, RealScheduler, SimConfig, masked_doc

__all__ = [
    "ControlClient",
    "ControlError",
    "DEFAULT_RULES",
    "DIALECTS",
    "Entry",
    "FAULT_KINDS",
    "Fault",
    "HostSimulator",
    "Ledger",
    "Processor",
    "RealScheduler",
    "Rule",
    "RuleSet",
    "SimConfig",
    "get_spec",
    "masked_doc",
]
