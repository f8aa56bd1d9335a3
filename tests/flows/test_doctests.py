"""The examples in the flows' docstrings run."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import posguard.flows.outcomes
import posguard.flows.unsigned_follow_up
import posguard.notices
import posguard.notices.slip


@pytest.mark.parametrize("module", [posguard.notices.slip, posguard.notices, posguard.flows.unsigned_follow_up,
                                    posguard.flows.outcomes])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
