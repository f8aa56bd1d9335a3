"""Sealing: the few journal values that must be re-sent after a crash are stored encrypted.

A reversal must go out after a restart with the original's field 2, and a void without the card present
needs the PAN; the journal may not hold them in clear. :class:`Sealer` encrypts with AES-256-GCM under the
terminal's data key, binding each blob to its row (``aad``) so a blob cannot be moved to another row.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Sealer", "SealError"]


class SealError(Exception):
    """A sealed journal value cannot be opened: wrong data key, or the row was tampered with."""


class Sealer:
    """AES-256-GCM with a random 96-bit nonce per blob: ``nonce || ciphertext+tag``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the journal data key must be 32 bytes (AES-256); generate one with os.urandom(32)")
        self._aead = AESGCM(key)

    def seal(self, value: Any, aad: str) -> bytes:
        nonce = os.urandom(12)
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return nonce + self._aead.encrypt(nonce, data, aad.encode())

    def open(self, blob: bytes, aad: str) -> Any:
        try:
            data = self._aead.decrypt(blob[:12], blob[12:], aad.encode())
        except InvalidTag:
            raise SealError(
                f"sealed value for {aad} does not open: the terminal data key changed or the journal row "
                "was altered; restore the key file or raise an incident"
            ) from None
        return json.loads(data)

    def __repr__(self) -> str:
        return "Sealer(<key hidden>)"
