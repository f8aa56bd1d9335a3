"""``cup``: a China UnionPay POS terminal dialect.

Wire layout (see ``shared/reference/pos-flows.md`` §B "CUP framing", after openpos ``iso8583.c`` and the
UnionPay POS terminal specification it implements):

* 2-byte binary length (framing), then an 11-byte header carried as field ``h``: the 5-byte TPDU
  (``60`` + destination + source) and the 6-byte application header (application type 60/61, version,
  terminal status, processing requirement — 3 in a response means "sign on again");
* BCD MTI, 8-byte binary bitmap;
* ``n`` fields in BCD (variable ones left-aligned, right-padded with 0), LL/LLL lengths in BCD counting
  digits or characters (bytes for binary fields);
* 37/38/39/41/42/49 ASCII; 52/64 binary; 55 binary BER-TLV; 62 binary (working keys in the sign-on
  response); 60/61 positional subfields; 63 operator / card-organisation code.
"""

from __future__ import annotations

from posguard.iso8583.dialects.common import CUP_RULES, field_55_tlv
from posguard.iso8583.spec import Composite, Dialect, FieldSpec, Subfield


def _n(key: str, desc: str, length: int, *, pad: str = "left", sensitive: str | None = None) -> FieldSpec:
    return FieldSpec(key, desc, length, kind="n", data_enc="bcd", pad=pad,  # type: ignore[arg-type]
                     sensitive=sensitive)  # type: ignore[arg-type]


def _llvar_n(key: str, desc: str, mx: int, lt: int = 2, *, kind: str = "n", sensitive: str | None = None,
             composite: Composite | None = None) -> FieldSpec:
    return FieldSpec(key, desc, mx, kind=kind, data_enc="bcd", len_type=lt, len_enc="bcd", pad="right",
                     sensitive=sensitive, composite=composite)  # type: ignore[arg-type]


def _a(key: str, desc: str, length: int, kind: str = "an") -> FieldSpec:
    return FieldSpec(key, desc, length, kind=kind, data_enc="ascii")


def _llvar_a(key: str, desc: str, mx: int, lt: int = 3, *, composite: Composite | None = None) -> FieldSpec:
    return FieldSpec(key, desc, mx, kind="ans", data_enc="ascii", len_type=lt, len_enc="bcd", composite=composite)


def _b(key: str, desc: str, length: int, lt: int = 0, *, sensitive: str | None = None,
       composite: Composite | None = None) -> FieldSpec:
    return FieldSpec(key, desc, length, kind="b", data_enc="binary", len_type=lt, len_enc="bcd",
                     sensitive=sensitive, composite=composite)  # type: ignore[arg-type]


FIELD_60 = Composite("positional", (
    Subfield("1", 2, "Transaction type code (22 sale, 23 void, 25 refund, 10 pre-auth, 00 network)"),
    Subfield("2", 6, "Batch number"),
    Subfield("3", 3, "Network management information code (001 sign-on, 201 settlement, 301 echo)"),
    Subfield("4", 1, "Terminal read capability", optional=True),
    Subfield("5", 1, "IC card condition code (fallback flag)", optional=True),
    Subfield("6", 1, "Partial approval capability", optional=True),
    Subfield("7", 3, "Account type", optional=True),
))

FIELD_61 = Composite("positional", (
    Subfield("1", 6, "Original batch number"),
    Subfield("2", 6, "Original trace number (STAN)"),
    Subfield("3", 4, "Original transaction date (MMDD)", optional=True),
    Subfield("4", 2, "Original authorisation method", optional=True),
    Subfield("5", 11, "Original authorising institution", optional=True),
))

FIELD_63 = Composite("positional", (
    Subfield("1", 3, "Operator number (request) / card organisation code (response: CUP, VIS, MCC...)",
             kind="ans"),
    Subfield("2", 160, "Additional data", kind="ans", optional=True, variable=True),
))

_FIELDS = [
    _llvar_n("2", "Primary Account Number", 19, sensitive="pan"),
    _n("3", "Processing Code", 6),
    _n("4", "Amount, Transaction", 12),
    _n("11", "System Trace Audit Number", 6),
    _n("12", "Time, Local Transaction (hhmmss)", 6),
    _n("13", "Date, Local Transaction (MMDD)", 4),
    _n("14", "Date, Expiration (YYMM)", 4, sensitive="expiry"),
    _n("15", "Date, Settlement (MMDD)", 4),
    _n("22", "Point-of-Service Entry Mode", 3, pad="right"),
    _n("23", "Card Sequence Number", 3, pad="right"),
    _n("25", "Point-of-Service Condition Code", 2),
    _n("26", "Point-of-Service PIN Capture Code", 2),
    _llvar_n("32", "Acquiring Institution ID Code", 11),
    _llvar_n("35", "Track 2 Data", 37, kind="z", sensitive="track"),
    _llvar_n("36", "Track 3 Data", 104, 3, kind="z", sensitive="track"),
    _a("37", "Retrieval Reference Number", 12),
    _a("38", "Authorization ID Response", 6),
    _a("39", "Response Code", 2),
    _a("41", "Card Acceptor Terminal ID", 8, "ans"),
    _a("42", "Card Acceptor ID Code", 15, "ans"),
    _llvar_a("44", "Additional Response Data (issuer/acquirer codes)", 25, 2),
    _llvar_n("48", "Additional Data - Private (settlement totals)", 322, 3),
    _a("49", "Currency Code, Transaction", 3),
    _b("52", "PIN Data", 8, sensitive="pin"),
    _n("53", "Security Related Control Information", 16, sensitive="pin"),
    _llvar_a("54", "Balance Amount", 20),
    _b("55", "ICC System Related Data", 255, 3, sensitive="icc", composite=field_55_tlv()),
    _llvar_a("58", "PBOC Electronic Data", 100),
    _llvar_n("60", "Reserved Private (type, batch, network code...)", 17, 3, composite=FIELD_60),
    _llvar_n("61", "Original Message (batch, trace, date)", 29, 3, composite=FIELD_61),
    _b("62", "Reserved Private (working keys, terminal parameters)", 512, 3, sensitive="key"),
    _llvar_a("63", "Reserved Private (operator / card organisation)", 163, composite=FIELD_63),
    _b("64", "Message Authentication Code", 8, sensitive="mac"),
]

CUP = Dialect(
    name="cup",
    desc="China UnionPay POS terminal: TPDU + 6-byte header (field h), BCD MTI and numerics, binary bitmap",
    fields={f.key: f for f in _FIELDS},
    mti_enc="bcd",
    bitmap_enc="binary",
    header_len=11,
    header_enc="binary",
    rules=CUP_RULES,
    reversal_link="stan",
    reversal_done_codes=("00", "12", "25"),
    framing="binary2",
    source="shared/reference/pos-flows.md §B (CUP framing, key fields, CUP transaction table) [OP, HDR, JS]",
    extra={"tpdu": "6000030000", "header": "603100310000"},
)
