"""The four wire dialects the simulated acquirer speaks, declared as pyiso8583 spec dicts.

The simulator is the *other side of the wire*: it never imports posguard and uses pyiso8583 as its codec,
so a posguard bug cannot hide behind a shared implementation.

* ``iso87ascii`` — pyiso8583 ``specs.default_ascii`` unchanged (ASCII everything, hex-text bitmap).
* ``iso87``      — pyiso8583 ``specs.default`` unchanged (ASCII data, binary bitmap/52/55/64/128).
* ``iso87bcd``   — the jPOS ISO87BPackager layout: BCD MTI, binary bitmap, numeric (n/z) fields packed BCD
  with BCD LL/LLL lengths counted in digits, text fields ASCII with BCD lengths (55 too, as jPOS), 52/64/128 binary.
* ``cup``        — China UnionPay POS: 11-byte TPDU+header as field ``h`` (binary), BCD MTI, binary
  bitmap, n/z fields BCD with BCD LL/LLL lengths counted in digits, 37/38/39/41/42/49 ASCII, 52/55/62/64
  binary, 48/60/61 BCD digits, 63 ASCII.

Print any of them with ``python -m firmware_sim.host --print-dialect cup``.
"""

from __future__ import annotations

import copy
from typing import Any

from iso8583 import specs as _pyiso_specs

Spec = dict[str, dict[str, Any]]

# ISO 8583:1987 fields whose data is numeric (n) or track-2 (z): these become BCD in the packed dialects.
NUMERIC_FIELDS: frozenset[int] = frozenset(
    [*range(2, 28), 32, 33, 35, 53, *range(66, 91), 99, 100]
) - {28, 29, 30, 31}  # 28-31 are x+n (sign letter + digits): kept ASCII.

BINARY_FIELDS: frozenset[int] = frozenset({52, 64, 96, 128})


def _bcd_fixed(digits: int, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": digits,
        "len_count": "nibbles",
        "left_pad": "0",
        "desc": desc,
    }


def _bcd_var(max_digits: int, len_bytes: int, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": len_bytes,
        "max_len": max_digits,
        "len_count": "nibbles",
        "right_pad": "0",
        "desc": desc,
    }


def _ascii(max_len: int, len_type: int, desc: str, len_enc: str = "bcd") -> dict[str, Any]:
    # len_type here is in *digits* of the length (0, 2 or 3); BCD packs them into 1 or 2 bytes.
    bcd_len_bytes = {0: 0, 2: 1, 3: 2}[len_type]
    return {
        "data_enc": "ascii",
        "len_enc": len_enc,
        "len_type": bcd_len_bytes if len_enc == "bcd" else len_type,
        "max_len": max_len,
        "desc": desc,
    }


def _binary(max_len: int, len_type: int, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": {0: 0, 2: 1, 3: 2}[len_type],
        "max_len": max_len,
        "desc": desc,
    }


def _ascii_len_digits(field_spec: dict[str, Any]) -> int:
    """The number of length digits (0/2/3) of a pyiso8583 default-spec (ASCII length) field."""
    return int(field_spec["len_type"])


def _packed_from_default() -> Spec:
    """Shared transform for iso87bcd and cup: numeric fields to BCD, lengths to BCD, MTI to BCD."""
    base: Spec = copy.deepcopy(_pyiso_specs.default)
    out: Spec = {}
    for key, fs in base.items():
        if key in ("h", "p", "1"):
            out[key] = fs
            continue
        if key == "t":
            out[key] = _bcd_fixed(4, fs["desc"])
            continue
        num = int(key)
        digits = _ascii_len_digits(fs)
        if num in NUMERIC_FIELDS:
            if digits == 0:
                out[key] = _bcd_fixed(fs["max_len"], fs["desc"])
            else:
                out[key] = _bcd_var(fs["max_len"], {2: 1, 3: 2}[digits], fs["desc"])
        elif num in BINARY_FIELDS or fs["data_enc"] == "b":
            out[key] = _binary(fs["max_len"], digits, fs["desc"])
        else:
            out[key] = _ascii(fs["max_len"], digits, fs["desc"])
    return out


def _iso87bcd() -> Spec:
    spec = _packed_from_default()
    spec["55"] = _ascii(999, 3, "ICC data (IFB_LLLCHAR in jPOS ISO87BPackager)")
    return spec


def _cup() -> Spec:
    spec = _packed_from_default()
    spec["h"] = {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 11,
                 "desc": "TPDU (5) + CUP header (6)"}
    # Fields the UnionPay POS specification defines differently from ISO 8583:1987.
    spec["14"] = _bcd_fixed(4, "Date, expiration (YYMM)")
    # Odd-length fixed numerics are left-aligned (right-padded with 0) in CUP: "051" -> 05 10.
    spec["22"] = dict(_bcd_fixed(3, "POS entry mode"), right_pad="0")
    spec["23"] = dict(_bcd_fixed(3, "Card sequence number"), right_pad="0")
    del spec["22"]["left_pad"], spec["23"]["left_pad"]
    spec["25"] = _bcd_fixed(2, "POS condition code")
    spec["36"] = _bcd_var(104, 2, "Track 3 data (BCD, 'D' separators, like field 35)")
    spec["26"] = _bcd_fixed(2, "POS PIN capture code")
    spec["32"] = _bcd_var(11, 1, "Acquiring institution id")
    spec["44"] = _ascii(25, 2, "Additional response data")
    spec["48"] = _bcd_var(322, 2, "Additional data - settlement totals")
    spec["49"] = _ascii(3, 0, "Currency code, transaction (ASCII in CUP)")
    spec["53"] = _bcd_fixed(16, "Security related control information")
    spec["54"] = _ascii(20, 3, "Balance amount")
    spec["55"] = _binary(255, 3, "ICC data (EMV TLV)")
    spec["60"] = _bcd_var(17, 2, "Reserved: type n2, batch n6, net mgmt n3, read cap n1, fallback n1")
    spec["61"] = _bcd_var(29, 2, "Original message: batch n6, trace n6, date MMDD")
    spec["62"] = _binary(512, 3, "Reserved private: working keys / terminal parameters")
    spec["63"] = _ascii(163, 3, "Reserved private: operator / card organisation")
    spec["64"] = _binary(8, 0, "MAC")
    return spec


DIALECTS: dict[str, Spec] = {
    "iso87ascii": copy.deepcopy(_pyiso_specs.default_ascii),
    "iso87": copy.deepcopy(_pyiso_specs.default),
    "iso87bcd": _iso87bcd(),
    "cup": _cup(),
}

#: Bytes of TPDU+header in front of the MTI (MAC input starts after them).
HEADER_LEN: dict[str, int] = {"iso87ascii": 0, "iso87": 0, "iso87bcd": 0, "cup": 11}

#: Whether binary fields (52/55/64/128) are carried as raw bytes (True) or hex text (iso87ascii).
BINARY_IS_RAW: dict[str, bool] = {"iso87ascii": False, "iso87": True, "iso87bcd": True, "cup": True}


def get_spec(name: str) -> Spec:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; choose one of {sorted(DIALECTS)}") from None


def describe(name: str) -> str:
    """A human-readable table of a dialect (for ``--print-dialect``)."""
    spec = get_spec(name)
    lines = [f"dialect {name}"]
    for key, fs in spec.items():
        if key == "h" and fs["max_len"] == 0:
            continue
        enc = "BCD" if fs["data_enc"] == "b" and fs.get("len_count") == "nibbles" else fs["data_enc"]
        var = {0: "fixed"}.get(fs["len_type"], f"var({fs['len_enc']} x{fs['len_type']})")
        lines.append(f"  {key:>4}  {enc:<6} {var:<14} max {fs['max_len']:<4} {fs.get('desc', '')}")
    return "\n".join(lines)
