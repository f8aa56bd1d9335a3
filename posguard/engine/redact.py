"""Masked forms of ISO 8583 messages for the journal and logs.

Only masked content is journaled. Which fields are card data and how each is shown is declared by the
dialect and :data:`posguard.sensitive.TREATMENTS`; :func:`posguard.iso8583.redaction.redact_fields`
applies them. Here they are only put in the journal's JSON form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from posguard.iso8583.redaction import redact_fields

if TYPE_CHECKING:
    from posguard.iso8583.message import Message
    from posguard.iso8583.spec import Dialect

__all__ = ["masked_json", "masked_message"]


def masked_json(mti: str, fields: Mapping[str, str | bytes], dialect: Dialect | None = None,
                keys_field: str | None = None) -> str:
    """``keys_field``: a field that carries working keys in this message (a sign-on answer's key exchange, which
    a dialect like ISO 8583:1987 leaves to private agreement in 48, so its field table cannot declare it): shown
    only as its length, never as its value, even encrypted under the TMK."""
    shown = redact_fields(fields, dialect)
    if keys_field is not None and keys_field in shown:
        shown[keys_field] = f"<working keys under the TMK: {len(fields[keys_field])} characters, not journaled>"
    return json.dumps({"t": mti, **shown}, sort_keys=True)


def masked_message(message: Message, keys_field: str | None = None) -> str:
    """The journal form of a codec message: masked JSON of its fields (bitmap and header left out)."""
    return masked_json(message.mti, {str(k): v for k, v in message.fields().items()}, message.dialect, keys_field)
