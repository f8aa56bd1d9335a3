"""The compiled fast path: one construct per set of present fields, compiled once and cached per bitmap.

:class:`FieldConstruct` is a construct for one field (interpreted: it runs the reference codec in
:mod:`posguard.iso8583.fields`). :class:`FieldRun` is a construct for the run of fields a bitmap selects;
its interpreted ``_parse``/``_build`` loop over the fields, and its ``_emitparse``/``_emitbuild`` emit one
straight-line Python function for that exact run, which ``construct``'s ``compile()`` turns into a
``Compiled`` parser. Each emitted stream function wraps a plain one — ``scan(data, pos) -> (fields, end)``
and ``join(fields) -> bytes`` — which the codec calls directly (:func:`compile_run_direct`), without a
stream. The emitted code checks structure (prefix digits, maximum lengths, the final position) and
raises on anything unexpected; the caller then re-runs the interpreted path, which produces
the precise, masked error. So the fast path can never return a wrong answer silently: it either agrees
with the reference codec (checked by property tests) or defers to it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import construct

from posguard.iso8583.fields import BCD_BYTE, BCD_LL, BCD_LLL, TEXT_CODEC, decode_field, encode_field
from posguard.iso8583.spec import FieldSpec

__all__ = ["FieldConstruct", "FieldRun", "FastPathMiss", "compile_run", "compile_run_direct"]


class FastPathMiss(Exception):
    """Raised inside compiled code when the input needs the careful path."""


#: ASCII length prefixes of 2, 3 and 4 digits, precomputed
_ASCII_PREFIX: dict[int, tuple[bytes, ...]] = {
    lt: tuple(f"{n:0{lt}d}".encode("ascii") for n in range(10**lt)) for lt in (2, 3, 4)
}

_RUNTIME: dict[str, Any] = {
    "_BCD": BCD_BYTE,
    "_BCD_LL": BCD_LL,
    "_BCD_LLL": BCD_LLL,
    "_ASC2": _ASCII_PREFIX[2],
    "_ASC3": _ASCII_PREFIX[3],
    "_ASC4": _ASCII_PREFIX[4],
    "_DIG2": {b: n for n, b in enumerate(_ASCII_PREFIX[2])},
    "_DIG3": {b: n for n, b in enumerate(_ASCII_PREFIX[3])},
    "_DIG4": {b: n for n, b in enumerate(_ASCII_PREFIX[4])},
    "_ASCS2": tuple(b.decode("ascii") for b in _ASCII_PREFIX[2]),
    "_ASCS3": tuple(b.decode("ascii") for b in _ASCII_PREFIX[3]),
    "_ASCS4": tuple(b.decode("ascii") for b in _ASCII_PREFIX[4]),
    "_Miss": FastPathMiss,
}


class FieldConstruct(construct.Construct):  # type: ignore[misc]
    """A construct for one ISO 8583 field (interpreted)."""

    def __init__(self, spec: FieldSpec) -> None:
        super().__init__()
        self.spec = spec

    def _parse(self, stream: io.BytesIO, context: Any, path: str) -> str | bytes:
        data = stream.getvalue()
        value, end = decode_field(self.spec, data, stream.tell(), len(data))
        stream.seek(end)
        return value

    def _build(self, obj: Any, stream: io.BytesIO, context: Any, path: str) -> Any:
        stream.write(encode_field(self.spec, obj))
        return obj


class FieldRun(construct.Construct):  # type: ignore[misc]
    """A construct for the fields one bitmap selects, in field-number order."""

    def __init__(self, specs: Sequence[FieldSpec]) -> None:
        super().__init__()
        self.specs = tuple(specs)
        #: names of the plain functions emitted by ``compile()`` (``scan(data, p) -> (fields, p)`` and
        #: ``join(fields) -> bytes``), which the codec calls without a stream
        self.scan_name = ""
        self.join_name = ""

    # -- interpreted --------------------------------------------------------------------------
    def _parse(self, stream: io.BytesIO, context: Any, path: str) -> dict[str, str | bytes]:
        data = stream.getvalue()
        pos = stream.tell()
        out: dict[str, str | bytes] = {}
        for spec in self.specs:
            out[spec.key], pos = decode_field(spec, data, pos, len(data))
        stream.seek(pos)
        return out

    def _build(self, obj: Mapping[str, Any], stream: io.BytesIO, context: Any, path: str) -> Any:
        for spec in self.specs:
            stream.write(encode_field(spec, obj[spec.key]))
        return obj

    # -- compiled -----------------------------------------------------------------------------
    def _emitparse(self, code: Any) -> str:
        ident = code.allocateId()
        fname = f"parse_fieldrun_{ident}"
        scan = f"scan_fieldrun_{ident}"
        lines = [f"def {scan}(data, p):"] + ["    " + ln for ln in _emit_scan(self.specs)]
        lines += [f"def {fname}(io, this):", f"    f, p = {scan}(io.getvalue(), io.tell())", "    io.seek(p)",
                  "    return f"]
        code.append("\n".join(lines))
        self.scan_name = scan
        return f"{fname}(io, this)"

    def _emitbuild(self, code: Any) -> str:
        ident = code.allocateId()
        fname = f"build_fieldrun_{ident}"
        join = f"join_fieldrun_{ident}"
        lines = [f"def {join}(obj):"] + ["    " + ln for ln in _emit_join(self.specs)]
        lines += [f"def {fname}(obj, io, this):", f"    io.write({join}(obj))", "    return obj"]
        code.append("\n".join(lines))
        self.join_name = join
        return f"{fname}(obj, io, this)"


def _emit_scan(specs: Sequence[FieldSpec]) -> list[str]:
    """The body of ``scan(data, p) -> (fields, end)`` for a run of fields.

    Positions are tracked as ``p`` plus a constant offset known when the code is emitted, so fixed fields
    cost one slice each; ``p`` moves only after a length prefix. ASCII text is sliced from one Latin-1
    decoding of the message; each stretch of consecutive ASCII fields (their prefixes included) is checked
    ``isascii()`` once, which refuses what ``bytes.decode("ascii")`` of each field would. A slice cut short by
    the end of the message leaves the final position past the end, which the caller refuses.
    """
    lines: list[str] = []
    if any(spec.data_enc == "ascii" for spec in specs):
        lines.append("t = data.decode('latin-1')")
    off = 0
    names: list[tuple[str, str]] = []
    stretch = False  # inside a stretch of ASCII fields that started at ``r``
    for i, spec in enumerate(specs):
        v = f"v{i}"
        names.append((spec.key, v))
        enc = spec.data_enc
        if enc == "ascii" and not stretch:
            lines.append(f"r = {_at(off)}")
            stretch = True
        elif enc != "ascii" and stretch:
            lines.append(f"if not t[r:{_at(off)}].isascii(): raise _Miss")
            stretch = False
        if enc == "xbcd" or (not spec.fixed and spec.len_count == "bytes" and enc == "bcd"):
            # rare formats: the reference codec inline
            lines.append(f"{v}, p = _decode_field(_SPEC_{spec.key}, data, {_at(off)}, len(data))")
            off = 0
            continue
        if spec.fixed:
            start, stop = _at(off), _at(off + spec.fixed_bytes())
            off += spec.fixed_bytes()
            odd = "1" if spec.max_len & 1 else None
        else:
            lines += _prefix_scan(spec, off)
            start, stop = "q", "p"
            off = 0
            odd = "n & 1"
        if enc == "binary":
            lines.append(f"{v} = data[{start}:{stop}]")
        elif enc == "ascii":
            lines.append(f"{v} = t[{start}:{stop}]")
        elif enc == "bcd":
            conv = f"data[{start}:{stop}].hex().upper()"
            if odd is None:
                lines.append(f"{v} = {conv}")
            else:
                strip = f"{v}[1:]" if spec.pad == "left" else f"{v}[:-1]"
                lines.append(f"{v} = {conv}")
                lines.append(f"{v} = {strip}" if odd == "1" else f"if n & 1: {v} = {strip}")
        else:
            lines.append(f"{v} = data[{start}:{stop}].decode({TEXT_CODEC[enc]!r})")
    if stretch:
        lines.append(f"if not t[r:{_at(off)}].isascii(): raise _Miss")
    body = ", ".join(f"{k!r}: {v}" for k, v in names)
    lines.append(f"return {{{body}}}, {_at(off)}")
    return lines


def _at(off: int) -> str:
    return f"p + {off}" if off else "p"


def _prefix_scan(spec: FieldSpec, off: int) -> list[str]:
    """Lines that read the length prefix at ``p + off`` into ``n``; then the value is ``[q:p]``."""
    lt, enc, mx = spec.len_type, spec.len_enc, spec.max_len
    lines = [f"q = {_at(off)}"]
    if enc == "binary":
        if lt == 1:
            lines.append("n = data[q]")
        else:
            lines.append(f"n = int.from_bytes(data[q:q + {lt}], 'big')")
    elif enc == "bcd":
        if lt <= 2:
            lines.append("n = _BCD[data[q]]")
        else:
            lines += ["h = _BCD[data[q]]; n = _BCD[data[q + 1]]", "if h < 0 or n < 0: raise _Miss", "n += 100 * h"]
    elif enc == "ascii" and lt in _ASCII_PREFIX:
        lines.append(f"n = _DIG{lt}[data[q:q + {lt}]]")  # KeyError unless exactly lt ASCII digits
    elif enc == "ascii":
        lines += [f"s = data[q:q + {lt}]", "if not s.isdigit(): raise _Miss", "n = int(s)"]
    else:
        lines += [f"s = data[q:q + {lt}].decode({TEXT_CODEC[enc]!r})", "if not (s.isascii() and s.isdigit()): raise _Miss",
                  "n = int(s)"]
    lines.append(f"if n > {mx} or n < 0: raise _Miss")
    pb = spec.prefix_bytes
    if spec.data_enc == "bcd":
        lines.append(f"q += {pb}; p = q + ((n + 1) >> 1)")
    else:
        lines.append(f"q += {pb}; p = q + n")
    return lines


def _text_mode(spec: FieldSpec) -> bool:
    """Whether the field is ASCII text with an ASCII (or no) prefix, so it can be joined as ``str``."""
    return (
        spec.data_enc == "ascii" and spec.fixed_pad is None and spec.kind in ("n", "ans", "an", "b", "z")
        and (spec.fixed or (spec.len_enc == "ascii" and spec.len_type in _ASCII_PREFIX))
    )


def _emit_join(specs: Sequence[FieldSpec]) -> list[str]:
    """The body of ``join(obj) -> bytes`` for a run of fields.

    Consecutive ASCII text fields are checked as ``str`` and joined, prefixes included, then encoded once:
    a character outside ASCII makes that ``encode`` fail, as each field's own encoding would have.
    """
    lines: list[str] = []
    pieces: list[str] = []
    segments: list[str] = []

    def flush() -> None:
        if pieces:
            segments.append(f"''.join(({', '.join(pieces)},)).encode('ascii')")
            pieces.clear()

    for i, spec in enumerate(specs):
        if not _text_mode(spec):
            flush()
            # the field's own lines, each write ``w(expr)`` kept in a variable of its own
            for j, ln in enumerate(_emit_encode(spec)):
                if ln.startswith("w(") and ln.endswith(")"):
                    lines.append(f"b{i}_{j} = {ln[2:-1]}")
                    segments.append(f"b{i}_{j}")
                else:
                    lines.append(ln)
            continue
        v = f"a{i}"
        lines.append(f"{v} = obj[{spec.key!r}]")
        if spec.kind == "n":
            lines.append(f"if not {v}.isdigit(): raise _Miss")
        elif spec.kind == "b":
            lines.append(f"if not _HEX({v}): raise _Miss")
        elif spec.kind == "z":
            lines.append(f"if not _Z({v}): raise _Miss")
        elif spec.kind == "an":
            lines.append(f"if not _AN({v}): raise _Miss")
        if spec.fixed:
            lines.append(f"if len({v}) != {spec.max_len}: raise _Miss")
        else:
            lines.append(f"n = len({v})")
            lines.append(f"if n > {spec.max_len}: raise _Miss")
            lines.append(f"p{i} = _ASCS{spec.len_type}[n]")
            pieces.append(f"p{i}")
        pieces.append(v)
    flush()
    if not segments:
        lines.append("return b''")
    elif len(segments) == 1:
        lines.append(f"return {segments[0]}")
    else:
        lines.append(f"return b''.join(({', '.join(segments)},))")
    return lines


def _emit_encode(spec: FieldSpec) -> list[str]:
    key = spec.key
    enc = spec.data_enc
    if enc == "xbcd" or spec.fixed_pad is not None or spec.kind not in ("n", "ans", "an", "b", "z") \
            or (not spec.fixed and spec.len_count == "bytes" and enc == "bcd"):
        return [f"w(_encode_field(_SPEC_{key}, obj[{key!r}]))"]
    lines = [f"v = obj[{key!r}]"]
    if enc == "binary":
        lines += ["if v.__class__ is not bytes: raise _Miss", "n = len(v)"]
        body = "v"
    elif enc == "bcd":
        if spec.kind == "n":
            lines += ["if not (v.isdigit() and v.isascii()): raise _Miss"]
        else:
            lines += ["v = v.replace('=', 'D')", "if not _Z(v): raise _Miss"]
        lines.append("n = len(v)")
        padded = f"{spec.pad_char!r} + v" if spec.pad == "left" else f"v + {spec.pad_char!r}"
        body = f"bytes.fromhex({padded} if n & 1 else v)"
    else:
        codec = TEXT_CODEC[enc]
        if spec.kind == "n":
            lines += ["if not (v.isdigit() and v.isascii()): raise _Miss"]
        elif spec.kind == "b":
            lines += ["if not _HEX(v): raise _Miss"]
        elif spec.kind == "z":
            lines += ["if not _Z(v): raise _Miss"]
        elif spec.kind == "an":
            lines += ["if not _AN(v): raise _Miss"]
        elif codec != "ascii":
            lines += ["if not v.isascii(): raise _Miss"]
        lines += [f"v = v.encode({codec!r}); n = len(v)"]
        body = "v"
    if spec.fixed:
        lines += [f"if n != {spec.max_len}: raise _Miss", f"w({body})"]
        return lines
    lines.append(f"if n > {spec.max_len}: raise _Miss")
    count = "n"
    if spec.len_count == "bytes" and enc == "bcd":
        count = "((n + 1) >> 1)"
    lt, lenc = spec.len_type, spec.len_enc
    if lenc == "binary":
        pre = f"{count}.to_bytes({lt}, 'big')"
    elif lenc == "bcd":
        pre = f"_BCD_LL[{count}]" if lt <= 2 else f"_BCD_LLL[{count}]"
    elif lenc == "ascii" and lt in _ASCII_PREFIX:
        pre = f"_ASC{lt}[{count}]"  # count <= max_len < 10**lt (checked by FieldSpec)
    else:
        fmt = f"%0{lt}d"
        pre = f"({fmt!r} % {count}).encode({TEXT_CODEC[lenc]!r})"
    lines += [f"w({pre})", f"w({body})"]
    return lines


def _compile_module(specs: Sequence[FieldSpec]) -> tuple[FieldRun, dict[str, Any], Any]:
    import re

    run = FieldRun(specs)
    compiled = run.compile()
    ns = compiled.module.__dict__
    ns.update(_RUNTIME)
    ns["_decode_field"] = decode_field
    ns["_encode_field"] = encode_field
    ns["_HEX"] = re.compile(r"[0-9A-Fa-f]*").fullmatch
    ns["_Z"] = re.compile(r"[0-9=D]*").fullmatch
    ns["_AN"] = re.compile(r"[ -~]*").fullmatch
    for spec in specs:
        ns[f"_SPEC_{spec.key}"] = spec
    return run, ns, compiled


def compile_run(specs: Sequence[FieldSpec]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Compile the parse and build functions for one run of fields (cached by the caller per bitmap)."""
    _, _, compiled = _compile_module(specs)
    return compiled.parsefunc, compiled.buildfunc


def compile_run_direct(
    specs: Sequence[FieldSpec],
) -> tuple[Callable[[bytes, int], tuple[dict[str, Any], int]], Callable[[Mapping[str, Any]], bytes]]:
    """The same compiled code without streams: ``scan(data, pos) -> (fields, end)`` and ``join(fields) -> bytes``.

    Both raise (``FastPathMiss`` or any other exception) on anything the reference codec must explain.
    """
    run, ns, _ = _compile_module(specs)
    return ns[run.scan_name], ns[run.join_name]
