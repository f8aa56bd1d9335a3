"""``iso87bcd``: the jPOS ``ISO87BPackager`` layout.

BCD MTI, binary bitmap (primary + secondary), BCD numerics (fixed: left-padded with 0; LLNUM: BCD length
byte counting digits, right-padded), ASCII text with BCD length prefixes (IFB_LLCHAR / IFB_LLLCHAR),
fixed text right-padded with spaces (IF_CHAR), binary 52/64/96/128, and the signed amounts (IFB_AMOUNT:
a C/D character followed by BCD digits). Source: jPOS ``org.jpos.iso.packager.ISO87BPackager`` field table
and the semantics of its field packagers (IFB_NUMERIC, IFB_LLNUM, IF_CHAR, IFB_LLCHAR, IFB_LLLCHAR,
IFB_BINARY, IFB_AMOUNT).
"""

from __future__ import annotations

from posguard.iso8583.dialects.common import ISO_RULES, field_55_tlv, field_90
from posguard.iso8583.dialects.iso87 import ISO87_TABLE, SENSITIVE
from posguard.iso8583.spec import Composite, Dialect, FieldSpec

# The packager of each field, in jPOS terms, with its length: the layout of ISO87BPackager.
_LAYOUT = (
    "2:LLNUM19 3:NUM6 4:NUM12 5:NUM12 6:NUM12 7:NUM10 8:NUM8 9:NUM8 10:NUM8 11:NUM6 12:NUM6 13:NUM4 "
    "14:NUM4 15:NUM4 16:NUM4 17:NUM4 18:NUM4 19:NUM3 20:NUM3 21:NUM3 22:NUM3 23:NUM3 24:NUM3 25:NUM2 "
    "26:NUM2 27:NUM1 28:AMOUNT9 29:AMOUNT9 30:AMOUNT9 31:AMOUNT9 32:LLNUM11 33:LLNUM11 34:LLCHAR28 "
    "35:LLNUM37 36:LLLCHAR104 37:CHAR12 38:CHAR6 39:CHAR2 40:CHAR3 41:CHAR8 42:CHAR15 43:CHAR40 "
    "44:LLCHAR25 45:LLCHAR76 46:LLLCHAR999 47:LLLCHAR999 48:LLLCHAR999 49:CHAR3 50:CHAR3 51:CHAR3 "
    "52:BINARY8 53:NUM16 54:LLLCHAR120 55:LLLCHAR999 56:LLLCHAR999 57:LLLCHAR999 58:LLLCHAR999 "
    "59:LLLCHAR999 60:LLLCHAR999 61:LLLCHAR999 62:LLLCHAR999 63:LLLCHAR999 64:BINARY8 65:BINARY1 "
    "66:NUM1 67:NUM2 68:NUM3 69:NUM3 70:NUM3 71:NUM4 72:NUM4 73:NUM6 74:NUM10 75:NUM10 76:NUM10 "
    "77:NUM10 78:NUM10 79:NUM10 80:NUM10 81:NUM10 82:NUM12 83:NUM12 84:NUM12 85:NUM12 86:NUM16 "
    "87:NUM16 88:NUM16 89:NUM16 90:NUM42 91:CHAR1 92:CHAR2 93:CHAR6 94:CHAR7 95:CHAR42 96:BINARY16 "
    "97:AMOUNT17 98:CHAR25 99:LLNUM11 100:LLNUM11 101:LLCHAR17 102:LLCHAR28 103:LLCHAR28 104:LLLCHAR100 "
    + " ".join(f"{n}:LLLCHAR999" for n in range(105, 128))
    + " 128:BINARY8"
)


def _field(n: int, packager: str) -> FieldSpec:
    key = str(n)
    kind_name = packager.rstrip("0123456789")
    length = int(packager[len(kind_name):])
    desc = ISO87_TABLE[n][3]
    iso_kind = ISO87_TABLE[n][0]
    sensitive = SENSITIVE.get(key)
    composite: Composite | None = field_90() if n == 90 else (field_55_tlv() if n == 55 else None)
    if kind_name == "NUM":
        return FieldSpec(key, desc, length, kind="n", data_enc="bcd", pad="left", fixed_pad="0",
                         sensitive=sensitive, composite=composite)  # type: ignore[arg-type]
    if kind_name == "LLNUM":
        return FieldSpec(key, desc, length, kind="z" if n == 35 else "n", data_enc="bcd", len_type=2,
                         len_enc="bcd", pad="right", sensitive=sensitive)  # type: ignore[arg-type]
    if kind_name == "AMOUNT":
        return FieldSpec(key, desc, length, kind="xn", data_enc="xbcd", pad="left")
    if kind_name == "CHAR":
        return FieldSpec(key, desc, length, kind=iso_kind if iso_kind in ("an", "ans") else "ans",
                         data_enc="ascii", fixed_pad=" ", sensitive=sensitive)  # type: ignore[arg-type]
    if kind_name in ("LLCHAR", "LLLCHAR"):
        return FieldSpec(key, desc, length, kind="ans", data_enc="ascii",
                         len_type=2 if kind_name == "LLCHAR" else 3, len_enc="bcd",
                         sensitive=sensitive, composite=composite)  # type: ignore[arg-type]
    if kind_name == "BINARY":
        return FieldSpec(key, desc, length, kind="b", data_enc="binary", sensitive=sensitive)  # type: ignore[arg-type]
    raise ValueError(f"unknown packager {packager}")


def _build() -> dict[str, FieldSpec]:
    out = {}
    for item in _LAYOUT.split():
        n, packager = item.split(":")
        out[n] = _field(int(n), packager)
    return out


ISO87BCD = Dialect(
    name="iso87bcd",
    desc="ISO 8583:1987 binary layout of jPOS ISO87BPackager (BCD numerics and lengths, binary bitmap)",
    fields=_build(),
    mti_enc="bcd",
    bitmap_enc="binary",
    rules=ISO_RULES,
    framing="binary2",
    source="jPOS org.jpos.iso.packager.ISO87BPackager",
)
