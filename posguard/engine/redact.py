"""Masked forms of ISO 8583 messages for the journal and logs.

Only masked content is journaled: PAN masked (6+4), track data and PIN block hidden, field 55 reduced
to its tag list, expiry and CVV-bearing fields hidden. A last pass masks any 12..19 digit run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from posguard.iso8583.tlv import parse_tlv
from posguard.sensitive import mask_digits_in_text, mask_pan, mask_track1, mask_track2

if TYPE_CHECKING:
    from posguard.iso8583.message import Message

__all__ = ["mask_fields", "masked_json", "masked_message", "SENSITIVE_FIELDS"]

#: field -> how it is shown
SENSITIVE_FIELDS = {"2": "pan", "14": "hide", "35": "track2", "36": "hide", "45": "track1", "52": "hide",
                    "53": "hide", "55": "icc"}
#: fields whose long digit runs are amounts, dates, references or totals, never a PAN
_NUMERIC_SAFE = frozenset({"3", "4", "5", "6", "7", "11", "12", "13", "15", "18", "22", "23", "24", "25", "32",
                           "33", "37", "38", "39", "41", "42", "48", "49", "60", "61", "64", "70", "90", "128"})


def _icc_tags(value: str | bytes) -> str:
    try:
        raw = value if isinstance(value, bytes) else bytes.fromhex(value)
        return "<ICC " + " ".join(t.tag for t in parse_tlv(raw)) + ">"
    except Exception:  # noqa: BLE001 - malformed ICC data is hidden whole
        return f"<ICC {len(value)} bytes, unparsed>"


def mask_fields(fields: Mapping[str, str | bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in fields.items():
        how = SENSITIVE_FIELDS.get(str(key))
        text = value.hex().upper() if isinstance(value, bytes) else str(value)
        if how == "pan":
            text = mask_pan(text)
        elif how == "track2":
            text = mask_track2(text)
        elif how == "track1":
            text = mask_track1(text)
        elif how == "icc":
            text = _icc_tags(value)
        elif how == "hide":
            text = "*" * len(text)
        out[str(key)] = text if str(key) in _NUMERIC_SAFE else mask_digits_in_text(text)
    return out


def masked_json(mti: str, fields: Mapping[str, str | bytes]) -> str:
    return json.dumps({"t": mti, **mask_fields(fields)}, sort_keys=True)


def masked_message(message: Message) -> str:
    """The journal form of a codec message: masked JSON of its fields (bitmap and header left out)."""
    return masked_json(message.mti, {str(k): v for k, v in message.fields().items()})
