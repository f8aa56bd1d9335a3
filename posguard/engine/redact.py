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


def masked_json(mti: str, fields: Mapping[str, str | bytes], dialect: Dialect | None = None) -> str:
    return json.dumps({"t": mti, **redact_fields(fields, dialect)}, sort_keys=True)


def masked_message(message: Message) -> str:
    """The journal form of a codec message: masked JSON of its fields (bitmap and header left out)."""
    return masked_json(message.mti, {str(k): v for k, v in message.fields().items()}, message.dialect)
