"""The examples in the flows' docstrings run."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import posguard.notices
import posguard.notices.slip


@pytest.mark.parametrize("module", [posguard.notices.slip, posguard.notices])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
