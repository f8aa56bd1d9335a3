"""Every example in a posguard docstring runs and holds: an example is documentation a reader copies, so a broken
one is a bug (each module is imported and its doctests run; modules without examples count nothing)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import posguard

MODULES = sorted(m.name for m in pkgutil.walk_packages(posguard.__path__, "posguard.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), report=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples fail " \
                               f"(run: python -m doctest -v {name.replace('.', '/')}.py)"


def test_the_examples_are_many() -> None:
    attempted = sum(doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES)
    assert attempted >= 50
