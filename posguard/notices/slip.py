"""Printable slips for 32/42/48-column receipt printers. CJK characters take two columns.

>>> width("退货 OK")
7
>>> for line in wrap("撤销成功 void approved", 10): print(repr(line))
'撤销成功 '
'void '
'approved'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["COLUMNS", "width", "wrap", "render_slip", "pair"]

COLUMNS = (32, 42, 48)


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def width(text: str) -> int:
    """Printed width in columns (CJK wide and full-width characters count two)."""
    return sum(char_width(c) for c in text)


def wrap(text: str, columns: int) -> list[str]:
    """Break ``text`` into lines of at most ``columns`` printed columns, at spaces when possible."""
    lines: list[str] = []
    line, used = "", 0
    for word in _words(text):
        w = width(word)
        if used + w > columns and line:
            lines.append(line)
            line, used = "", 0
            word = word.lstrip(" ")
            w = width(word)
        while w > columns:  # a word longer than a line: cut it by width
            cut, cw = "", 0
            for ch in word:
                if cw + char_width(ch) > columns:
                    break
                cut, cw = cut + ch, cw + char_width(ch)
            lines.append(cut)
            word = word[len(cut):]
            w = width(word)
        line, used = line + word, used + w
    if line:
        lines.append(line)
    return lines or [""]


def _words(text: str) -> Iterable[str]:
    """Words with their trailing space; every CJK character is a word of its own."""
    word = ""
    for ch in text:
        if char_width(ch) == 2:
            if word:
                yield word
                word = ""
            yield ch
        elif ch == " ":
            yield word + " "
            word = ""
        else:
            word += ch
    if word:
        yield word


def pair(label: str, value: str, columns: int) -> list[str]:
    """``label ...... value`` on one line when it fits, else value right-aligned on the next."""
    gap = columns - width(label) - width(value)
    if gap >= 1:
        return [label + " " * gap + value]
    return wrap(label, columns) + [" " * max(0, columns - width(value)) + value if width(value) <= columns
                                   else line for line in wrap(value, columns)]


def center(text: str, columns: int) -> list[str]:
    return [" " * max(0, (columns - width(line)) // 2) + line for line in wrap(text, columns)]


def render_slip(title: str, rows: list[tuple[str, str]], footer: list[str], columns: int = 32) -> str:
    """A slip: centred title, a rule, label/value rows, a rule, wrapped footer lines."""
    if columns not in COLUMNS:
        raise ValueError(f"printer width {columns} not supported; use one of {COLUMNS}")
    out = center(title, columns) + ["-" * columns]
    for label, value in rows:
        out += pair(label, value, columns)
    out.append("-" * columns)
    for text in footer:
        out += wrap(text, columns)
    assert all(width(line) <= columns for line in out)
    return "\n".join(line.rstrip() for line in out) + "\n"
