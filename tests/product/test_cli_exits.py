"""Every command documents its exit status: in its ``--help`` and in the README's table, both from
:data:`posguard.cli.exits.EXITS`; and every command is in that table."""

from __future__ import annotations

import argparse

from posguard.cli import build_parser
from posguard.cli.exits import EXITS, markdown_table
from tests.product.conftest import ROOT


def _leaves(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix.strip(): parser}
    out: dict[str, argparse.ArgumentParser] = {}
    for name, child in subs[0].choices.items():
        out.update(_leaves(child, f"{prefix} {name}"))
    return out


def test_every_command_has_its_exit_status_in_help() -> None:
    leaves = _leaves(build_parser())
    assert sorted(leaves) == sorted(EXITS)
    for command, parser in leaves.items():
        text = parser.format_help()
        assert "exit status:" in text, command
        for code in EXITS[command]:
            assert f"\n  {code}  " in text, (command, code)


def test_the_readme_table_is_the_declared_one() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text()
