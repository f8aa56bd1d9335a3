"""The examples in the codec's docstrings run."""

from __future__ import annotations

import doctest

import pytest

import posguard.iso8583
import posguard.iso8583.message
import posguard.iso8583.redaction
import posguard.sensitive


@pytest.mark.parametrize("module", [posguard.iso8583, posguard.iso8583.message, posguard.sensitive,
                                    posguard.iso8583.redaction])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
