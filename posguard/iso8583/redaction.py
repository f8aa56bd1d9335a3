"""Every masked view of a message, derived from what the dialect declares.

The dialect's field table says which fields are card data (``FieldSpec.sensitive``); the class's
:data:`~posguard.sensitive.TREATMENTS` entry says what that means. From those two declarations:

* :func:`redact_fields` — the journal's and the logs' view: card data shown as its class says, field 55
  reduced to its tag list, numeric fields as they are (amounts, dates, counters, references), and every
  other field scrubbed of PAN-shaped digit runs;
* :func:`evidence_image` — the hex wire image an incident keeps as evidence: the message minus every field
  whose class is not kept in evidence (PAN, track, expiry, chip data, PIN, keys);
* :func:`capture_drops` — the fields a capture file leaves out (PIN blocks, keys); the rest is kept with
  its PANs replaced by test PANs.

>>> from posguard.iso8583 import Message
>>> m = Message("0200", {"2": "4761739001010119", "4": "000000001000", "11": "000001"}, dialect="iso87")
>>> redact_fields(m.fields(), m.dialect)["2"]
'476173******0119'
>>> sensitive_fields(m.dialect)["35"], sensitive_fields(m.dialect)["52"]
('track', 'pin')
>>> evidence_image(m) == Message("0200", {"4": "000000001000", "11": "000001"}, dialect="iso87").encode().hex().upper()
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from posguard.iso8583.dialects import dialect_names, get_dialect
from posguard.iso8583.spec import Dialect
from posguard.iso8583.tlv import parse_tlv
from posguard.sensitive import TREATMENTS, mask_value, scrub

if TYPE_CHECKING:
    from posguard.iso8583.message import Message

__all__ = ["sensitive_fields", "redact_fields", "evidence_image", "capture_drops", "NUMERIC_KINDS"]

#: content classes whose values are numbers (amounts, dates, counters, codes): never free text, never a PAN
#: unless the dialect declares the field sensitive
NUMERIC_KINDS = frozenset({"n", "xn"})


_DECLARED: dict[int, tuple[Dialect, Mapping[str, str]]] = {}


def sensitive_fields(dialect: Dialect) -> Mapping[str, str]:
    """``{field: sensitivity class}`` as the dialect declares it (read once per dialect object)."""
    hit = _DECLARED.get(id(dialect))
    if hit is None or hit[0] is not dialect:
        hit = (dialect, {k: f.sensitive for k, f in dialect.fields.items() if f.sensitive})
        _DECLARED[id(dialect)] = hit
    return hit[1]


def _all_builtin() -> Mapping[str, str]:
    """For fields whose dialect is not known: a field is card data if any registered dialect says so."""
    out: dict[str, str] = {}
    for name in dialect_names():
        for k, cls in sensitive_fields(get_dialect(name)).items():
            out.setdefault(k, cls)
    return out


def _icc_tags(value: str | bytes) -> str:
    try:
        raw = value if isinstance(value, bytes) else bytes.fromhex(value)
        return "<ICC " + " ".join(t.tag for t in parse_tlv(raw)) + ">"
    except Exception:  # noqa: BLE001 - malformed ICC data is hidden whole
        return f"<ICC {len(value)} bytes, unparsed>"


def redact_fields(fields: Mapping[str, str | bytes], dialect: Dialect | None = None) -> dict[str, str]:
    """The fields as the journal and the logs may show them (see the module docstring).

    Without ``dialect`` every field any registered dialect declares sensitive is treated as such.
    """
    declared = sensitive_fields(dialect) if dialect is not None else _all_builtin()
    out: dict[str, str] = {}
    for key, value in fields.items():
        k = str(key)
        text = value.hex().upper() if isinstance(value, bytes) else str(value)
        cls = declared.get(k)
        if cls is not None:
            out[k] = _icc_tags(value) if TREATMENTS[cls].shown == "tags" else mask_value(cls, text)
            continue
        spec = dialect.fields.get(k) if dialect is not None else None
        out[k] = text if spec is not None and spec.kind in NUMERIC_KINDS else scrub(text)
    return out


def evidence_image(message: Message) -> str:
    """The message as sent, minus every field its class keeps out of evidence, as upper-case hex.

    Empty when the dialect cannot encode the message without those fields (it says so by refusing).
    """
    declared = sensitive_fields(message.dialect)
    copy = message.copy()
    for key in list(copy.keys()):
        cls = declared.get(key)
        if cls is not None and not TREATMENTS[cls].in_evidence:
            del copy[key]
    try:
        return copy.encode().hex().upper()
    except Exception:  # noqa: BLE001 - a dialect may insist on a removed field: show nothing rather than it
        return ""


def capture_drops(message: Message) -> list[str]:
    """The fields of ``message`` that a capture file leaves out (their class is never stored)."""
    declared = sensitive_fields(message.dialect)
    return [k for k in message.keys() if k in declared and not TREATMENTS[declared[k]].in_capture]
