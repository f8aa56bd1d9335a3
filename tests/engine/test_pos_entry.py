"""Field 22/23 and the CUP read flags as declared per dialect family (posguard.engine.pos_entry): the examples in
its docstrings run, and every entry mode has a code in every family."""

from __future__ import annotations

import doctest

import pytest

from posguard.engine import pos_entry


def test_docstring_examples() -> None:
    result = doctest.testmod(pos_entry)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("family", sorted(pos_entry.PAN_ENTRY))
def test_every_entry_mode_has_a_two_digit_code(family: str) -> None:
    for mode in pos_entry.ENTRY_MODES:
        code = pos_entry.pos_entry_mode(family, mode)
        assert len(code) == 3 and code.isdigit()


def test_cup_third_digit_is_the_pin_of_this_request_and_iso_the_terminals_capability() -> None:
    assert [pos_entry.pos_entry_mode("cup", "swipe", pin_included=p) for p in (True, False)] == ["021", "022"]
    assert [pos_entry.pos_entry_mode("iso", "chip", pin_capable=p) for p in (True, False)] == ["051", "052"]


def test_unknown_entry_mode_and_bad_5F34_are_named() -> None:
    with pytest.raises(pos_entry.UnknownEntryMode, match="'ecommerce'"):
        pos_entry.pos_entry_mode("iso", "ecommerce")
    with pytest.raises(pos_entry.UnknownEntryMode, match="5F34"):
        pos_entry.card_sequence_number("chip", "0A")
