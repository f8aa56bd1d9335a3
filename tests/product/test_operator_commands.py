"""Issue 10, "operator input": every line is checked before the card or the host is touched."""

from __future__ import annotations

import doctest

import pytest

import posguard.service.commands
from posguard.service.commands import Command, CommandError, parse

PAN = "4761739001010119"


@pytest.mark.parametrize(("line", "words"), [
    ("sale 1000000000000", "from 1 to"),  # 13 digits: more than field 4 and the ceiling
    (f"sale {PAN}", "looks like a card number"),
    ("sale 0", "from 1 to"),
    ("sale ١٢٥٠", "ASCII digits"),  # Arabic-Indic digits
    ("sale -5", "ASCII digits"),
    ("sale 12.50", "ASCII digits"),
    ("sale abc", "ASCII digits"),
    ("sale", "sale needs AMOUNT"),
    ("refund POSGRD01-00000001", "refund needs AMOUNT"),
    ("void", "void needs TXN"),
    ("void ../../etc/passwd", "not a transaction id"),
    ("void POSGRD01-00000001 extra", "takes 1 argument"),
    ("sale 100 colour=red", "takes no option"),
    ("sale 100 order=" + "x" * 41, "order=REF"),
    ("launch", "unknown command"),
    ("", "empty command"),
])
def test_bad_lines_are_refused_with_a_reason(line: str, words: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(line, max_amount=10_000_000)
    assert words in str(err.value)
    assert PAN not in str(err.value) and "\n" not in str(err.value)


def test_good_lines() -> None:
    assert parse("SALE 1250 order=A-17", max_amount=10_000) == Command("sale", 1250, None, "A-17")
    assert parse("refund POSGRD01-00000003 500", max_amount=10_000) == Command("refund", 500, "POSGRD01-00000003")
    assert parse("status", max_amount=1) == Command("status")


def test_the_configured_ceiling_applies() -> None:
    with pytest.raises(CommandError, match="from 1 to 5000"):
        parse("sale 5001", max_amount=5000)


def test_docstring_examples() -> None:
    assert doctest.testmod(posguard.service.commands).failed == 0
