"""Field and dialect specifications, declared as data.

A field format is composed from three small parts, as in jPOS (padder x interpreter x prefixer) and
moov-io/iso8583 (Enc, Pref, Pad):

* ``data_enc`` — how the value is written: ``ascii``, ``ebcdic``, ``bcd`` (packed nibbles), ``binary``,
  or ``xbcd`` (a C/D sign character then BCD digits, jPOS ``IFB_AMOUNT``);
* the length prefix — ``len_type`` digits (0 fixed, 1 L, 2 LL, 3 LLL, 4 LLLL) written in ``len_enc``
  (``ascii``, ``ebcdic``, ``bcd``; or ``binary``, where ``len_type`` counts prefix *bytes*), counting
  ``len_count`` = ``units`` (characters, digits or bytes as the data encoding counts them) or ``bytes``;
* padding — ``pad`` side (``left``/``right``) and ``pad_char`` for odd BCD digit counts, and
  ``fixed_pad`` for fixed fields that the dialect pads on encode (``"0"`` left for jPOS numerics,
  ``" "`` right for jPOS ``IF_CHAR``); without it a fixed field must be given at its exact length.

``kind`` is the ISO content class (``n``, ``an``, ``ans``, ``z`` track data, ``xn`` signed amount,
``b`` binary) and is checked on encode and by ``validate()``. ``sensitive`` names the field's class of card
data; it is the one declaration every masked view derives from (:mod:`posguard.sensitive`,
:mod:`posguard.iso8583.redaction`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from posguard.iso8583.errors import SpecError
from posguard.sensitive import SENSITIVITY_CLASSES, Sensitivity

DataEnc = Literal["ascii", "ebcdic", "bcd", "binary", "xbcd"]
LenEnc = Literal["ascii", "ebcdic", "bcd", "binary"]

DATA_ENCODINGS = ("ascii", "ebcdic", "bcd", "binary", "xbcd")
LEN_ENCODINGS = ("ascii", "ebcdic", "bcd", "binary")
KINDS = ("n", "a", "an", "ans", "ns", "z", "xn", "b")


@dataclass(frozen=True)
class Subfield:
    """A positional subfield of a composite field (``90.2``, ``60.1``)."""

    key: str
    length: int
    desc: str = ""
    kind: str = "n"
    #: a trailing subfield may be absent when the field ends before it
    optional: bool = False
    #: the last subfield may take whatever is left (``length`` is then its maximum)
    variable: bool = False


@dataclass(frozen=True)
class Composite:
    """How a field's value is structured: ``tlv`` (BER-TLV) or ``positional`` subfields."""

    kind: Literal["tlv", "positional"]
    subfields: tuple[Subfield, ...] = ()

    def subfield(self, key: str) -> Subfield | None:
        for sf in self.subfields:
            if sf.key == key:
                return sf
        return None


@dataclass(frozen=True)
class FieldSpec:
    key: str
    desc: str
    max_len: int
    kind: str = "ans"
    data_enc: DataEnc = "ascii"
    len_type: int = 0
    len_enc: LenEnc = "ascii"
    len_count: Literal["units", "bytes"] = "units"
    pad: Literal["left", "right"] = "left"
    pad_char: str = "0"
    fixed_pad: str | None = None
    sensitive: Sensitivity | None = None
    composite: Composite | None = None
    min_len: int = 0

    def __post_init__(self) -> None:
        where = f"field {self.key}"
        if self.data_enc not in DATA_ENCODINGS:
            raise SpecError(f"unknown data encoding {self.data_enc!r}", path=self.key,
                            hint=f"use one of {', '.join(DATA_ENCODINGS)}")
        if self.len_enc not in LEN_ENCODINGS:
            raise SpecError(f"unknown length encoding {self.len_enc!r}", path=self.key,
                            hint=f"use one of {', '.join(LEN_ENCODINGS)}")
        if self.sensitive is not None and self.sensitive not in SENSITIVITY_CLASSES:
            raise SpecError(f"unknown sensitivity {self.sensitive!r}", path=self.key,
                            hint=f"use one of {', '.join(SENSITIVITY_CLASSES)}")
        if self.kind not in KINDS:
            raise SpecError(f"unknown content class {self.kind!r}", path=self.key)
        if not 0 <= self.len_type <= 4:
            raise SpecError(f"len_type {self.len_type} out of range 0..4 in {where}", path=self.key)
        if self.max_len < 0:
            raise SpecError(f"negative max_len in {where}", path=self.key)
        if self.len_type and self.len_enc != "binary" and self.max_len > 10**self.len_type - 1:
            raise SpecError(
                f"max_len {self.max_len} does not fit a {self.len_type}-digit length prefix", path=self.key
            )
        if self.data_enc == "bcd" and self.pad_char.upper() not in "0123456789ABCDEF":
            raise SpecError(f"pad_char {self.pad_char!r} is not a nibble", path=self.key)

    # -- derived facts -----------------------------------------------------------------------------
    @property
    def fixed(self) -> bool:
        return self.len_type == 0

    @property
    def is_binary(self) -> bool:
        return self.data_enc == "binary"

    @property
    def value_type(self) -> type:
        """``bytes`` for binary fields, ``str`` for everything else."""
        return bytes if self.data_enc == "binary" else str

    @property
    def prefix_bytes(self) -> int:
        if self.len_type == 0:
            return 0
        if self.len_enc == "binary":
            return self.len_type
        if self.len_enc == "bcd":
            return (self.len_type + 1) // 2
        return self.len_type

    def fixed_bytes(self) -> int:
        """Byte size of a fixed field."""
        return self.byte_len(self.max_len)

    def byte_len(self, units: int) -> int:
        if self.data_enc == "bcd":
            return (units + 1) // 2
        if self.data_enc == "xbcd":
            return 1 + units // 2  # sign + (units-1) digits, rounded up
        return units

    def format_name(self) -> str:
        """jPOS-like name of the format: ``LLVAR n..19 (ascii, ASCII prefix)``."""
        var = {0: "", 1: "LVAR ", 2: "LLVAR ", 3: "LLLVAR ", 4: "LLLLVAR "}[self.len_type]
        size = f"{self.kind}{'..' if self.len_type else ''}{self.max_len}"
        pref = "" if not self.len_type else f", {self.len_enc} prefix"
        if self.len_type and self.len_count == "bytes":
            pref += " counting bytes"
        return f"{var}{size} ({self.data_enc}{pref})"

    def to_data(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "desc": self.desc, "max_len": self.max_len, "kind": self.kind, "data_enc": self.data_enc,
            "len_type": self.len_type, "len_enc": self.len_enc,
        }
        if self.len_count != "units":
            d["len_count"] = self.len_count
        if self.data_enc in ("bcd", "xbcd"):
            d["pad"] = self.pad
            d["pad_char"] = self.pad_char
        if self.fixed_pad is not None:
            d["fixed_pad"] = self.fixed_pad
        if self.sensitive:
            d["sensitive"] = self.sensitive
        if self.composite is not None:
            d["composite"] = {
                "kind": self.composite.kind,
                "subfields": [
                    {"key": s.key, "length": s.length, "desc": s.desc, "kind": s.kind,
                     "optional": s.optional, "variable": s.variable}
                    for s in self.composite.subfields
                ],
            }
        return d


def field_from_data(key: str, data: Mapping[str, Any]) -> FieldSpec:
    """Build a FieldSpec from a plain mapping (a JSON/TOML dialect file)."""
    allowed = {
        "desc", "max_len", "kind", "data_enc", "len_type", "len_enc", "len_count", "pad", "pad_char",
        "fixed_pad", "sensitive", "composite", "min_len",
    }
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)} in field {key}", path=key,
                        hint=f"allowed keys: {', '.join(sorted(allowed))}")
    kw = dict(data)
    comp = kw.pop("composite", None)
    composite = None
    if comp is not None:
        subs = tuple(Subfield(**s) for s in comp.get("subfields", ()))
        composite = Composite(kind=comp["kind"], subfields=subs)
    if "max_len" not in kw:
        raise SpecError(f"field {key} has no max_len", path=key)
    kw.setdefault("desc", f"Field {key}")
    return FieldSpec(key=key, composite=composite, **kw)


@dataclass(frozen=True)
class MessageRule:
    """Which fields a message of one type must carry, declared as data.

    ``match`` selects the rule: MTI (exact) and optional field prefixes (``{"3": "20"}``; ``"60.1": "23"``).
    ``one_of`` lists groups of which at least one field must be present (PAN or track 2).
    """

    name: str
    mti: str
    required: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    match: tuple[tuple[str, str], ...] = ()
    forbidden: tuple[str, ...] = ()
    desc: str = ""


@dataclass(frozen=True)
class Dialect:
    """An ISO 8583 dialect: header, MTI and bitmap formats, the field table and per-MTI rules."""

    name: str
    desc: str
    fields: Mapping[str, FieldSpec]
    mti_enc: Literal["ascii", "bcd", "ebcdic"] = "ascii"
    bitmap_enc: Literal["binary", "ascii", "ebcdic"] = "binary"
    header_len: int = 0
    header_enc: Literal["ascii", "binary"] = "ascii"
    tertiary_bitmap: bool = False
    #: fields a response must echo from its request
    echo_fields: tuple[str, ...] = ("3", "4", "11", "41", "42")
    rules: tuple[MessageRule, ...] = ()
    #: how a reversal points at its original: ``"90"`` (ISO) or ``"stan"`` (CUP reuses the STAN)
    reversal_link: Literal["90", "stan"] = "90"
    #: response codes that end a reversal as done
    reversal_done_codes: tuple[str, ...] = ("00", "12", "25")
    framing: str = "binary2"
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k in self.fields:
            if not k.isdigit() or not 2 <= int(k) <= 192:
                raise SpecError(f"field key {k!r} is not a data field number 2..192", path=k)
        if self.header_len < 0:
            raise SpecError("negative header length")

    def field(self, key: str) -> FieldSpec:
        try:
            return self.fields[key]
        except KeyError:
            raise SpecError(f"dialect {self.name} has no field {key}", path=key) from None

    @property
    def max_field(self) -> int:
        return 192 if self.tertiary_bitmap else 128

    def with_fields(self, name: str, changes: Mapping[str, FieldSpec], **kw: Any) -> Dialect:
        fields = dict(self.fields)
        fields.update(changes)
        return replace(self, name=name, fields=fields, **kw)

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name, "desc": self.desc, "mti_enc": self.mti_enc, "bitmap_enc": self.bitmap_enc,
            "header_len": self.header_len, "header_enc": self.header_enc,
            "tertiary_bitmap": self.tertiary_bitmap, "echo_fields": list(self.echo_fields),
            "reversal_link": self.reversal_link, "reversal_done_codes": list(self.reversal_done_codes),
            "framing": self.framing, "source": self.source,
            "fields": {k: f.to_data() for k, f in sorted(self.fields.items(), key=lambda kv: int(kv[0]))},
            "rules": [
                {"name": r.name, "mti": r.mti, "required": list(r.required),
                 "one_of": [list(g) for g in r.one_of], "match": dict(r.match),
                 "forbidden": list(r.forbidden), "desc": r.desc}
                for r in self.rules
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, ensure_ascii=False)


def dialect_from_data(data: Mapping[str, Any], *, base: Dialect | None = None) -> Dialect:
    """Build a dialect from plain data; with ``base`` (or ``"extends": NAME``) only changes are needed."""
    data = dict(data)
    if "name" not in data:
        raise SpecError("a dialect needs a name")
    fields: dict[str, FieldSpec] = dict(base.fields) if base else {}
    for k, fd in dict(data.pop("fields", {})).items():
        fields[str(k)] = field_from_data(str(k), fd)
    rules = tuple(
        MessageRule(
            name=r["name"], mti=r["mti"], required=tuple(r.get("required", ())),
            one_of=tuple(tuple(g) for g in r.get("one_of", ())),
            match=tuple(dict(r.get("match", {})).items()), forbidden=tuple(r.get("forbidden", ())),
            desc=r.get("desc", ""),
        )
        for r in data.pop("rules", [])
    ) or (base.rules if base else ())
    data.pop("extends", None)
    kw: dict[str, Any] = {}
    if base is not None:
        kw = {
            "mti_enc": base.mti_enc, "bitmap_enc": base.bitmap_enc, "header_len": base.header_len,
            "header_enc": base.header_enc, "tertiary_bitmap": base.tertiary_bitmap,
            "echo_fields": base.echo_fields, "reversal_link": base.reversal_link,
            "reversal_done_codes": base.reversal_done_codes, "framing": base.framing,
        }
    for key in ("echo_fields", "reversal_done_codes"):
        if key in data:
            data[key] = tuple(data[key])
    kw.update(data)
    kw.setdefault("desc", kw["name"])
    try:
        return Dialect(fields=fields, rules=rules, **kw)
    except TypeError as e:
        raise SpecError(f"bad dialect definition: {e}") from None
