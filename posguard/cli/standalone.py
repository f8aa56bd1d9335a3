"""A command group run on its own (``python -m posguard.cli.card``, ``...cli.flows``): the same sub-commands the
``posguard`` CLI mounts, under a parser of their own, returning the command's exit status."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

AddCommands = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def run_standalone(prog: str, add_commands: AddCommands, argv: Sequence[str] | None, *,
                   dest: str = "command", **parser_options: Any) -> int:
    """Parse ``argv`` with a parser named ``prog`` holding the sub-commands ``add_commands`` adds, and run the
    chosen one (its ``func``)."""
    parser = argparse.ArgumentParser(prog=prog, **parser_options)
    add_commands(parser.add_subparsers(dest=dest, required=True))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc
