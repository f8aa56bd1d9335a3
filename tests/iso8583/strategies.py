"""Hypothesis strategies that generate valid field values and messages for any dialect."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from posguard.iso8583 import Dialect, FieldSpec

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
NON_LETTERS = "".join(c for c in PRINTABLE if not c.isalpha())


def _length(spec: FieldSpec, cap: int) -> st.SearchStrategy[int]:
    if spec.fixed:
        return st.just(spec.max_len)
    hi = min(spec.max_len, cap)
    return st.one_of(st.integers(0, hi), st.just(hi))


def value_for(spec: FieldSpec, *, cap: int = 40) -> st.SearchStrategy[str | bytes]:
    if spec.data_enc == "binary":
        return _length(spec, cap).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    if spec.kind == "b":  # binary carried as hex text
        n_hex = _length(spec, cap).map(lambda n: n - (n % 2))
        return n_hex.flatmap(lambda n: st.text("0123456789ABCDEF", min_size=n, max_size=n))
    if spec.data_enc == "xbcd":
        return st.tuples(st.sampled_from("CD"), st.text(string.digits, min_size=spec.max_len - 1,
                                                         max_size=spec.max_len - 1)).map("".join)
    if spec.kind == "xn":
        return st.tuples(st.sampled_from("CD"), st.text(string.digits, min_size=spec.max_len - 1,
                                                         max_size=spec.max_len - 1)).map("".join)
    alphabet = {
        "n": string.digits,
        "z": string.digits + ("D" if spec.data_enc == "bcd" else "="),
        "ns": NON_LETTERS,
        "a": string.ascii_letters + " ",
    }.get(spec.kind, PRINTABLE)
    return _length(spec, cap).flatmap(lambda n: st.text(alphabet, min_size=n, max_size=n))


@st.composite
def field_sets(draw: st.DrawFn, dialect: Dialect, *, keys: list[str] | None = None, cap: int = 40) -> dict[str, str | bytes]:
    pool = keys if keys is not None else sorted(dialect.fields, key=int)
    chosen = draw(st.lists(st.sampled_from(pool), unique=True, min_size=0, max_size=min(len(pool), 24)))
    return {k: draw(value_for(dialect.fields[k], cap=cap)) for k in sorted(chosen, key=int)}


MTIS = st.sampled_from(["0100", "0110", "0200", "0210", "0220", "0230", "0320", "0400", "0401", "0410",
                        "0420", "0500", "0510", "0800", "0810"])
