"""ISO 8583:1987 in the two layouts pyiso8583 ships: ``iso87ascii`` and ``iso87`` (binary bitmaps/52/55/64).

The field table is data: number, content class, length type (0 fixed, 2 LL, 3 LLL), maximum length and
description. ``iso87ascii`` is byte-identical to pyiso8583's ``specs.default_ascii``; ``iso87`` to its
``specs.default`` (ASCII data, binary bitmaps and binary 52/55/64/65/96/128). Both are checked against
pyiso8583 field by field and message by message in the test suite.
"""

from __future__ import annotations

from posguard.iso8583.dialects.common import ISO_RULES, field_55_tlv, field_90
from posguard.iso8583.spec import Dialect, FieldSpec

# number: (kind, len_type, max_len, description)
ISO87_TABLE: dict[int, tuple[str, int, int, str]] = {
    2: ("n", 2, 19, "Primary Account Number (PAN)"),
    3: ("n", 0, 6, "Processing Code"),
    4: ("n", 0, 12, "Amount, Transaction"),
    5: ("n", 0, 12, "Amount, Settlement"),
    6: ("n", 0, 12, "Amount, Cardholder Billing"),
    7: ("n", 0, 10, "Transmission Date and Time"),
    8: ("n", 0, 8, "Amount, Cardholder Billing Fee"),
    9: ("n", 0, 8, "Conversion Rate, Settlement"),
    10: ("n", 0, 8, "Conversion Rate, Cardholder Billing"),
    11: ("n", 0, 6, "System Trace Audit Number"),
    12: ("n", 0, 6, "Time, Local Transaction"),
    13: ("n", 0, 4, "Date, Local Transaction"),
    14: ("n", 0, 4, "Date, Expiration"),
    15: ("n", 0, 4, "Date, Settlement"),
    16: ("n", 0, 4, "Date, Conversion"),
    17: ("n", 0, 4, "Date, Capture"),
    18: ("n", 0, 4, "Merchant Type"),
    19: ("n", 0, 3, "Acquiring Institution Country Code"),
    20: ("n", 0, 3, "PAN Country Code"),
    21: ("n", 0, 3, "Forwarding Institution Country Code"),
    22: ("n", 0, 3, "Point-of-Service Entry Mode"),
    23: ("n", 0, 3, "PAN Sequence Number"),
    24: ("n", 0, 3, "Network International ID (NII)"),
    25: ("n", 0, 2, "Point-of-Service Condition Code"),
    26: ("n", 0, 2, "Point-of-Service Capture Code"),
    27: ("n", 0, 1, "Authorizing ID Response Length"),
    28: ("xn", 0, 9, "Amount, Transaction Fee"),
    29: ("xn", 0, 9, "Amount, Settlement Fee"),
    30: ("xn", 0, 9, "Amount, Transaction Processing Fee"),
    31: ("xn", 0, 9, "Amount, Settlement Processing Fee"),
    32: ("n", 2, 11, "Acquiring Institution ID Code"),
    33: ("n", 2, 11, "Forwarding Institution ID Code"),
    34: ("ns", 2, 28, "Primary Account Number, Extended"),
    35: ("z", 2, 37, "Track 2 Data"),
    36: ("z", 3, 104, "Track 3 Data"),
    37: ("an", 0, 12, "Retrieval Reference Number"),
    38: ("an", 0, 6, "Authorization ID Response"),
    39: ("an", 0, 2, "Response Code"),
    40: ("an", 0, 3, "Service Restriction Code"),
    41: ("ans", 0, 8, "Card Acceptor Terminal ID"),
    42: ("ans", 0, 15, "Card Acceptor ID Code"),
    43: ("ans", 0, 40, "Card Acceptor Name/Location"),
    44: ("ans", 2, 25, "Additional Response Data"),
    45: ("ans", 2, 76, "Track 1 Data"),
    46: ("ans", 3, 999, "Additional Data - ISO"),
    47: ("ans", 3, 999, "Additional Data - National"),
    48: ("ans", 3, 999, "Additional Data - Private"),
    49: ("an", 0, 3, "Currency Code, Transaction"),
    50: ("an", 0, 3, "Currency Code, Settlement"),
    51: ("an", 0, 3, "Currency Code, Cardholder Billing"),
    52: ("b", 0, 8, "PIN"),
    53: ("n", 0, 16, "Security-Related Control Information"),
    54: ("ans", 3, 240, "Additional Amounts"),
    55: ("b", 3, 255, "ICC data"),
    **{n: ("ans", 3, 999, d) for n, d in (
        (56, "Reserved ISO"), (57, "Reserved National"), (58, "Reserved National"),
        (59, "Reserved National"), (60, "Reserved National"), (61, "Reserved Private"),
        (62, "Reserved Private"), (63, "Reserved Private"))},
    64: ("b", 0, 8, "MAC"),
    65: ("b", 0, 8, "Bitmap, Extended"),
    66: ("n", 0, 1, "Settlement Code"),
    67: ("n", 0, 2, "Extended Payment Code"),
    68: ("n", 0, 3, "Receiving Institution Country Code"),
    69: ("n", 0, 3, "Settlement Institution Country Code"),
    70: ("n", 0, 3, "Network Management Information Code"),
    71: ("n", 0, 4, "Message Number"),
    72: ("n", 0, 4, "Message Number, Last"),
    73: ("n", 0, 6, "Date, Action"),
    74: ("n", 0, 10, "Credits, Number"),
    75: ("n", 0, 10, "Credits, Reversal Number"),
    76: ("n", 0, 10, "Debits, Number"),
    77: ("n", 0, 10, "Debits, Reversal Number"),
    78: ("n", 0, 10, "Transfer, Number"),
    79: ("n", 0, 10, "Transfer, Reversal Number"),
    80: ("n", 0, 10, "Inquiries, Number"),
    81: ("n", 0, 10, "Authorizations, Number"),
    82: ("n", 0, 12, "Credits, Processing Fee Amount"),
    83: ("n", 0, 12, "Credits, Transaction Fee Amount"),
    84: ("n", 0, 12, "Debits, Processing Fee Amount"),
    85: ("n", 0, 12, "Debits, Transaction Fee Amount"),
    86: ("n", 0, 16, "Credits, Amount"),
    87: ("n", 0, 16, "Credits, Reversal Amount"),
    88: ("n", 0, 16, "Debits, Amount"),
    89: ("n", 0, 16, "Debits, Reversal Amount"),
    90: ("n", 0, 42, "Original Data Elements"),
    91: ("an", 0, 1, "File Update Code"),
    92: ("an", 0, 2, "File Security Code"),
    93: ("an", 0, 5, "Response Indicator"),
    94: ("an", 0, 7, "Service Indicator"),
    95: ("an", 0, 42, "Replacement Amounts"),
    96: ("b", 0, 8, "Message Security Code"),
    97: ("xn", 0, 17, "Amount, Net Settlement"),
    98: ("ans", 0, 25, "Payee"),
    99: ("n", 2, 11, "Settlement Institution ID Code"),
    100: ("n", 2, 11, "Receiving Institution ID Code"),
    101: ("ans", 2, 17, "File Name"),
    102: ("ans", 2, 28, "Account ID 1"),
    103: ("ans", 2, 28, "Account ID 2"),
    104: ("ans", 3, 100, "Transaction Description"),
    **{n: ("ans", 3, 999, "Reserved for ISO Use") for n in range(105, 112)},
    **{n: ("ans", 3, 999, "Reserved for National Use") for n in range(112, 120)},
    **{n: ("ans", 3, 999, "Reserved for Private Use") for n in range(120, 128)},
    128: ("b", 0, 8, "MAC"),
}

SENSITIVE = {
    "2": "pan", "14": "expiry", "34": "pan", "35": "track", "36": "track", "45": "track",
    "52": "pin", "53": "pin", "55": "icc", "64": "mac", "96": "key", "128": "mac",
}


def _build(binary: bool) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for n, (kind, lt, mx, desc) in ISO87_TABLE.items():
        key = str(n)
        composite = None
        if n == 55:
            composite = field_55_tlv()
        elif n == 90:
            composite = field_90()
        if kind == "b":
            if binary:
                out[key] = FieldSpec(key, desc, mx, kind="b", data_enc="binary", len_type=lt,
                                     sensitive=SENSITIVE.get(key), composite=composite)  # type: ignore[arg-type]
            else:  # hex text, twice the length
                out[key] = FieldSpec(key, desc, mx * 2, kind="b", data_enc="ascii", len_type=lt,
                                     sensitive=SENSITIVE.get(key), composite=composite)  # type: ignore[arg-type]
            continue
        out[key] = FieldSpec(key, desc, mx, kind=kind, data_enc="ascii", len_type=lt,
                             sensitive=SENSITIVE.get(key), composite=composite)  # type: ignore[arg-type]
    return out


def _dialect(name: str, desc: str, *, binary: bool, source: str) -> Dialect:
    return Dialect(
        name=name, desc=desc, fields=_build(binary=binary), mti_enc="ascii",
        bitmap_enc="binary" if binary else "ascii", rules=ISO_RULES, framing="binary2", source=source,
    )


ISO87ASCII = _dialect(
    "iso87ascii", "ISO 8583:1987, all ASCII, hex bitmaps (= pyiso8583 specs.default_ascii)", binary=False,
    source="ISO 8583:1987 field table; layout of pyiso8583 4.0.1 specs.default_ascii",
)
ISO87 = _dialect(
    "iso87", "ISO 8583:1987, ASCII data, binary bitmaps and binary 52/55/64 (= pyiso8583 specs.default)",
    binary=True, source="ISO 8583:1987 field table; layout of pyiso8583 4.0.1 specs.default",
)
