"""The ``posguard`` command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from posguard import __version__

# Command groups other parts of posguard provide: (module, function that registers them).
_COMMAND_GROUPS = (
    ("posguard.cli_iso8583", "add_iso8583_commands"),
    ("posguard.cli_card", "add_card_commands"),
    ("posguard.cli_engine", "add_engine_commands"),
    ("posguard.cli_flows", "add_flow_commands"),
    ("posguard.cli_product", "add_product_commands"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posguard",
        description="Terminal-side POS error handler: ISO 8583 codec, card readers, transaction engine and "
        "correction flows.",
    )
    parser.add_argument("--version", action="version", version=f"posguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in _COMMAND_GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # that part is not installed in this build
            raise
        getattr(mod, func)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        result = ns.func(ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
