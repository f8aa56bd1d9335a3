"""Whole messages: header, MTI, bitmaps and fields, with compiled parsers cached per bitmap.

``decode_parts`` and ``encode_parts`` are the two entry points. Only :class:`DecodeError` and
:class:`EncodeError` escape them, for any input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from posguard.iso8583.compiler import FastPathMiss, compile_run_direct
from posguard.iso8583.errors import DecodeError, EncodeError, Iso8583Error, hex_window
from posguard.iso8583.fields import decode_field, encode_field
from posguard.iso8583.spec import Dialect, FieldSpec
from posguard.sensitive import masker_for

__all__ = ["DialectCodec", "DisplayPlan", "codec_for"]

_CACHE_LIMIT = 2048
_HEXCHARS = frozenset(b"0123456789ABCDEFabcdef")
#: length of a hex-text bitmap by its first byte: 32 when the secondary bit is set, 0 when not hex
_HEX_BITMAP_LEN: tuple[int, ...] = tuple(
    (32 if int(chr(b), 16) & 0x8 else 16) if b in _HEXCHARS else 0 for b in range(256)
)

#: compiled ``scan(data, pos) -> (fields, end)`` for one bitmap
Scanner = Callable[[bytes, int], tuple[dict[str, Any], int]]
#: compiled ``join(fields) -> bytes`` for one set of fields
Joiner = Callable[[Mapping[str, Any]], bytes]


def _bits(bitmap: bytes, offset: int) -> list[int]:
    """Field numbers whose bits are set in ``bitmap`` (8 bytes), numbered from ``offset + 1``."""
    out = []
    value = int.from_bytes(bitmap, "big")
    for i in range(64):
        if value & (1 << (63 - i)):
            out.append(offset + i + 1)
    return out


class DisplayPlan(NamedTuple):
    """The field keys of one message shape, sorted, and split by how they are displayed."""

    in_order: bool
    keys: tuple[str, ...]
    text: tuple[str, ...]
    binary: tuple[str, ...]
    #: the card-data fields, each with its masker
    masks: tuple[tuple[str, Callable[[str], str]], ...]


class DialectCodec:
    """Encoder/decoder for one dialect; holds the per-bitmap compiled parsers and builders."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.fields = dict(dialect.fields)
        self._dec: OrderedDict[bytes, tuple[Scanner, tuple[str, ...], DisplayPlan]] = OrderedDict()
        self._enc: OrderedDict[int, tuple[Joiner, bytes]] = OrderedDict()
        #: the same builders keyed by the field keys in the caller's order (saves computing the bitmap)
        self._enc_keys: dict[tuple[str, ...], tuple[Joiner, bytes]] = {}
        #: header + MTI bytes already checked by ``_head``, keyed by (header, MTI)
        self._heads: dict[tuple[str | bytes | None, str], bytes] = {}
        self._bit = {k: 1 << (192 - int(k)) for k in self.fields}
        self._sensitive_keys = {k for k, f in self.fields.items() if f.sensitive}
        self._tertiary = dialect.tertiary_bitmap
        self._mti_len = 2 if dialect.mti_enc == "bcd" else 4
        self._bm_unit = 8 if dialect.bitmap_enc == "binary" else 16
        self._header_len = dialect.header_len
        self._header_binary = dialect.header_enc == "binary"
        self._mti_bcd = dialect.mti_enc == "bcd"
        self._mti_codec = "ascii" if dialect.mti_enc == "ascii" else "cp500"
        self._bm_binary = dialect.bitmap_enc == "binary"
        # facts the Message fast paths use
        #: every field key of the dialect
        self.field_keys: frozenset[str] = frozenset(self.fields)
        #: keys of the fields carried as bytes
        self.binary_keys: frozenset[str] = frozenset(k for k, f in self.fields.items() if f.is_binary)
        #: field key -> field number, to sort keys without calling int()
        self.order: dict[str, int] = {k: int(k) for k in self.fields}
        #: keys of the fields holding card data (masked on display)
        self.sensitive_keys: frozenset[str] = frozenset(self._sensitive_keys)
        #: field key -> card-data class, for the fields that hold card data
        self.sensitivity: dict[str, str] = {k: f.sensitive for k, f in self.fields.items() if f.sensitive}
        self._plans: dict[tuple[str, ...], DisplayPlan] = {}

    def display_plan(self, names: tuple[str, ...]) -> DisplayPlan:
        """How ``Message.to_dict`` lays out a message whose field keys are ``names`` (in its order)."""
        plan = self._plans.get(names)
        if plan is None:
            order = self.order
            ordered = tuple(sorted(names, key=order.__getitem__))  # KeyError: not a field of the dialect
            plan = DisplayPlan(
                in_order=ordered == names,
                keys=ordered,
                text=tuple(k for k in ordered if k not in self.binary_keys),
                binary=tuple(k for k in ordered if k in self.binary_keys),
                masks=tuple((k, masker_for(self.sensitivity[k])) for k in ordered if k in self.sensitive_keys),
            )
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[names] = plan
        return plan

    # ==========================================================================================
    # decode
    # ==========================================================================================
    def decode_parts(self, raw: bytes) -> tuple[str | bytes, str, dict[str, str | bytes]]:
        """Decode ``raw`` into (header, MTI, fields)."""
        return self.decode_message(raw)[:3]

    def decode_message(
        self, raw: bytes
    ) -> tuple[str | bytes, str, dict[str, str | bytes], DisplayPlan | None]:
        """Decode ``raw`` into (header, MTI, fields, the display plan of those fields)."""
        if raw.__class__ is not bytes:
            if not isinstance(raw, bytes | bytearray | memoryview):
                raise DecodeError("decode needs bytes", expected="bytes", got=type(raw).__name__)
            raw = bytes(raw)
        if not self._tertiary:
            try:
                return self._scan(raw)
            except (FastPathMiss, Exception):
                pass
        header, mti, fields = self._decode_careful(raw)
        try:
            plan: DisplayPlan | None = self.display_plan(tuple(fields))
        except KeyError:  # pragma: no cover - decoded keys are the dialect's
            plan = None
        return header, mti, fields, plan

    def _decode_fast(self, raw: bytes) -> tuple[str | bytes, str, dict[str, str | bytes]]:
        return self._scan(raw)[:3]

    def _scan(self, raw: bytes) -> tuple[str | bytes, str, dict[str, str | bytes], DisplayPlan | None]:
        p = self._header_len
        if p:
            header: str | bytes = raw[:p] if self._header_binary else raw[:p].decode("ascii")
        else:
            header = b"" if self._header_binary else ""
        if self._mti_bcd:
            mti = raw[p : p + 2].hex()
            p += 2
        else:
            mti = raw[p : p + 4].decode(self._mti_codec)
            p += 4
        if len(mti) != 4 or not mti.isdigit():
            raise FastPathMiss
        # the bitmap as it stands in the message is the cache key (only whole, valid bitmaps are cached)
        n = (16 if raw[p] & 0x80 else 8) if self._bm_binary else _HEX_BITMAP_LEN[raw[p]]
        key = raw[p : p + n]
        entry = self._dec.get(key)
        if entry is None:
            entry = self._compile_decoder_at(key, n)
        fields, p = entry[0](raw, p + n)
        if p != len(raw):
            raise FastPathMiss
        return header, mti, fields, entry[2]

    def _compile_decoder_at(self, key: bytes, n: int) -> tuple[Scanner, tuple[str, ...], DisplayPlan]:
        """Check a bitmap as found in a message (``n`` bytes expected), then compile and cache its decoder."""
        if not n or len(key) != n:
            raise FastPathMiss
        bitmap = key if self._bm_binary else bytes.fromhex(key.decode("ascii"))
        if len(bitmap) * (1 if self._bm_binary else 2) != n:
            raise FastPathMiss
        numbers = _bits(bitmap[:8], 0)
        if len(bitmap) > 8:
            numbers += _bits(bitmap[8:16], 64)
        keys = tuple(str(num) for num in numbers if num != 1)
        specs = [self.fields[k] for k in keys]  # KeyError -> careful path explains
        scanner, _ = compile_run_direct(specs)
        entry = (scanner, keys, self.display_plan(keys))
        self._dec[key] = entry
        if len(self._dec) > _CACHE_LIMIT:
            self._dec.popitem(last=False)
        return entry

    def _decode_careful(self, raw: bytes) -> tuple[str | bytes, str, dict[str, str | bytes]]:
        """The reference decoder: slow, exact, and the source of every decode error."""
        d = self.dialect
        spans: list[tuple[int, int]] = []
        end = len(raw)
        try:
            return self._careful_body(raw, spans)
        except DecodeError as e:
            hint = e.hint
            if hint is None:
                hint = self._dialect_hint(raw)
            offset = e.offset if e.offset is not None else 0
            sensitive_now = e.path is not None and e.path.split(".")[0] in self._sensitive_keys
            if sensitive_now:
                spans.append((offset, end))
            raise DecodeError(
                e.reason, path=e.path, offset=e.offset, expected=e.expected, got=e.got,
                window=hex_window(raw, offset, masked_spans=spans), hint=hint,
            ) from None
        except Iso8583Error:
            raise
        except Exception as e:  # pragma: no cover - defensive: nothing else may escape
            raise DecodeError(f"internal decoder error: {type(e).__name__}", offset=0,
                              hint=f"dialect {d.name}") from None

    def _careful_body(
        self, raw: bytes, spans: list[tuple[int, int]]
    ) -> tuple[str | bytes, str, dict[str, str | bytes]]:
        d = self.dialect
        end = len(raw)
        p = 0
        if d.header_len:
            if end < d.header_len:
                raise DecodeError("message shorter than its header", path="h", offset=0,
                                  expected=f"{d.header_len} header bytes", got=f"{end} bytes")
            hb = raw[: d.header_len]
            if d.header_enc == "binary":
                header: str | bytes = hb
            else:
                try:
                    header = hb.decode("ascii")
                except UnicodeDecodeError as e:
                    raise DecodeError("header is not ASCII", path="h", offset=e.start) from None
            p = d.header_len
        else:
            header = b"" if d.header_enc == "binary" else ""
        # MTI
        ml = self._mti_len
        if p + ml > end:
            raise DecodeError("message ends inside the MTI", path="t", offset=p,
                              expected=f"{ml} bytes", got=f"{end - p} bytes")
        mb = raw[p : p + ml]
        if d.mti_enc == "bcd":
            mti = mb.hex().upper()
        else:
            try:
                mti = mb.decode("ascii" if d.mti_enc == "ascii" else "cp500")
            except UnicodeDecodeError:
                mti = ""
        if len(mti) != 4 or not (mti.isascii() and mti.isdigit()):
            hint = None
            if d.mti_enc != "bcd" and len(mb) >= 2 and all(b < 0x30 for b in mb[:2]):
                hint = "the MTI looks BCD — is the dialect iso87bcd or cup?"
            elif d.mti_enc == "bcd" and all(0x30 <= b <= 0x39 for b in mb):
                hint = "the MTI looks like ASCII digits — is the dialect iso87ascii or iso87?"
            elif d.header_len == 0 and end > 11:
                hint = "is there a header or TPDU before the MTI?"
            raise DecodeError("MTI is not 4 digits", path="t", offset=p,
                              expected="4 digits", got=mb.hex().upper(), hint=hint)
        p += ml
        # bitmaps
        primary, p = self._read_bitmap(raw, p, "p")
        numbers = _bits(primary, 0)
        if 1 in numbers:
            secondary, p = self._read_bitmap(raw, p, "1")
            numbers = [n for n in numbers if n != 1] + _bits(secondary, 64)
        fields: dict[str, str | bytes] = {}
        for n in numbers:
            if n == 65 and self._tertiary:
                tertiary, p = self._read_bitmap(raw, p, "65")
                numbers.extend(_bits(tertiary, 128))
                continue
            key = str(n)
            spec = self.fields.get(key)
            if spec is None:
                raise DecodeError(
                    f"bitmap bit {n} is set but the dialect has no field {n}", path=key, offset=p,
                    hint="a bitmap misread (binary vs hex), or a dialect that lacks this field",
                )
            start = p
            value, p = decode_field(spec, raw, p, end, key)
            if spec.sensitive:
                spans.append((start, p))
            fields[key] = value
        if p != end:
            last = max(fields, key=int) if fields else "bitmap"
            raise DecodeError(
                f"{end - p} unexpected bytes after the last field", path=last, offset=p,
                expected="end of message", got=f"{end - p} more bytes",
                hint="a field longer than the spec says, a missing bitmap bit, or a framing length off by some bytes?",
            )
        return header, mti, fields

    def _read_bitmap(self, raw: bytes, p: int, path: str) -> tuple[bytes, int]:
        d = self.dialect
        u = self._bm_unit
        if p + u > len(raw):
            raise DecodeError("message ends inside the bitmap", path=path, offset=p,
                              expected=f"{u} bytes", got=f"{len(raw) - p} bytes")
        seg = raw[p : p + u]
        if d.bitmap_enc == "binary":
            return seg, p + u
        text = seg.decode("ascii", "replace") if d.bitmap_enc == "ascii" else seg.decode("cp500", "replace")
        try:
            value = bytes.fromhex(text)
            if len(value) != 8:
                raise ValueError
        except ValueError:
            raise DecodeError(
                "bitmap is not 16 hex characters", path=path, offset=p, expected="hex text",
                got=seg.hex().upper(), hint="is the bitmap binary (dialect iso87) rather than hex (iso87ascii)?",
            ) from None
        return value, p + u

    def _dialect_hint(self, raw: bytes) -> str | None:
        d = self.dialect
        p = d.header_len + self._mti_len
        if d.bitmap_enc == "binary" and len(raw) >= p + 16 and all(b in _HEXCHARS for b in raw[p : p + 16]):
            return "the bitmap looks like hex text — is the dialect iso87ascii instead of iso87?"
        return None

    # ==========================================================================================
    # encode
    # ==========================================================================================
    def encode_parts(self, header: str | bytes | None, mti: str, fields: Mapping[str, Any]) -> bytes:
        if not self._tertiary:
            try:
                return self._encode_fast(header, mti, fields)
            except (FastPathMiss, Exception):
                pass
        return self._encode_careful(header, mti, fields)

    def _head(self, header: str | bytes | None, mti: str) -> bytes:
        d = self.dialect
        if d.header_len:
            if header is None or header in (b"", ""):
                raise EncodeError("the dialect needs a header", path="h",
                                  expected=f"{d.header_len} bytes", got="none",
                                  hint="cup messages start with the 5-byte TPDU and the 6-byte header")
            hb = bytes(header) if isinstance(header, bytes | bytearray) else str(header).encode("ascii", "replace")
            if d.header_enc == "binary" and isinstance(header, str):
                try:
                    hb = bytes.fromhex(header)
                except ValueError:
                    raise EncodeError("header is not hex", path="h") from None
            if len(hb) != d.header_len:
                raise EncodeError("header has the wrong length", path="h",
                                  expected=f"{d.header_len} bytes", got=f"{len(hb)} bytes")
        else:
            hb = b""
        if not isinstance(mti, str) or len(mti) != 4 or not (mti.isascii() and mti.isdigit()):
            raise EncodeError("MTI must be 4 digits", path="t", expected="4 digits",
                              got=repr(mti) if isinstance(mti, str) else type(mti).__name__)
        if d.mti_enc == "bcd":
            mb = bytes.fromhex(mti)
        elif d.mti_enc == "ebcdic":
            mb = mti.encode("cp500")
        else:
            mb = mti.encode("ascii")
        return hb + mb

    def _bitmap_bytes(self, bm: int) -> bytes:
        """Primary (+ secondary) bitmap for a 192-bit field mask (fields 1..128 used here)."""
        has_secondary = bool(bm & (((1 << 64) - 1) << 64))
        value = bm >> 64  # fields 1..128 as a 128-bit number (field 1 = top bit)
        if has_secondary:
            value |= 1 << 127
            raw = value.to_bytes(16, "big")
        else:
            raw = (value >> 64).to_bytes(8, "big")
        if self.dialect.bitmap_enc == "binary":
            return raw
        text = raw.hex().upper()
        return text.encode("ascii" if self.dialect.bitmap_enc == "ascii" else "cp500")

    def _encode_fast(self, header: str | bytes | None, mti: str, fields: Mapping[str, Any]) -> bytes:
        names = tuple(fields)
        entry = self._enc_keys.get(names)
        if entry is None:
            entry = self._compile_encoder(fields)
            if len(self._enc_keys) >= _CACHE_LIMIT:
                del self._enc_keys[next(iter(self._enc_keys))]
            self._enc_keys[names] = entry
        join, bitmap = entry
        if (header is None or header.__class__ is bytes or header.__class__ is str) and mti.__class__ is str:
            hkey = (header, mti)
            head = self._heads.get(hkey)
            if head is None:
                head = self._head(header, mti)  # raises -> the careful path explains
                if len(self._heads) >= _CACHE_LIMIT:
                    self._heads.clear()
                self._heads[hkey] = head
        else:
            head = self._head(header, mti)
        return head + bitmap + join(fields)

    def _compile_encoder(self, fields: Mapping[str, Any]) -> tuple[Joiner, bytes]:
        bit = self._bit
        bm = 0
        for k in fields:
            bm |= bit[k]  # KeyError -> the careful path explains
        entry = self._enc.get(bm)
        if entry is None:
            if bm & ((1 << 64) - 1):  # fields beyond 128 need the tertiary path
                raise FastPathMiss
            keys = sorted(fields, key=int)
            _, join = compile_run_direct([self.fields[k] for k in keys])
            entry = (join, self._bitmap_bytes(bm))
            self._enc[bm] = entry
            if len(self._enc) > _CACHE_LIMIT:
                self._enc.popitem(last=False)
        return entry

    def _encode_careful(self, header: str | bytes | None, mti: str, fields: Mapping[str, Any]) -> bytes:
        d = self.dialect
        try:
            head = self._head(header, mti)
            numbers: list[int] = []
            for k in fields:
                if not (isinstance(k, str) and k.isdigit()) or k not in self.fields:
                    raise EncodeError(
                        f"the dialect {d.name} has no field {k}", path=str(k),
                        hint="field keys are strings '2'..'128' (bitmaps are computed, not given)",
                    )
                numbers.append(int(k))
            numbers.sort()
            lo = [n for n in numbers if n <= 64]
            mid = [n for n in numbers if 64 < n <= 128]
            hi = [n for n in numbers if n > 128]
            if hi and not self._tertiary:
                raise EncodeError(f"field {hi[0]} needs a tertiary bitmap", path=str(hi[0]))
            if self._tertiary and 65 in mid:
                raise EncodeError("field 65 is the tertiary bitmap in this dialect", path="65",
                                  hint="give fields 129..192 instead; the bitmap is computed")
            if hi:
                mid = sorted([*mid, 65])
            bm1 = 0
            for n in lo:
                bm1 |= 1 << (64 - n)
            out = bytearray(head)
            if mid:
                bm1 |= 1 << 63
            out += self._bm_text(bm1)
            if mid:
                bm2 = 0
                for n in mid:
                    bm2 |= 1 << (128 - n)
                out += self._bm_text(bm2)
            body = bytearray()
            for n in lo:
                body += encode_field(self.fields[str(n)], fields[str(n)], str(n))
            for n in mid:
                if n == 65 and hi:
                    bm3 = 0
                    for m in hi:
                        bm3 |= 1 << (192 - m)
                    body += self._bm_text(bm3)
                    continue
                body += encode_field(self.fields[str(n)], fields[str(n)], str(n))
            for n in hi:
                body += encode_field(self.fields[str(n)], fields[str(n)], str(n))
            return bytes(out + body)
        except Iso8583Error as e:
            if isinstance(e, EncodeError):
                raise
            raise EncodeError(e.reason, path=e.path, offset=e.offset, expected=e.expected,
                              got=e.got, hint=e.hint) from None
        except Exception as e:
            raise EncodeError(f"cannot encode: {type(e).__name__}", hint=f"dialect {d.name}") from None

    def _bm_text(self, value: int) -> bytes:
        raw = value.to_bytes(8, "big")
        if self.dialect.bitmap_enc == "binary":
            return raw
        return raw.hex().upper().encode("ascii" if self.dialect.bitmap_enc == "ascii" else "cp500")

    def spec(self, key: str) -> FieldSpec | None:
        return self.fields.get(key)


_CODECS: dict[int, DialectCodec] = {}


def codec_for(dialect: Dialect) -> DialectCodec:
    """The (cached) codec of a dialect object."""
    c = _CODECS.get(id(dialect))
    if c is None or c.dialect is not dialect:
        c = DialectCodec(dialect)
        _CODECS[id(dialect)] = c
    return c
