"""Card cryptography: EMV common session key derivation and the ISO 9797-1 algorithm 3 MAC.

Keys are per-profile *test* keys. The application cryptogram (ARQC/TC/AAC) is

    AC = MAC_alg3(SK_ATC, data || 80 00..)

with ``SK_ATC`` derived from the card master key and the ATC (EMV Book 2, A1.3.1), so the value
changes with the ATC and with every byte of the terminal data (amount, unpredictable number...).
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

BLOCK = 8


def _ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or 2-key 3DES (16-byte key), as 3-key 3DES with repeated key parts."""
    full = key * 3 if len(key) == 8 else key + key[:8] if len(key) == 16 else key
    cipher = Cipher(TripleDES(full), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx.update(block) + ctx.finalize()


def pad_method2(data: bytes) -> bytes:
    """ISO 9797-1 padding method 2: append 0x80, then zeros to a multiple of 8."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % BLOCK)


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO 9797-1 MAC algorithm 3 (single-DES CBC with K1, final 3DES with K1/K2), padding method 2."""
    if len(key) != 16:
        raise ValueError("the MAC key must be 16 bytes (double-length DES)")
    k1, k2 = key[:8], key[8:]
    chain = bytes(BLOCK)
    padded = pad_method2(data)
    for i in range(0, len(padded), BLOCK):
        block = bytes(a ^ b for a, b in zip(chain, padded[i : i + BLOCK], strict=True))
        chain = _ecb(k1, block)
    return _ecb(k1, _ecb(k2, chain, decrypt=True))


def session_key(master_key: bytes, atc: int) -> bytes:
    """EMV common session key derivation: SK = 3DES_MK(ATC||F0||00*5) || 3DES_MK(ATC||0F||00*5)."""
    if len(master_key) != 16:
        raise ValueError("the card master key must be 16 bytes")
    atc_bytes = atc.to_bytes(2, "big")
    left = _ecb(master_key, atc_bytes + b"\xf0" + bytes(5))
    right = _ecb(master_key, atc_bytes + b"\x0f" + bytes(5))
    return left + right


def application_cryptogram(master_key: bytes, atc: int, data: bytes) -> bytes:
    """8-byte AC over ``data`` (CDOL data || AIP || ATC || CVR) with the ATC's session key."""
    return retail_mac(session_key(master_key, atc), data)
