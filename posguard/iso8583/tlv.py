"""BER-TLV as EMV uses it in field 55 and in card responses.

* multi-byte tags (``9F34``, ``DF8101``), long-form lengths (``81 xx``, ``82 xx xx``);
* repeated tags kept in order, unknown tags preserved byte-exact;
* constructed tags (bit 6 of the first tag byte) expose their children on demand.

Errors are :class:`~posguard.iso8583.errors.TLVError` with the path (``55.9F34``) and the offset
inside the field. Values never appear in error text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from posguard.iso8583.errors import TLVError

__all__ = ["TLV", "parse_tlv", "build_tlv", "find_tag", "iter_tags", "encode_length", "encode_tag"]


@dataclass(frozen=True, slots=True)
class TLV:
    """One BER-TLV data object. ``tag`` is upper-case hex (``"9F34"``); ``value`` the raw value bytes."""

    tag: str
    value: bytes
    #: offset of the tag's first byte within the buffer it was parsed from (``-1`` when built)
    offset: int = field(default=-1, compare=False)

    @property
    def constructed(self) -> bool:
        return bool(int(self.tag[:2], 16) & 0x20)

    @property
    def children(self) -> list[TLV]:
        """The nested objects of a constructed tag (empty for a primitive one)."""
        if not self.constructed:
            return []
        return parse_tlv(self.value, path=self.tag)

    def encode(self) -> bytes:
        return encode_tag(self.tag) + encode_length(len(self.value)) + self.value

    def __repr__(self) -> str:  # value kept out: field 55 may carry track-2 equivalent data
        return f"TLV({self.tag}, {len(self.value)} bytes)"


def encode_tag(tag: str) -> bytes:
    try:
        raw = bytes.fromhex(tag)
    except ValueError:
        raise TLVError(f"tag {tag!r} is not hex", path=tag) from None
    if not raw:
        raise TLVError("empty tag", path=tag)
    return raw


def encode_length(n: int) -> bytes:
    """Minimal BER length: short form below 128, else ``8k`` followed by k bytes."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) > 4:
        raise TLVError(f"value of {n} bytes is too long for BER-TLV")
    return bytes((0x80 | len(body),)) + body


def _read_tag(data: bytes, pos: int, end: int, path: str) -> tuple[str, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TLVError(
                    "tag runs past the end of the data",
                    path=path,
                    offset=start,
                    hint="a multi-byte tag needs a last byte with bit 8 clear",
                )
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start > 4:
                raise TLVError("tag longer than 4 bytes", path=path, offset=start)
    return data[start:pos].hex().upper(), pos


def _read_length(data: bytes, pos: int, end: int, path: str) -> tuple[int, int]:
    if pos >= end:
        raise TLVError("length missing after tag", path=path, offset=pos)
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    n = first & 0x7F
    if n == 0:
        raise TLVError("indefinite length (80) is not allowed in EMV", path=path, offset=pos - 1)
    if n > 4:
        raise TLVError(f"length of {n} length bytes", path=path, offset=pos - 1, expected="at most 4")
    if pos + n > end:
        raise TLVError("length bytes run past the end of the data", path=path, offset=pos - 1)
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def parse_tlv(data: bytes, *, path: str = "55", base_offset: int = 0, skip_padding: bool = True) -> list[TLV]:
    """Parse the top level of ``data`` into TLV objects, in order, repeats kept.

    ``path`` prefixes the error path (``55`` gives ``55.9F34``); ``base_offset`` is added to reported
    offsets. Padding bytes ``00``/``FF`` between objects are skipped (EMV allows them) when ``skip_padding``.
    """
    items: list[TLV] = []
    pos = 0
    end = len(data)
    while pos < end:
        if skip_padding and data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        start = pos
        tag, pos = _read_tag(data, pos, end, path)
        sub = f"{path}.{tag}" if path else tag
        try:
            length, pos = _read_length(data, pos, end, sub)
        except TLVError as e:
            raise TLVError(e.reason, path=sub, offset=base_offset + (e.offset or 0)) from None
        if pos + length > end:
            raise TLVError(
                "value runs past the end of the data",
                path=sub,
                offset=base_offset + start,
                expected=f"{length} value bytes",
                got=f"{end - pos} bytes left",
                hint="the TLV length is corrupt or the field was truncated",
            )
        items.append(TLV(tag, bytes(data[pos : pos + length]), base_offset + start))
        pos += length
    return items


def iter_tags(items: Iterable[TLV]) -> Iterator[TLV]:
    """Depth-first over ``items`` and the children of constructed tags."""
    for item in items:
        yield item
        if item.constructed:
            yield from iter_tags(item.children)


def find_tag(items: Iterable[TLV], tag: str) -> TLV | None:
    """The first object with ``tag`` (depth-first), or None."""
    tag = tag.upper()
    for item in iter_tags(items):
        if item.tag == tag:
            return item
    return None


def build_tlv(items: Iterable[TLV | tuple[str, bytes]]) -> bytes:
    """Encode objects in the given order with minimal lengths."""
    out = bytearray()
    for item in items:
        if isinstance(item, TLV):
            tag, value = item.tag, item.value
        else:
            tag, value = item
        out += encode_tag(tag)
        out += encode_length(len(value))
        out += value
    return bytes(out)
