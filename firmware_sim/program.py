"""Command-line and control-line pieces shared by the simulator programs (faults, profile overrides)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from firmware_sim import control
from firmware_sim.faults import Fault, FaultPlan


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="a fault, e.g. 'sw sw=6F00 ins=B2' (repeatable; see firmware_sim.faults)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG (default 0)")


def add_profile_options(parser: argparse.ArgumentParser, default: str = "visa_credit_sig") -> None:
    parser.add_argument("--profile", default=default, help=f"card profile (default {default})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile field; VALUE is JSON or plain text (repeatable)")


def parse_overrides(pairs: list[str] | dict[str, str]) -> dict[str, str]:
    """``KEY=VALUE`` words as a dict of text; the profile converts each to its field's type."""
    items = pairs.items() if isinstance(pairs, dict) else (p.partition("=")[::2] for p in pairs)
    return dict(items)


def fault_text(args: list[str], kwargs: dict[str, str]) -> str:
    """Re-assemble a fault spec from a parsed control line."""
    return " ".join([*args, *(f"{k}={v}" for k, v in kwargs.items())])


def add_fault(plan: FaultPlan, args: list[str], kwargs: dict[str, str], unplug: Callable[[], None]) -> Fault:
    """Add the fault a control line names; an ``unplug`` fault acts at once instead of being armed."""
    added = plan.add(Fault.parse(fault_text(args, kwargs)))
    if added.kind == "unplug":
        plan.faults.remove(added)
        unplug()
    return added


def then_status(action: Callable[[], object], status: Callable[[], dict[str, Any]]) -> control.Handler:
    """A control handler that runs ``action`` and answers with the simulator's status."""
    def run(args: list[str], kwargs: dict[str, str]) -> dict[str, Any]:
        action()
        return status()
    return run
