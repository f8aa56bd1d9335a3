"""``Message``: an ISO 8583 message with the payments vocabulary.

>>> m = Message("0200", {"3": "000000", "4": "000000001050", "11": "000123", "49": "156"}, dialect="iso87")
>>> m.amount, m.currency, m.stan, m.response_mti
(1050, '156', 123, '0210')
>>> Message.decode(m.encode(), "iso87")["4"]
'000000001050'
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from posguard.iso8583.codec import DialectCodec, DisplayPlan, codec_for
from posguard.iso8583.dialects import get_dialect
from posguard.iso8583.emv_tags import DISPLAY_SAFE, tag_name
from posguard.iso8583.errors import DecodeError, EncodeError, Iso8583Error, TLVError
from posguard.iso8583.fields import encode_field
from posguard.iso8583.spec import Composite, Dialect, FieldSpec, MessageRule
from posguard.iso8583.tlv import TLV, build_tlv, find_tag, parse_tlv
from posguard.sensitive import Pan, masker_for

__all__ = ["Message", "Violation", "decode", "encode", "MTI_CLASSES"]

FieldValue = str | bytes

MTI_CLASSES = {
    "1": "Authorisation", "2": "Financial", "3": "File action", "4": "Reversal",
    "5": "Reconciliation", "6": "Administrative", "7": "Fee collection", "8": "Network management",
}
MTI_FUNCTIONS = {
    "0": "request", "1": "response", "2": "advice", "3": "advice response",
    "4": "notification", "5": "notification acknowledgement",
}


@dataclass(frozen=True)
class Violation:
    """One rule a message breaks: the path, a short code, and a sentence for a person."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"field {self.path}: {self.message}" if self.path else self.message


def _key(k: str | int) -> str:
    return str(k)


#: value types the constructor's fast path takes as they are
_PLAIN_TYPES = frozenset((str, bytes))
_STR_ONLY = frozenset((str,))


def _hex_to_bytes(fields: dict[str, Any], keys: frozenset[str]) -> bool:
    """Turn the hex-text values of the binary fields ``keys`` into bytes, in place; False when one is not hex."""
    for k in keys.intersection(fields):
        v = fields[k]
        if v.__class__ is str:
            try:
                fields[k] = bytes.fromhex(v)
            except ValueError:
                return False
    return True


class Message:
    """An ISO 8583 message: MTI, optional header (``h``), and fields keyed ``"2"``..``"192"``."""

    #: ``_plan`` is the display plan of ``_fields`` while it is known that every text field holds a str;
    #: None when unknown (every change to the fields resets it)
    __slots__ = ("mti", "header", "_fields", "dialect", "_codec", "_plan")

    def __init__(
        self,
        mti: str,
        fields: Mapping[Any, FieldValue] | None = None,
        dialect: str | Dialect = "iso87ascii",
        header: str | bytes | None = None,
    ) -> None:
        self.dialect: Dialect = get_dialect(dialect)
        self._codec: DialectCodec = codec_for(self.dialect)
        self.mti = mti
        if header is None and self.dialect.header_len and self.dialect.extra.get("tpdu"):
            header = bytes.fromhex(str(self.dialect.extra["tpdu"]) + str(self.dialect.extra.get("header", "")))
        self.header: str | bytes | None = header
        self._fields: dict[str, FieldValue] = {}
        self._plan: DisplayPlan | None = None
        if fields:
            codec = self._codec
            # Fast path: a plain dict of known keys holding str/bytes. It stores exactly what the loop below
            # would; anything else (or a binary field that is not hex) goes through the loop, which explains.
            if (
                fields.__class__ is dict
                and fields.keys() <= codec.field_keys
                and set(map(type, fields.values())) <= _PLAIN_TYPES
            ):
                copied = dict(fields)
                if _hex_to_bytes(copied, codec.binary_keys):
                    self._fields = copied
                    return
            for k, v in fields.items():
                self[_key(k)] = v

    # ------------------------------------------------------------------ construction
    @classmethod
    def decode(cls, raw: bytes, dialect: str | Dialect = "iso87ascii") -> Message:
        d = get_dialect(dialect)
        codec = codec_for(d)
        header, mti, fields, plan = codec.decode_message(raw)
        m = cls.__new__(cls)
        m.dialect = d
        m._codec = codec
        m.mti = mti
        m.header = header if d.header_len else None
        m._fields = fields
        m._plan = plan
        return m

    def encode(self) -> bytes:
        return self._codec.encode_parts(self.header, self.mti, self._fields)

    def copy(self) -> Message:
        m = Message.__new__(Message)
        m.dialect, m._codec, m.mti, m.header = self.dialect, self._codec, self.mti, self.header
        m._fields = dict(self._fields)
        m._plan = self._plan
        return m

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], dialect: str | Dialect = "iso87ascii") -> Message:
        """From a pyiso8583-style dict: ``"t"`` MTI, ``"h"`` header, fields; binary fields as hex text."""
        d = get_dialect(dialect)
        if "t" not in doc:
            raise EncodeError("no MTI: the dict needs a \"t\" key", path="t")
        if doc.__class__ is dict and cls.__init__ is Message.__init__ and not d.tertiary_bitmap:
            m = cls._from_plain_dict(doc, d)
            if m is not None:
                return m
        fields: dict[str, FieldValue] = {}
        for k, v in doc.items():
            if k in ("t", "h", "p", "1") or (k == "65" and d.tertiary_bitmap):
                continue
            spec = d.fields.get(str(k))
            if spec is None:
                raise EncodeError(f"the dialect {d.name} has no field {k}", path=str(k))
            if spec.is_binary:
                if not isinstance(v, str):
                    raise EncodeError("binary field must be hex text in a dict", path=str(k))
                try:
                    fields[str(k)] = bytes.fromhex(v)
                except ValueError:
                    raise EncodeError("binary field is not valid hex", path=str(k),
                                      got=f"{len(v)} characters") from None
            else:
                if not isinstance(v, str):
                    raise EncodeError("field value must be a string", path=str(k), got=type(v).__name__)
                fields[str(k)] = v
        header: str | bytes | None = None
        if "h" in doc and doc["h"]:
            h = doc["h"]
            header = bytes.fromhex(h) if d.header_enc == "binary" else h
        return cls(str(doc["t"]), fields, d, header)

    @classmethod
    def _from_plain_dict(cls, doc: Mapping[str, Any], d: Dialect) -> Message | None:
        """``from_dict``'s happy path: the same message, or None when the careful loop must run (and explain)."""
        codec = codec_for(d)
        fields: dict[str, Any] = dict(doc)
        del fields["t"]
        h = fields.pop("h", None)
        fields.pop("p", None)
        fields.pop("1", None)
        if not (fields.keys() <= codec.field_keys and set(map(type, fields.values())) <= _STR_ONLY):
            return None
        if not _hex_to_bytes(fields, codec.binary_keys):
            return None
        header: str | bytes | None = None
        if h:
            header = bytes.fromhex(h) if d.header_enc == "binary" else h
        if header is None and d.header_len and d.extra.get("tpdu"):
            header = bytes.fromhex(str(d.extra["tpdu"]) + str(d.extra.get("header", "")))
        m = cls.__new__(cls)
        m.dialect = d
        m._codec = codec
        m.mti = str(doc["t"])
        m.header = header
        m._fields = fields
        m._plan = None
        return m

    def to_dict(self, *, reveal: bool = False) -> dict[str, str]:
        """pyiso8583-style dict (``"t"``, ``"2"``..), binary as upper-case hex; masked unless ``reveal``."""
        out: dict[str, str] = {}
        if self.dialect.header_len and self.header is not None:
            out["h"] = self.header.hex().upper() if isinstance(self.header, bytes) else self.header
        out["t"] = self.mti
        fields = self._fields
        plan = self._plan
        if plan is None:
            try:
                plan = self._codec.display_plan(tuple(fields))
            except KeyError:
                plan = None
            if plan is not None:
                if set(map(type, map(fields.__getitem__, plan.text))) <= _STR_ONLY:
                    self._plan = plan
                else:
                    plan = None
        if plan is not None:
            # bulk path: every text field holds a str, so only binary and card-data fields need converting
            text_now = cast("dict[str, str]", fields)  # binary values are replaced just below
            if plan.in_order:
                out.update(text_now)
            else:
                out.update(zip(plan.keys, map(text_now.__getitem__, plan.keys), strict=True))
            for k in plan.binary:
                v = fields[k]
                out[k] = v.hex().upper() if isinstance(v, bytes) else v
            if not reveal:
                for k, mask in plan.masks:
                    v = fields[k]
                    out[k] = mask(v if v.__class__ is str else v.hex().upper() if isinstance(v, bytes) else v)
            return out
        for k in self._sorted_keys():
            if reveal:
                v = fields[k]
                out[k] = v.hex().upper() if isinstance(v, bytes) else v
            else:
                out[k] = self._masked_value(k)
        return out

    def _sorted_keys(self) -> list[str]:
        """The field keys in field-number order."""
        if self._plan is not None:
            return list(self._plan.keys)
        try:
            return sorted(self._fields, key=self._codec.order.__getitem__)
        except KeyError:
            return sorted(self._fields, key=int)

    def to_json(self, *, reveal: bool = False) -> str:
        return json.dumps(self.to_dict(reveal=reveal), ensure_ascii=False)

    # ------------------------------------------------------------------ mapping protocol
    def __getitem__(self, key: str | int) -> FieldValue:
        try:
            return self._fields[key]  # type: ignore[index]
        except (KeyError, TypeError):
            pass
        k = _key(key)
        if "." in k:
            return self._get_path(k)
        return self._fields[k]

    def __setitem__(self, key: str | int, value: FieldValue) -> None:
        self._plan = None
        k = _key(key)
        if "." in k:
            self._set_path(k, value)
            return
        spec = self.dialect.fields.get(k)
        if spec is None:
            raise EncodeError(f"the dialect {self.dialect.name} has no field {k}", path=k)
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if spec.is_binary and isinstance(value, str):
            try:
                value = bytes.fromhex(value)
            except ValueError:
                raise EncodeError("binary field needs bytes or hex text", path=k) from None
        self._fields[k] = value

    def __delitem__(self, key: str | int) -> None:
        self._plan = None
        del self._fields[_key(key)]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | int):
            return False
        k = _key(key)
        if "." in k:
            try:
                self._get_path(k)
                return True
            except (KeyError, Iso8583Error):
                return False
        return k in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._sorted_keys())

    def __len__(self) -> int:
        return len(self._fields)

    def get(self, key: str | int, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        return self._sorted_keys()

    def fields(self) -> dict[str, FieldValue]:
        """A copy of the fields (clear values: handle with care)."""
        return dict(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.mti, self.dialect.name, self.header, self._fields) == (
            other.mti, other.dialect.name, other.header, other._fields)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        keys = ",".join(self.keys())
        pan = self.pan
        extra = f" pan={pan.masked}" if pan is not None else ""
        return f"<Message {self.mti} {self.dialect.name} fields=[{keys}]{extra}>"

    __str__ = __repr__

    # ------------------------------------------------------------------ composites
    def spec(self, key: str) -> FieldSpec:
        return self.dialect.field(key)

    def tlv(self, key: str = "55") -> list[TLV]:
        """The BER-TLV objects of a TLV field (raises :class:`TLVError` naming the path if malformed)."""
        raw = self._composite_bytes(key)
        return parse_tlv(raw, path=key)

    def _composite_bytes(self, key: str) -> bytes:
        v = self._fields[key]
        if isinstance(v, bytes):
            return v
        try:
            return bytes.fromhex(v)
        except ValueError:
            raise TLVError("TLV field is not hex text", path=key) from None

    def _composite(self, key: str) -> Composite:
        spec = self.dialect.fields.get(key)
        if spec is None or spec.composite is None:
            raise KeyError(f"field {key} has no subfields in dialect {self.dialect.name}")
        return spec.composite

    def subfields(self, key: str) -> dict[str, str]:
        """Positional subfields of a field, in order (absent optional ones left out)."""
        comp = self._composite(key)
        value = self._fields[key]
        if not isinstance(value, str):
            value = value.decode("ascii", "replace")
        out: dict[str, str] = {}
        pos = 0
        for sf in comp.subfields:
            if pos >= len(value):
                if sf.optional:
                    break
                raise DecodeError("subfield missing: the field ends before it", path=f"{key}.{sf.key}",
                                  offset=pos, expected=f"{sf.length} characters", got="end of field")
            if sf.variable:
                out[sf.key] = value[pos:]
                pos = len(value)
                continue
            piece = value[pos : pos + sf.length]
            if len(piece) < sf.length:
                raise DecodeError("subfield is cut short", path=f"{key}.{sf.key}", offset=pos,
                                  expected=f"{sf.length} characters", got=f"{len(piece)}")
            out[sf.key] = piece
            pos += sf.length
        if pos < len(value):
            raise DecodeError("field is longer than its subfields", path=key, offset=pos,
                              expected=f"{pos} characters", got=f"{len(value)}")
        return out

    def _partial_subfields(self, key: str, comp: Composite) -> dict[str, str]:
        """The leading subfields present so far (for building a field one subfield at a time)."""
        value = self._fields[key]
        text = value if isinstance(value, str) else value.decode("ascii", "replace")
        out: dict[str, str] = {}
        pos = 0
        for sf in comp.subfields:
            if sf.variable:
                if pos < len(text):
                    out[sf.key] = text[pos:]
                break
            if pos + sf.length > len(text):
                break
            out[sf.key] = text[pos : pos + sf.length]
            pos += sf.length
        return out

    def _get_path(self, path: str) -> FieldValue:
        key, _, sub = path.partition(".")
        comp = self._composite(key)
        if key not in self._fields:
            raise KeyError(path)
        if comp.kind == "tlv":
            items = parse_tlv(self._composite_bytes(key), path=key)
            node: TLV | None = None
            scope = items
            for part in sub.upper().split("."):
                node = find_tag(scope, part)
                if node is None:
                    raise KeyError(path)
                scope = node.children if node.constructed else []
            assert node is not None
            return node.value
        subs = self.subfields(key)
        if sub not in subs:
            raise KeyError(path)
        return subs[sub]

    def _set_path(self, path: str, value: FieldValue) -> None:
        key, _, sub = path.partition(".")
        comp = self._composite(key)
        spec = self.dialect.fields[key]
        if comp.kind == "tlv":
            if not isinstance(value, bytes):
                raise EncodeError("a TLV value needs bytes", path=path)
            items = parse_tlv(self._composite_bytes(key), path=key) if key in self._fields else []
            tag = sub.upper()
            replaced = False
            new: list[TLV] = []
            for it in items:
                if it.tag == tag and not replaced:
                    new.append(TLV(tag, value))
                    replaced = True
                else:
                    new.append(it)
            if not replaced:
                new.append(TLV(tag, value))
            raw = build_tlv(new)
            self[key] = raw if spec.is_binary else raw.hex().upper()
            return
        if not isinstance(value, str):
            raise EncodeError("a subfield needs a string", path=path)
        subs = self._partial_subfields(key, comp) if key in self._fields else {}
        sf = comp.subfield(sub)
        if sf is None:
            raise EncodeError(f"field {key} has no subfield {sub}", path=path)
        if not sf.variable and len(value) != sf.length:
            raise EncodeError("subfield has the wrong length", path=path,
                              expected=f"{sf.length} characters", got=f"{len(value)}")
        subs[sub] = value
        self._plan = None
        parts: list[str] = []
        for s in comp.subfields:
            if s.key in subs:
                parts.append(subs[s.key])
            elif any(t.key in subs for t in comp.subfields[comp.subfields.index(s) + 1 :]):
                raise EncodeError(f"set subfield {key}.{s.key} before later ones", path=f"{key}.{s.key}")
            else:
                break
        self._fields[key] = "".join(parts)

    # ------------------------------------------------------------------ vocabulary
    @property
    def mti_class(self) -> str:
        return self.mti[1:2]

    @property
    def mti_function(self) -> str:
        return self.mti[2:3]

    @property
    def is_response(self) -> bool:
        return self.mti_function in ("1", "3", "5")

    @property
    def is_request(self) -> bool:
        return not self.is_response

    @property
    def is_reversal(self) -> bool:
        return self.mti_class == "4"

    @property
    def is_advice(self) -> bool:
        return self.mti_function in ("2", "3")

    @property
    def is_repeat(self) -> bool:
        return self.mti[3:4] == "1" and not self.is_response

    @property
    def response_mti(self) -> str:
        """0200 -> 0210, 0401 -> 0410, 0220 -> 0230."""
        if self.is_response:
            raise ValueError(f"{self.mti} is already a response")
        return self.mti[:2] + str(int(self.mti[2]) + 1) + "0"

    @property
    def repeat_mti(self) -> str:
        """0400 -> 0401, 0420 -> 0421, 0220 -> 0221."""
        return self.mti[:3] + "1"

    @property
    def original_mti(self) -> str:
        """The request MTI this response answers (0210 -> 0200)."""
        return self.mti[:2] + str(int(self.mti[2]) - 1) + "0" if self.is_response else self.mti[:3] + "0"

    def _text(self, key: str) -> str | None:
        v = self._fields.get(key)
        if v is None:
            return None
        return v if isinstance(v, str) else v.hex().upper()

    @property
    def stan(self) -> int | None:
        v = self._text("11")
        return int(v) if v and v.isdigit() else None

    @property
    def rrn(self) -> str | None:
        return self._text("37")

    @property
    def auth_code(self) -> str | None:
        return self._text("38")

    @property
    def response_code(self) -> str | None:
        return self._text("39")

    @property
    def approved(self) -> bool:
        return self.response_code in ("00", "10", "11")

    @property
    def processing_code(self) -> str | None:
        return self._text("3")

    @property
    def amount(self) -> int | None:
        """Field 4 in minor units (the currency's exponent is the caller's concern)."""
        v = self._text("4")
        return int(v) if v and v.isdigit() else None

    @amount.setter
    def amount(self, minor_units: int) -> None:
        if minor_units < 0:
            raise EncodeError("amount cannot be negative", path="4")
        self["4"] = f"{minor_units:012d}"

    @property
    def currency(self) -> str | None:
        return self._text("49")

    @property
    def tid(self) -> str | None:
        return self._text("41")

    @property
    def mid(self) -> str | None:
        return self._text("42")

    @property
    def pan(self) -> Pan | None:
        v = self._text("2")
        if v is not None:
            return Pan(v)
        t2 = self._text("35")
        if t2:
            for sep in ("=", "D"):
                if sep in t2:
                    return Pan(t2.split(sep, 1)[0])
        return None

    @property
    def kind(self) -> str | None:
        """The name of the per-MTI rule this message matches (``sale``, ``void``, ``reversal``...)."""
        rule = self.rule()
        return rule.name if rule else None

    def rule(self) -> MessageRule | None:
        mti = self.original_mti if self.is_response else self.mti
        for r in self.dialect.rules:
            if r.mti != mti:
                continue
            if all(self._matches(path, prefix) for path, prefix in r.match):
                return r
        return None

    def _matches(self, path: str, prefix: str) -> bool:
        try:
            key, _, sub = path.partition(".")
            spec = self.dialect.fields.get(key)
            if sub and spec is not None and spec.composite is not None and spec.composite.kind == "positional":
                v: FieldValue = self._partial_subfields(key, spec.composite)[sub] if key in self._fields else ""
            else:
                v = self[path]
        except (KeyError, Iso8583Error):
            return False
        return isinstance(v, str) and v.startswith(prefix)

    # ------------------------------------------------------------------ validation
    def validate(self, request: Message | None = None, *, original: Message | None = None) -> list[Violation]:
        """Every rule the message breaks (not just the first).

        * each field against its spec (content class, length) and each composite (TLV, subfields);
        * the per-MTI rule of the dialect (required, one-of, forbidden fields);
        * with ``request``: this response answers it (MTI + 10; echoed fields equal);
        * with ``original``: this reversal or void points at it (field 90 or the STAN, per dialect).
        """
        out: list[Violation] = []
        if not (len(self.mti) == 4 and self.mti.isdigit()):
            out.append(Violation("t", "mti", f"MTI {self.mti!r} is not 4 digits"))
        for k in sorted(self._fields, key=int):
            spec = self.dialect.fields.get(k)
            if spec is None:
                out.append(Violation(k, "unknown_field", f"the dialect {self.dialect.name} has no field {k}"))
                continue
            try:
                encode_field(spec, self._fields[k], k)
            except EncodeError as e:
                out.append(Violation(k, "format", f"{spec.desc}: {e.reason}"
                                     + (f" (expected {e.expected}, got {e.got})" if e.expected else "")))
            if spec.composite is not None:
                try:
                    if spec.composite.kind == "tlv":
                        self.tlv(k)
                    else:
                        self.subfields(k)
                except Iso8583Error as e:
                    where = f" at byte {e.offset} of the field" if e.offset is not None else ""
                    out.append(Violation(e.path or k, "composite", f"{e.reason}{where}"))
        rule = self.rule()
        mti_rules = [r for r in self.dialect.rules if r.mti == (self.original_mti if self.is_response else self.mti)]
        if self.is_request and rule is not None:
            for f in rule.required:
                if f not in self._fields:
                    out.append(Violation(f, "required", f"{self._desc(f)} is required in a {rule.name} ({rule.mti})"))
            for group in rule.one_of:
                if not any(g in self._fields for g in group):
                    names = " or ".join(group)
                    out.append(Violation(group[0], "required_one_of", f"one of fields {names} is required in a {rule.name}"))
            for f in rule.forbidden:
                if f in self._fields:
                    out.append(Violation(f, "forbidden", f"{self._desc(f)} must not be sent in a {rule.name}"))
        elif self.is_request and mti_rules:
            common = set.intersection(*(set(p for p, _ in r.match) for r in mti_rules)) if mti_rules else set()
            for path in sorted(common):
                if path not in self:
                    out.append(Violation(path, "required", f"field {path} is required to tell what this {self.mti} is"))
        if self.is_response and "39" not in self._fields:
            out.append(Violation("39", "required", "a response must carry the response code (39)"))
        if request is not None:
            out += self._check_answers(request)
        if original is not None:
            out += self._check_links(original)
        return out

    def _desc(self, key: str) -> str:
        spec = self.dialect.fields.get(key.split(".")[0])
        return f"field {key} ({spec.desc})" if spec else f"field {key}"

    def _check_answers(self, request: Message) -> list[Violation]:
        out: list[Violation] = []
        try:
            expected = request.response_mti
        except ValueError:
            expected = "?"
        if self.mti != expected:
            out.append(Violation("t", "response_mti", f"response MTI {self.mti} does not answer request {request.mti} (expected {expected})"))
        for f in self.dialect.echo_fields:
            if f in request._fields:
                if f not in self._fields:
                    out.append(Violation(f, "echo_missing", f"{self._desc(f)} of the request is not echoed"))
                elif self._fields[f] != request._fields[f]:
                    out.append(Violation(f, "echo_mismatch", f"{self._desc(f)} differs from the request"))
        return out

    def _check_links(self, original: Message) -> list[Violation]:
        out: list[Violation] = []
        if self.is_reversal:
            if self.dialect.reversal_link == "90":
                try:
                    stan = self["90.2"]
                    mti = self["90.1"]
                except (KeyError, Iso8583Error):
                    return [Violation("90", "link", "a reversal must carry the original data elements (90)")]
                if stan != original._fields.get("11"):
                    out.append(Violation("90.2", "link", "original STAN in 90.2 does not match the original's field 11"))
                if mti != original.mti:
                    out.append(Violation("90.1", "link", f"original MTI in 90.1 is {mti!s}, the original is {original.mti}"))
            else:
                if self._fields.get("11") != original._fields.get("11"):
                    out.append(Violation("11", "link", "a cup reversal reuses the original STAN (11)"))
            if self._fields.get("4") != original._fields.get("4"):
                out.append(Violation("4", "link", "reversal amount differs from the original"))
        return out

    # ------------------------------------------------------------------ display
    def _masked_value(self, key: str) -> str:
        v = self._fields[key]
        text = v.hex().upper() if isinstance(v, bytes) else v
        return masker_for(self._codec.sensitivity.get(key))(text)

    def describe(self, *, reveal: bool = False) -> str:
        """A human-readable listing; card data masked unless ``reveal``."""
        kind = self.kind
        cls = MTI_CLASSES.get(self.mti_class, "?")
        fn = MTI_FUNCTIONS.get(self.mti_function, "?")
        head = f"{self.mti} {cls} {fn}" + (f" — {kind}" if kind else "") + f"  [dialect {self.dialect.name}]"
        lines = [head]
        if self.dialect.header_len and self.header is not None:
            h = self.header.hex().upper() if isinstance(self.header, bytes) else self.header
            lines.append(f"  {'h':>4}  {'Header (TPDU + header)':<40} {h}")
        for k in self.keys():
            spec = self.dialect.fields.get(k)
            desc = spec.desc if spec else "?"
            value = self.to_dict(reveal=True)[k] if reveal else self._masked_value(k)
            comp = spec.composite if spec else None
            if comp is not None and comp.kind == "tlv":
                lines.append(f"  {k:>4}  {desc[:40]:<40} ({len(self._composite_bytes(k)) if self._safe_bytes(k) else '?'} bytes)")
                try:
                    for it in self.tlv(k):
                        shown = it.value.hex().upper() if (reveal or it.tag in DISPLAY_SAFE) else "*" * 8
                        lines.append(f"  {'':>4}    {it.tag:<6} {tag_name(it.tag)[:30]:<30} {shown}")
                except Iso8583Error as e:
                    lines.append(f"  {'':>4}    !! {e.reason} (field {e.path}, byte {e.offset})")
                continue
            lines.append(f"  {k:>4}  {desc[:40]:<40} {value}")
            if comp is not None and comp.kind == "positional":
                try:
                    for sk, sv in self.subfields(k).items():
                        sf = comp.subfield(sk)
                        lines.append(f"  {'':>4}    .{sk:<5} {(sf.desc if sf else '')[:30]:<30} {sv}")
                except Iso8583Error as e:
                    lines.append(f"  {'':>4}    !! {e.reason} (field {e.path})")
        return "\n".join(lines)

    def _safe_bytes(self, key: str) -> bool:
        try:
            self._composite_bytes(key)
            return True
        except Iso8583Error:
            return False


def decode(raw: bytes, dialect: str | Dialect = "iso87ascii") -> Message:
    """Decode raw bytes (without framing) into a :class:`Message`."""
    return Message.decode(raw, dialect)


def encode(msg: Message) -> bytes:
    """Encode a :class:`Message` (without framing)."""
    return msg.encode()
