"""A card channel: one place where the session's commands go out, are counted and traced.

The trace holds the step name, status word and response length only: never APDU data. It is formatted when
read (:attr:`CardChannel.trace`), not on every command: a transaction sends ~20 commands and rarely reads it.

Card answers are parsed here once, down to their leaves (:func:`parse_card_tlv`), and searched without parsing
again (:func:`find_card_tag`); where only the first value of each tag counts (an FCI, a PSE record's
entries), :func:`first_values` and :func:`template_entries` read them without an object per data element. The parser has a fast path for well-formed BER-TLV (EMV Book 3 Annex B); any
irregularity (a tag or length running past the end, an indefinite or over-long length) re-parses the answer
with the codec's checked :func:`posguard.iso8583.tlv.parse_tlv`, which raises the error naming the path and
offset, so a corrupt answer is refused exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields

from posguard.drivers.errors import ReaderError
from posguard.drivers.reader import Reader, Response
from posguard.emv.errors import CardDataError
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import TLV, parse_tlv

log = logging.getLogger("posguard.emv")
_DEBUG = logging.DEBUG

#: First hex digit of a tag whose first byte has bit 6 (0x20) set: a constructed data object (Book 3 Annex B1).
CONSTRUCTED_FIRST_DIGITS = frozenset("2367ABEF")


class CardChannel:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.commands = 0
        # (stage, SW, response length) or (stage, error class name, -1): formatted by ``trace``
        self._steps: list[tuple[str, int | str, int]] = []

    @property
    def trace(self) -> list[str]:
        """One line per command: ``"SELECT PSE: SW 9000 (34 bytes)"`` or ``"GPO ...: CardRemoved"``."""
        return [f"{stage}: {sw}" if n < 0 else f"{stage}: SW {sw:04X} ({n} bytes)" for stage, sw, n in self._steps]

    def send(self, apdu: bytes, stage: str) -> Response:
        """Transmit ``apdu``; reader errors get a note naming ``stage`` and propagate with their type."""
        self.commands += 1
        try:
            r = self.reader.transmit(apdu)
        except ReaderError as e:
            e.add_note(f"during EMV step: {stage}")
            self._steps.append((stage, type(e).__name__, -1))
            raise
        self._steps.append((stage, r.sw, len(r.data)))
        if log.isEnabledFor(_DEBUG):
            log.debug("%s: SW %04X, %d bytes", stage, r.sw, len(r.data))
        return r


@dataclass(frozen=True, slots=True, repr=False)
class CardTLV(TLV):
    """A card's data object with its nested objects parsed once, when the answer was checked: the session
    looks into the same templates several times (``children``, ``find_tag``) without parsing them again."""

    kids: tuple[TLV, ...] = field(default=(), compare=False)

    @property
    def children(self) -> list[TLV]:
        return list(self.kids)


def parse_card_tlv(data: bytes, *, path: str, stage: str) -> list[TLV]:
    """parse_tlv that reports corrupt card data as CardDataError (path and offset, never values); every
    constructed object is parsed down to its leaves here, once (:class:`CardTLV`)."""
    items = _parse_fast(bytes(data))
    if items is not None:
        return items
    try:  # not well-formed: the checked parser says where (and raises)
        return [_tree(item) for item in parse_tlv(data, path=path)]
    except TLVError as e:
        raise CardDataError(f"corrupt TLV from the card: {e.reason}", stage=stage, path=e.path,
                            offset=e.offset) from None


def find_card_tag(items: Iterable[TLV], tag: str) -> TLV | None:
    """The first object with ``tag`` (upper-case hex), depth-first, as :func:`posguard.iso8583.tlv.find_tag`;
    the children of a :class:`CardTLV` are the ones parsed with it."""
    for item in items:
        t = item.tag
        if t == tag:
            return item
        if type(item) is CardTLV:
            found = find_card_tag(item.kids, tag)
        elif t[0] in CONSTRUCTED_FIRST_DIGITS:
            found = find_card_tag(item.children, tag)
        else:
            continue
        if found is not None:
            return found
    return None


def _tree(item: TLV) -> TLV:
    if not item.constructed:
        return item
    return CardTLV(item.tag, item.value, item.offset, tuple(_tree(child) for child in item.children))


def _slot_setters() -> tuple[Callable[[TLV, object], None], ...]:
    """The slot setters of TLV's and CardTLV's fields, when they are exactly (tag, value, offset) + (kids)
    with no ``__post_init__``: the parser then fills new objects directly, at half the cost of the frozen
    dataclass ``__init__`` (which goes through ``object.__setattr__`` per field); empty otherwise (a changed
    TLV is then built by its constructor)."""
    names = tuple(f.name for f in fields(CardTLV))
    if names != ("tag", "value", "offset", "kids") or hasattr(CardTLV, "__post_init__"):
        return ()
    return tuple(cls.__dict__[name].__set__ for cls, name in
                 ((TLV, "tag"), (TLV, "value"), (TLV, "offset"), (CardTLV, "kids")))


_SETTERS = _slot_setters()
_BY_SLOTS = bool(_SETTERS)
_set_tag, _set_value, _set_offset, _set_kids = _SETTERS or (None, None, None, None)
_new = object.__new__


#: One-byte tags by value (``0x82`` -> ``"82"``); multi-byte tag bytes -> upper-case hex name, for the tags
#: cards answer with (bounded: see ``_TAG_NAMES_MAX``).
_ONE_BYTE_TAGS = tuple(f"{b:02X}" for b in range(256))
_TAG_NAMES: dict[bytes, str] = {}
_TAG_NAMES_MAX = 512


def _header(data: bytes, pos: int, end: int) -> tuple[str, int, int] | None:
    """(tag name, offset of the value, value length) of the object starting at ``pos``, or None where
    ``parse_tlv`` would refuse it: a tag of at most 4 bytes, a definite length of at most 4 length bytes, the
    value inside ``end``. The one place both fast readers below take an object's tag and length from."""
    first = data[pos]
    start = pos
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                return None
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start > 4:
                return None
        raw_tag = data[start:pos]
        tag = _TAG_NAMES.get(raw_tag)
        if tag is None:
            tag = raw_tag.hex().upper()
            if len(_TAG_NAMES) < _TAG_NAMES_MAX:
                _TAG_NAMES[raw_tag] = tag
    else:
        tag = _ONE_BYTE_TAGS[first]
    if pos >= end:
        return None
    n = data[pos]
    pos += 1
    if n >= 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            return None
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > end:
        return None
    return tag, pos, n


def _parse_fast(data: bytes) -> list[TLV] | None:
    """The objects of ``data`` as :func:`parse_card_tlv` returns them, or None where ``parse_tlv`` (top level
    or nested) would refuse the data. Same rules: 00/FF padding skipped between objects, tags of at most
    4 bytes, definite lengths of at most 4 length bytes; offsets relative to the buffer parsed."""
    items: list[TLV] = []
    append = items.append
    by_slots = _BY_SLOTS
    new, set_tag, set_value, set_offset = _new, _set_tag, _set_value, _set_offset
    pos = 0
    end = len(data)
    while pos < end:
        first = data[pos]
        if first == 0x00 or first == 0xFF:
            pos += 1
            continue
        start = pos
        head = _header(data, pos, end)
        if head is None:
            return None
        tag, pos, n = head
        value = data[pos:pos + n]
        pos += n
        item: TLV
        if first & 0x20:
            kids = _parse_fast(value)
            if kids is None:
                return None
            if by_slots:  # CardTLV(tag, value, start, tuple(kids)), filled slot by slot
                item = new(CardTLV)
                _set_kids(item, tuple(kids))  # type: ignore[misc]
            else:
                item = CardTLV(tag, value, start, tuple(kids))
        elif by_slots:  # TLV(tag, value, start)
            item = new(TLV)
        else:
            item = TLV(tag, value, start)
        if by_slots:
            set_tag(item, tag)  # type: ignore[misc]
            set_value(item, value)  # type: ignore[misc]
            set_offset(item, start)  # type: ignore[misc]
        append(item)
    return items


def template_primitives(data: bytes, template: int) -> dict[str, bytes] | None:
    """Tag -> value of the objects inside ``data`` when ``data`` is exactly one ``template`` object (one tag
    byte, e.g. 0x70 or 0x77) holding only primitive objects, each tag once, all well-formed; else None.

    The session's hot path for a record, a GPO or a GENERATE AC answer (no object per data element): the
    callers fall back to :func:`parse_card_tlv` on None, which refuses a corrupt answer with its path and
    offset or returns what the checked rules make of an irregular but valid one (nested templates, padding,
    a tag given twice), so the outcome is the same either way."""
    end = len(data)
    if end < 2 or data[0] != template:
        return None
    head = _header(data, 0, end)
    if head is None or head[1] + head[2] != end:
        return None
    pos = head[1]
    out: dict[str, bytes] = {}
    while pos < end:
        first = data[pos]
        if first & 0x20 or first == 0x00 or first == 0xFF:
            return None  # a nested template or padding: the checked parser decides
        head = _header(data, pos, end)
        if head is None:
            return None
        tag, pos, n = head
        if tag in out:
            return None
        out[tag] = data[pos:pos + n]
        pos += n
    return out


def first_values(data: bytes, *, path: str, stage: str) -> dict[str, bytes]:
    """Tag -> value of the first object with each tag in ``data``, depth-first through every template: for any
    tag, the value :func:`find_card_tag` finds in ``parse_card_tlv(data)``, without an object per data element.
    Corrupt data is refused by :func:`parse_card_tlv` (``CardDataError`` with the path and offset), as there."""
    out: dict[str, bytes] = {}
    if _first_values(data, 0, len(data), out):
        return out
    out.clear()
    _first_values_of(parse_card_tlv(data, path=path, stage=stage), out)
    return out


def template_entries(data: bytes, template: str, entry: str, *, path: str, stage: str
                     ) -> list[dict[str, bytes]] | None:
    """The :func:`first_values` of each ``entry`` object directly inside ``data``'s one ``template`` object, in
    order (a PSE record: template 70, entries 61, EMV Book 1 section 12.2.3); None when ``data`` is not exactly
    one ``template`` object. Corrupt data raises ``CardDataError`` as :func:`parse_card_tlv` does."""
    tops = _level(data, 0, len(data))
    if tops is not None and len(tops) == 1 and tops[0][0] == template:
        entries = _entries(data, tops[0][1], tops[0][1] + tops[0][2], entry)
        if entries is not None:
            return entries
    # irregular, or not one template: the checked parser refuses corrupt data (path, offset) or says what it is
    items = parse_card_tlv(data, path=path, stage=stage)
    if len(items) != 1 or items[0].tag != template:
        return None
    found: list[dict[str, bytes]] = []
    for item in items[0].children:
        if item.tag == entry:
            found.append({})
            _first_values_of(item.children, found[-1])
    return found


def _entries(data: bytes, pos: int, end: int, entry: str) -> list[dict[str, bytes]] | None:
    """The first values of each ``entry`` object of ``data[pos:end]``; None where any object there (an entry or
    not) is not well-formed."""
    children = _level(data, pos, end)
    if children is None:
        return None
    entries: list[dict[str, bytes]] = []
    checked: dict[str, bytes] = {}  # the objects that are not entries are only checked
    for tag, start, n in children:
        values: dict[str, bytes] = {} if tag == entry else checked
        if tag[0] in CONSTRUCTED_FIRST_DIGITS and not _first_values(data, start, start + n, values):
            return None
        if tag == entry:
            entries.append(values)
    return entries


def _first_values(data: bytes, pos: int, end: int, out: dict[str, bytes]) -> bool:
    """Fill ``out`` with the first value of each tag of ``data[pos:end]`` in pre-order (as :func:`find_card_tag`
    searches); False where :func:`_parse_fast` would refuse the data (``out`` is then partly filled)."""
    objects = _level(data, pos, end)
    if objects is None:
        return False
    for tag, start, n in objects:
        if tag not in out:
            out[tag] = data[start:start + n]
        if tag[0] in CONSTRUCTED_FIRST_DIGITS and not _first_values(data, start, start + n, out):
            return False
    return True


def _first_values_of(items: Iterable[TLV], out: dict[str, bytes]) -> None:
    for item in items:
        out.setdefault(item.tag, item.value)
        if type(item) is CardTLV:
            _first_values_of(item.kids, out)
        elif item.constructed:
            _first_values_of(item.children, out)


def _level(data: bytes, pos: int, end: int) -> list[tuple[str, int, int]] | None:
    """(tag, value offset, value length) of each object of ``data[pos:end]`` (00/FF padding skipped), without
    looking inside them; None where a header is not well-formed."""
    objects = []
    while pos < end:
        first = data[pos]
        if first == 0x00 or first == 0xFF:
            pos += 1
            continue
        head = _header(data, pos, end)
        if head is None:
            return None
        objects.append(head)
        pos = head[1] + head[2]
    return objects
