"""Data Object Lists (PDOL 9F38, CDOL1 8C, CDOL2 8D): parse the list, build the data the card asks for.

Padding and truncation follow EMV Book 3 section 5.4: numeric (n) values are padded with leading zeros and
truncated on the left; compressed numeric (cn) values are padded with trailing FF; everything else is
padded with trailing zeros and truncated on the right. Data the terminal does not have is sent as zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from posguard.emv.channel import CONSTRUCTED_FIRST_DIGITS
from posguard.emv.errors import CardDataError

#: Tags of numeric (n) format: right-justified, leading zero padding.
NUMERIC_TAGS = frozenset({
    "5F24", "5F25", "5F28", "5F2A", "5F34", "5F36", "9A", "9C", "9F01", "9F02", "9F03", "9F11", "9F15",
    "9F1A", "9F21", "9F35", "9F3C", "9F3D", "9F41", "9F42", "9F44",
})
#: Tags of compressed numeric (cn) format: left-justified, trailing FF padding.
CN_TAGS = frozenset({"5A", "9F20"})


@dataclass(frozen=True, slots=True)
class DolEntry:
    tag: str
    length: int


def parse_dol(dol: bytes, *, name: str = "DOL") -> list[DolEntry]:
    """Split a DOL into (tag, length) entries; raises CardDataError with the offset of a broken entry."""
    out: list[DolEntry] = []
    pos = 0
    n = len(dol)
    while pos < n:
        start = pos
        first = dol[pos]
        pos += 1
        if first & 0x1F == 0x1F:
            while pos < n and dol[pos] & 0x80:
                pos += 1
            pos += 1
        if pos >= n:
            raise CardDataError(f"{name} entry has a tag but no length", stage=name, path=name, offset=start)
        tag = dol[start:pos].hex().upper()
        length = dol[pos]
        pos += 1
        out.append(DolEntry(tag, length))
    return out


@lru_cache(maxsize=128)
def dol_entries(dol: bytes, name: str = "DOL") -> tuple[DolEntry, ...]:
    """:func:`parse_dol` as an immutable tuple, kept per process: a card's PDOL/CDOL1/CDOL2 are the same on
    every read of that card profile (a DOL names tags and lengths, no card data). A broken DOL raises each
    time (errors are not cached)."""
    return tuple(parse_dol(dol, name=name))


def fit(tag: str, value: bytes, length: int) -> bytes:
    """``value`` padded or truncated to ``length`` bytes by the format rule of ``tag``."""
    have = len(value)
    if have == length:
        return value
    if tag in NUMERIC_TAGS:
        return value[have - length:] if have > length else bytes(length - have) + value
    if have > length:
        return value[:length]
    pad = b"\xff" if tag in CN_TAGS else b"\x00"
    return value + pad * (length - have)


def build_dol_data(entries: Sequence[DolEntry], sources: Mapping[str, bytes]) -> bytes:
    """Concatenate the value of each entry from ``sources`` (zeros when absent or constructed, EMV Book 3
    5.4)."""
    out = bytearray()
    for e in entries:
        tag = e.tag
        value = sources.get(tag)
        if value is None or tag[0] in CONSTRUCTED_FIRST_DIGITS:
            out += bytes(e.length)
        elif len(value) == e.length:
            out += value
        else:
            out += fit(tag, value, e.length)
    return bytes(out)


def dol_length(entries: Sequence[DolEntry]) -> int:
    return sum(e.length for e in entries)
