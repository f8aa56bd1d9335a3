"""A small BER-TLV builder and parser for the card side (EMV tags: 1-3 byte tags, definite lengths)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class TlvFormatError(ValueError):
    """Raised when card data is not well-formed BER-TLV."""


def encode_length(length: int) -> bytes:
    """Minimal definite-length encoding."""
    if length < 0x80:
        return bytes([length])
    if length <= 0xFF:
        return bytes([0x81, length])
    if length <= 0xFFFF:
        return bytes([0x82, length >> 8, length & 0xFF])
    raise TlvFormatError(f"length {length} too large for a card TLV")


def tlv(tag: str, value: bytes | str) -> bytes:
    """One TLV: ``tag`` as upper-case hex (``"9F36"``), value as bytes or hex text."""
    raw = bytes.fromhex(value) if isinstance(value, str) else value
    return bytes.fromhex(tag) + encode_length(len(raw)) + raw


def build(items: Iterable[tuple[str, bytes | str]]) -> bytes:
    """Concatenate several TLVs, order kept."""
    return b"".join(tlv(tag, value) for tag, value in items)


def _read_tag(data: bytes, pos: int) -> tuple[str, int]:
    start = pos
    if pos >= len(data):
        raise TlvFormatError(f"tag missing at offset {pos}")
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TlvFormatError(f"tag truncated at offset {start}")
            more = data[pos] & 0x80
            pos += 1
            if not more:
                break
    return data[start:pos].hex().upper(), pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvFormatError(f"length missing at offset {pos}")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 2 or pos + count > len(data):
        raise TlvFormatError(f"bad length byte 0x{first:02X} at offset {pos - 1}")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def iter_tlv(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield ``(tag, value)`` for each top-level TLV; 00/FF padding between objects is skipped."""
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if pos + length > len(data):
            raise TlvFormatError(f"tag {tag} claims {length} bytes, {len(data) - pos} left")
        yield tag, data[pos : pos + length]
        pos += length


def parse_dol(dol: bytes) -> list[tuple[str, int]]:
    """Parse a data object list (tag + length pairs, no values): PDOL, CDOL1, CDOL2."""
    out: list[tuple[str, int]] = []
    pos = 0
    while pos < len(dol):
        tag, pos = _read_tag(dol, pos)
        if pos >= len(dol):
            raise TlvFormatError(f"DOL entry {tag} has no length")
        out.append((tag, dol[pos]))
        pos += 1
    return out


def split_dol_data(dol: bytes, data: bytes) -> dict[str, bytes]:
    """Cut the terminal's concatenated DOL data into ``{tag: value}``; the length must match exactly."""
    entries = parse_dol(dol)
    expected = sum(length for _, length in entries)
    if len(data) != expected:
        raise TlvFormatError(f"DOL data is {len(data)} bytes, the DOL asks for {expected}")
    values: dict[str, bytes] = {}
    pos = 0
    for tag, length in entries:
        values[tag] = data[pos : pos + length]
        pos += length
    return values


def dol_length(dol: bytes) -> int:
    """Total data length a DOL asks for."""
    return sum(length for _, length in parse_dol(dol))
