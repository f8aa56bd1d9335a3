"""The product never imports the simulators; ``posguard demo`` finds them through an entry point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import posguard
import posguard.demo.rig as demo_rig
from posguard.cli import main

PRODUCT = Path(posguard.__file__).resolve().parent


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_product_module_imports_firmware_sim() -> None:
    offenders = [f"{path.relative_to(PRODUCT.parent)}: {name}"
                 for path in sorted(PRODUCT.rglob("*.py"))
                 for name in _imported_modules(ast.parse(path.read_text(), str(path)))
                 if name == "firmware_sim" or name.startswith("firmware_sim.")]
    assert offenders == []


def test_the_installed_simulators_are_found_through_the_entry_point() -> None:
    from firmware_sim.rig import Rig, RigError

    factory, error = demo_rig.load_simulators()
    assert factory is Rig and error is RigError


def test_demo_without_the_simulators_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo_rig, "entry_points", lambda group: [])
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "simulators" in err[0] and "not installed" in err[0] and "scripts/setup.sh" in err[0]
