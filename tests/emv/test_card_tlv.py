"""The card-answer parser's fast path against the codec's checked parser (EMV Book 3 Annex B BER-TLV).

``parse_card_tlv`` parses a well-formed answer in one pass and falls back to ``posguard.iso8583.tlv.parse_tlv``
for anything irregular: for every input, well-formed or corrupt, it must give what the checked parser gives
(the same objects, classes and offsets; or the same CardDataError with the same path and offset).
"""

from __future__ import annotations

import random

import pytest

from posguard.emv import channel
from posguard.emv.channel import CardTLV, _tree, find_card_tag, parse_card_tlv
from posguard.emv.errors import CardDataError
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import TLV, build_tlv, find_tag, parse_tlv

PRIMITIVE_TAGS = ("5A", "57", "9F26", "9F36", "82", "94", "5F24", "9F10", "DF8101", "9F7F")
TEMPLATES = ("70", "77", "61", "A5", "BF0C", "6F")


def _reference(data: bytes) -> list[TLV] | tuple[str, str | None, int | None]:
    """What the checked parser makes of ``data``: the tree, or (reason, path, offset) of its refusal."""
    try:
        return [_tree(item) for item in parse_tlv(data, path="R")]
    except TLVError as e:
        return (e.reason, e.path, e.offset)


def _ours(data: bytes) -> list[TLV] | tuple[str, str | None, int | None]:
    try:
        return parse_card_tlv(data, path="R", stage="test")
    except CardDataError as e:
        return (str(e).split(" (at ")[0].removeprefix("corrupt TLV from the card: "), e.path, e.offset)


def _shape(items: object) -> object:
    if not isinstance(items, list):
        return items
    return [(type(i).__name__, i.tag, i.value, i.offset, _shape(list(i.kids)) if isinstance(i, CardTLV) else None)
            for i in items]


def _mutated(rng: random.Random, data: bytes, times: int) -> bytes:
    """``data`` mutated ``times`` times: truncated, a byte flipped or a long-form length byte inserted."""
    out = bytearray(data)
    for _ in range(times):
        kind = rng.randrange(3)
        if kind == 0 and out:
            del out[rng.randrange(len(out)):]
        elif kind == 1 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        else:
            out.insert(rng.randint(0, len(out)), rng.choice((0x80, 0x85, 0x81, 0x9F, 0xBF)))
    return bytes(out)


def _random_tree(rng: random.Random, depth: int = 0) -> bytes:
    parts: list[tuple[str, bytes]] = []
    for _ in range(rng.randint(1, 5)):
        if depth < 2 and rng.random() < 0.3:
            parts.append((rng.choice(TEMPLATES), _random_tree(rng, depth + 1)))
        else:
            parts.append((rng.choice(PRIMITIVE_TAGS), rng.randbytes(rng.choice((0, 1, 2, 8, 130, 300)))))
    # objects, some with padding before them (EMV allows 00/FF between objects)
    return b"".join((rng.choice((b"\x00", b"\xff\xff")) if rng.random() < 0.1 else b"") + build_tlv([part])
                    for part in parts)


@pytest.mark.parametrize("by_slots", [True, False])
def test_well_formed_answers_parse_as_the_checked_parser_does(by_slots: bool, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """Objects filled slot by slot (the fast path) or by their constructors are the checked parser's objects."""
    monkeypatch.setattr(channel, "_BY_SLOTS", by_slots)
    rng = random.Random(2026)
    for _ in range(400):
        data = _random_tree(rng)
        ref, ours = _reference(data), _ours(data)
        assert isinstance(ref, list) and isinstance(ours, list)
        assert _shape(ours) == _shape(ref)
        assert ours == ref and [hash(i) for i in ours] == [hash(i) for i in ref]
        assert [repr(i) for i in ours] == [repr(i) for i in ref]


def test_corrupt_answers_are_refused_with_the_checked_parsers_path_and_offset() -> None:
    rng = random.Random(11)
    refused = 0
    for _ in range(1500):
        data = _mutated(rng, _random_tree(rng), rng.randint(1, 3))
        ref, ours = _reference(data), _ours(data)
        refused += not isinstance(ref, list)
        assert _shape(ours) == _shape(ref), data.hex()
    assert refused > 300  # the mutations did reach the error paths


@pytest.mark.parametrize(("hex_data", "path", "offset"), [
    ("9F", "R", 0),  # a multi-byte tag with no second byte
    ("9F26", "R.9F26", 2),  # a tag and no length
    ("9F260801", "R.9F26", 0),  # the value runs past the end
    ("7080", "R.70", 1),  # an indefinite length (80), refused in EMV
    ("70039F3605", "70.9F36", 0),  # a nested object that runs past its template
])
def test_refusals_name_the_path_and_offset(hex_data: str, path: str, offset: int) -> None:
    with pytest.raises(CardDataError) as e:
        parse_card_tlv(bytes.fromhex(hex_data), path="R", stage="test")
    assert (e.value.path, e.value.offset) == (path, offset)


def test_find_card_tag_finds_what_find_tag_finds() -> None:
    rng = random.Random(5)
    for _ in range(200):
        data = _random_tree(rng)
        items = parse_card_tlv(data, path="R", stage="test")
        plain = parse_tlv(data, path="R")
        for tag in (*PRIMITIVE_TAGS, *TEMPLATES, "9F99"):
            a, b = find_card_tag(items, tag), find_tag(plain, tag)
            assert (a is None and b is None) or (a is not None and b is not None and (a.tag, a.value, a.offset)
                                                  == (b.tag, b.value, b.offset))


def _checked_primitives(data: bytes, template: str) -> dict[str, bytes] | None:
    """What the session makes of a record / GPO / GENERATE AC answer by the checked parser: the template's
    children by tag, or None where the answer is not one template of distinct primitive objects."""
    ref = _reference(data)
    if not isinstance(ref, list) or len(ref) != 1 or ref[0].tag != template:
        return None
    kids = list(ref[0].kids) if isinstance(ref[0], CardTLV) else []
    tags = [k.tag for k in kids]
    if any(isinstance(k, CardTLV) or k.tag[0] in channel.CONSTRUCTED_FIRST_DIGITS for k in kids) \
            or len(set(tags)) != len(tags):
        return None
    return {k.tag: k.value for k in kids}


def _one_template(rng: random.Random, template: str) -> bytes:
    """One template of primitives, now and then with a nested template, padding, a repeated tag or a
    corrupted byte: the shapes the flat path must either read as the checked parser does or leave to it."""
    parts = [(rng.choice(PRIMITIVE_TAGS), rng.randbytes(rng.choice((0, 1, 2, 8, 130))))
             for _ in range(rng.randint(0, 6))]
    if rng.random() < 0.15:
        parts.append((rng.choice(TEMPLATES), build_tlv([("9F36", b"\x00\x01")])))
    body = b"".join((b"\x00" if rng.random() < 0.05 else b"") + build_tlv([p]) for p in parts)
    data = bytearray(build_tlv([(template, body)]))
    if rng.random() < 0.2 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


@pytest.mark.parametrize("template", ["70", "77"])
def test_template_primitives_reads_what_the_checked_parser_reads_or_leaves_it(template: str) -> None:
    """The session's flat path (records, GPO, GENERATE AC) never disagrees with the checked parser: when it
    answers, it answers the template's children by tag; the shapes it does not take (nested templates, padding,
    a repeated tag, anything corrupt) it leaves to parse_card_tlv; and it does take the plain shape."""
    rng = random.Random(int(template, 16))
    answered = 0
    for _ in range(1500):
        data = _one_template(rng, template)
        flat = channel.template_primitives(data, int(template, 16))
        if flat is not None:
            answered += 1
            checked = _checked_primitives(data, template)
            assert checked is not None and list(flat.items()) == list(checked.items()), data.hex()
    assert answered > 600
    plain = build_tlv([(template, build_tlv([("9F27", b"\x80"), ("9F36", b"\x00\x07"), ("9F26", bytes(8))]))])
    assert channel.template_primitives(plain, int(template, 16)) == {"9F27": b"\x80", "9F36": b"\x00\x07",
                                                                     "9F26": bytes(8)}


def test_first_values_are_what_find_card_tag_finds_and_corrupt_data_is_refused_alike() -> None:
    """Selection reads an FCI as tag -> first value (channel.first_values): for every tag, the value
    find_card_tag finds in the checked parse; corrupt data refused with the checked parser's path and offset."""
    rng = random.Random(88)
    read = refused = 0
    for _ in range(1500):
        data = _mutated(rng, _random_tree(rng), int(rng.random() < 0.4))
        ref = _ours(data)
        try:
            values = channel.first_values(data, path="R", stage="test")
        except CardDataError as e:
            refused += 1
            assert not isinstance(ref, list)
            assert (e.path, e.offset) == ref[1:], data.hex()
            continue
        read += 1
        assert isinstance(ref, list), data.hex()
        for tag in (*PRIMITIVE_TAGS, *TEMPLATES, "9F99"):
            found = find_card_tag(ref, tag)
            assert values.get(tag) == (found.value if found is not None else None), (tag, data.hex())
    assert read > 600 and refused > 200


def _checked_entries(data: bytes) -> list[dict[str, bytes]] | None | tuple[str | None, int | None]:
    """A PSE record by the checked parser: each 61 entry of the one 70 template, tag -> first value."""
    ref = _ours(data)
    if not isinstance(ref, list):
        return ref[1:]
    if len(ref) != 1 or ref[0].tag != "70":
        return None
    kids = list(ref[0].kids) if isinstance(ref[0], CardTLV) else []
    out = []
    for entry in kids:
        if entry.tag == "61":
            grand = list(entry.kids) if isinstance(entry, CardTLV) else []
            tags = {*PRIMITIVE_TAGS, *TEMPLATES, "4F", "50", "87", "9F12"}
            out.append({t: f.value for t in tags if (f := find_card_tag(grand, t)) is not None})
    return out


def test_template_entries_read_a_directory_record_as_the_checked_parser_does() -> None:
    """A PSE record (70 holding 61 entries, now and then other objects, padding or corruption): the entries'
    first values, None for anything but one 70, the checked parser's refusal for corrupt data."""
    rng = random.Random(61)
    shapes = {"entries": 0, "not one 70": 0, "refused": 0}
    for _ in range(1500):
        entries = []
        for _ in range(rng.randint(0, 3)):
            body = build_tlv([("4F", rng.randbytes(rng.choice((5, 7, 16)))), ("50", b"DEBIT"),
                              ("87", bytes((rng.randrange(16),)))][: rng.randint(1, 3)])
            if rng.random() < 0.2:
                body += build_tlv([("73", _random_tree(rng, 1))])
            entries.append(build_tlv([("61", body)]))
        if rng.random() < 0.15:
            entries.append(_random_tree(rng, 1))
        record = build_tlv([("70", b"".join(entries))])
        if rng.random() < 0.1:
            record += build_tlv([("9F36", b"\x00\x01")]) if rng.random() < 0.5 else b"\x00"
        data = _mutated(rng, record, int(rng.random() < 0.4))
        expected = _checked_entries(data)
        try:
            got = channel.template_entries(data, "70", "61", path="R", stage="test")
        except CardDataError as e:
            shapes["refused"] += 1
            assert expected == (e.path, e.offset), data.hex()
            continue
        if got is None:
            shapes["not one 70"] += 1
            assert expected is None, data.hex()
            continue
        shapes["entries"] += 1
        assert isinstance(expected, list) and len(got) == len(expected), data.hex()
        for ours, theirs in zip(got, expected, strict=True):
            assert {t: v for t, v in ours.items() if t in theirs} == theirs, data.hex()
            assert not set(theirs) ^ {t for t in ours if t in {*PRIMITIVE_TAGS, *TEMPLATES, "4F", "50", "87",
                                                                 "9F12"}}
    assert min(shapes.values()) > 40, shapes
