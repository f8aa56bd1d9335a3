"""One field, written and read: the interpreted (reference) codec for a :class:`FieldSpec`.

This is the careful path: it checks everything and raises errors with an offset and a hint. The compiled
fast path (:mod:`posguard.iso8583.compiler`) must agree with it byte for byte; when the fast path meets
anything unexpected it falls back to this one, which produces the precise error.
"""

from __future__ import annotations

import re

from posguard.iso8583.errors import DecodeError, EncodeError
from posguard.iso8583.spec import FieldSpec

__all__ = [
    "decode_field",
    "encode_field",
    "check_content",
    "BCD_BYTE",
    "BCD_LL",
    "BCD_LLL",
    "TEXT_CODEC",
]

TEXT_CODEC = {"ascii": "ascii", "ebcdic": "cp500"}

#: value of a packed-BCD byte (0..99), or -1 when a nibble is not a decimal digit
BCD_BYTE: tuple[int, ...] = tuple(
    (b >> 4) * 10 + (b & 0x0F) if (b >> 4) < 10 and (b & 0x0F) < 10 else -1 for b in range(256)
)
#: packed-BCD encodings of lengths, for one-byte (0..99) and two-byte (0..9999) prefixes
BCD_LL: tuple[bytes, ...] = tuple(bytes.fromhex(f"{n:02d}") for n in range(100))
BCD_LLL: tuple[bytes, ...] = tuple(bytes.fromhex(f"{n:04d}") for n in range(10000))

_KIND_RE = {
    "n": re.compile(r"[0-9]*"),
    "z": re.compile(r"[0-9=D]*"),
    "xn": re.compile(r"(?:[CD][0-9]*)?"),
    "ns": re.compile(r"[0-9 -/:-@\[-`{-~]*"),
    "a": re.compile(r"[A-Za-z ]*"),
    "an": re.compile(r"[ -~]*"),
    "ans": re.compile(r"[\x00-\x7f]*"),
}
_HEX_RE = re.compile(r"[0-9A-Fa-f]*")

_KIND_WORDS = {
    "n": "digits 0-9",
    "z": "track-2 characters (digits, '=' or 'D')",
    "xn": "C or D followed by digits",
    "ns": "digits and special characters",
    "a": "letters",
    "an": "printable characters",
    "ans": "ASCII characters",
    "b": "binary",
}


def check_content(spec: FieldSpec, value: str) -> str | None:
    """Why ``value`` is not valid content for the field's class, or None when it is."""
    if spec.kind == "b":
        # binary content carried as hex text (iso87ascii's 52/55/64)
        if not _HEX_RE.fullmatch(value):
            return "not hex digits"
        return None
    rx = _KIND_RE.get(spec.kind)
    if rx is not None and not rx.fullmatch(value):
        return f"content must be {_KIND_WORDS.get(spec.kind, spec.kind)}"
    return None


def _value_desc(spec: FieldSpec, units: int) -> str:
    unit = {"bcd": "digits", "binary": "bytes", "xbcd": "characters"}.get(spec.data_enc, "characters")
    return f"{units} {unit}"


# ------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------
def _read_prefix(spec: FieldSpec, data: bytes, pos: int, end: int, path: str) -> tuple[int, int]:
    pb = spec.prefix_bytes
    if pos + pb > end:
        raise DecodeError(
            "message ends inside the length prefix",
            path=path, offset=pos, expected=f"{pb} prefix bytes", got=f"{max(0, end - pos)}",
        )
    seg = data[pos : pos + pb]
    enc = spec.len_enc
    if enc == "binary":
        return int.from_bytes(seg, "big"), pos + pb
    if enc == "bcd":
        digits = seg.hex()
        if not digits.isdigit():
            raise DecodeError(
                "length prefix is not BCD digits", path=path, offset=pos,
                expected=f"{spec.len_type} BCD digits", got=digits.upper(),
                hint="is the length prefix binary rather than BCD?",
            )
        return int(digits), pos + pb
    try:
        text = seg.decode(TEXT_CODEC[enc])
    except UnicodeDecodeError:
        text = ""
    if not (text.isascii() and text.isdigit()):
        hint = None
        if enc == "ascii" and all(b < 0x30 or (b >> 4) < 10 and (b & 15) < 10 for b in seg):
            hint = "the prefix looks BCD or binary — is the dialect iso87bcd or cup instead of iso87ascii?"
        raise DecodeError(
            f"length prefix is not {enc.upper()} digits", path=path, offset=pos,
            expected=f"{spec.len_type} {enc} digits", got=seg.hex().upper(), hint=hint,
        )
    return int(text), pos + pb


def decode_field(spec: FieldSpec, data: bytes, pos: int, end: int, path: str | None = None) -> tuple[str | bytes, int]:
    """Decode one field at ``pos``; returns the value and the position after it."""
    path = path or spec.key
    start = pos
    if spec.fixed:
        units = spec.max_len
    else:
        units, pos = _read_prefix(spec, data, pos, end, path)
        if units > spec.max_len:
            hint = _length_hint(spec, units)
            raise DecodeError(
                f"length {units} exceeds the field's maximum", path=path, offset=start,
                expected=f"at most {spec.max_len}", got=str(units), hint=hint,
            )
    if spec.len_count == "bytes" and not spec.fixed:
        nbytes = units
        units = units * 2 if spec.data_enc == "bcd" else units
    else:
        nbytes = spec.byte_len(units)
    if pos + nbytes > end:
        hint = None
        if spec.data_enc == "bcd" and spec.len_count == "bytes" and pos + (nbytes + 1) // 2 <= end:
            hint = "does the length count BCD digits rather than bytes?"
        elif spec.data_enc == "bcd" and not spec.fixed:
            hint = "is the length counting bytes where the spec counts digits, or the prefix LL vs LLL?"
        elif not spec.fixed:
            hint = "is the length prefix LL vs LLL, or the message truncated?"
        raise DecodeError(
            "field runs past the end of the message", path=path, offset=pos,
            expected=f"{nbytes} bytes ({_value_desc(spec, units)})", got=f"{end - pos} bytes left", hint=hint,
        )
    raw = data[pos : pos + nbytes]
    enc = spec.data_enc
    if enc == "binary":
        return bytes(raw), pos + nbytes
    if enc == "bcd":
        digits = raw.hex().upper()
        if units & 1:
            digits = digits[1:] if spec.pad == "left" else digits[:-1]
        return digits, pos + nbytes
    if enc == "xbcd":
        sign = chr(raw[0]) if raw else ""
        digits = raw[1:].hex().upper()
        if (units - 1) & 1:
            digits = digits[1:] if spec.pad == "left" else digits[:-1]
        return sign + digits, pos + nbytes
    try:
        return raw.decode(TEXT_CODEC[enc]), pos + nbytes
    except UnicodeDecodeError as e:
        raise DecodeError(
            f"byte is not valid {enc.upper()} text", path=path, offset=pos + e.start,
            expected=f"{enc} text", got=f"byte {raw[e.start]:02X}",
            hint="is this field binary in the dialect (e.g. iso87 rather than iso87ascii)?",
        ) from None


def _length_hint(spec: FieldSpec, units: int) -> str | None:
    if spec.data_enc == "bcd" and units <= 2 * spec.max_len:
        other = "bytes" if spec.len_count == "units" else "digits"
        return f"does the BCD length prefix count {other} where the spec counts {spec.len_count}?"
    if spec.len_type == 2:
        return "is the prefix LLL rather than LL, or the message misaligned by an earlier field?"
    if spec.len_type == 3:
        return "is the prefix LL rather than LLL, or the message misaligned by an earlier field?"
    return "the message may be misaligned by an earlier field"


# ------------------------------------------------------------------------------------------------
# encode
# ------------------------------------------------------------------------------------------------
def encode_field(spec: FieldSpec, value: object, path: str | None = None) -> bytes:
    """Encode one field's value, prefix included."""
    path = path or spec.key
    enc = spec.data_enc
    if enc == "binary":
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if not isinstance(value, bytes):
            raise EncodeError(
                "binary field needs bytes", path=path,
                expected="bytes", got=type(value).__name__,
                hint="binary fields take bytes; JSON carries them as hex (Message.from_dict converts)",
            )
        body = value
        units = len(body)
    else:
        if not isinstance(value, str):
            raise EncodeError(
                "field needs a string", path=path, expected="str", got=type(value).__name__,
                hint="numeric fields take digit strings, e.g. '000000001000' for an amount",
            )
        text = value
        if spec.fixed and spec.fixed_pad is not None and len(text) < spec.max_len:
            fill = spec.fixed_pad
            text = text.rjust(spec.max_len, fill) if fill == "0" else text.ljust(spec.max_len, fill)
        if enc in ("bcd", "xbcd") and spec.kind == "z":
            text = text.replace("=", "D")
        why = check_content(spec, text)
        if why is not None:
            raise EncodeError(
                why, path=path, expected=_KIND_WORDS.get(spec.kind, spec.kind),
                got="(value withheld)" if spec.sensitive else f"{len(text)} characters",
            )
        units = len(text)
        if enc == "bcd":
            digits = text
            if len(digits) & 1:
                digits = spec.pad_char + digits if spec.pad == "left" else digits + spec.pad_char
            try:
                body = bytes.fromhex(digits)
            except ValueError:
                raise EncodeError("not BCD digits", path=path) from None
        elif enc == "xbcd":
            if not text:
                raise EncodeError("signed amount needs a C/D sign", path=path)
            digits = text[1:]
            if len(digits) & 1:
                digits = spec.pad_char + digits if spec.pad == "left" else digits + spec.pad_char
            body = text[0].encode("ascii") + bytes.fromhex(digits)
        else:
            try:
                body = text.encode(TEXT_CODEC[enc])
            except UnicodeEncodeError as e:
                raise EncodeError(
                    f"character not encodable in {enc.upper()}", path=path, offset=e.start,
                    expected=f"{enc} text", got=f"character #{e.start + 1}",
                ) from None
            units = len(body)
    if spec.fixed:
        if units != spec.max_len:
            raise EncodeError(
                "fixed-length field has the wrong length", path=path,
                expected=_value_desc(spec, spec.max_len), got=_value_desc(spec, units),
                hint="pad numerics with leading zeros (e.g. STAN '000123'), text with trailing spaces",
            )
        return body
    if units > spec.max_len:
        raise EncodeError(
            "value is longer than the field's maximum", path=path,
            expected=f"at most {_value_desc(spec, spec.max_len)}", got=_value_desc(spec, units),
        )
    count = len(body) if spec.len_count == "bytes" else units
    return _encode_prefix(spec, count, path) + body


def _encode_prefix(spec: FieldSpec, count: int, path: str) -> bytes:
    enc = spec.len_enc
    if enc == "binary":
        try:
            return count.to_bytes(spec.len_type, "big")
        except OverflowError:
            raise EncodeError("length does not fit the binary prefix", path=path, got=str(count)) from None
    text = f"{count:0{spec.len_type}d}"
    if len(text) > spec.len_type:
        raise EncodeError("length does not fit the prefix", path=path, expected=f"{spec.len_type} digits", got=text)
    if enc == "bcd":
        if len(text) & 1:
            text = "0" + text
        return bytes.fromhex(text)
    return text.encode(TEXT_CODEC[enc])
