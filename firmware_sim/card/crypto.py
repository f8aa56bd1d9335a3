"""Card cryptography: EMV common session key derivation, the ISO 9797-1 algorithm 3 MAC, ARPC method 1.

Keys are per-profile *test* keys. The card's cryptogram version (one for every profile, stated here once;
the issuer in ``firmware_sim/host/issuer.py`` implements the same method independently, with pyemv):

* ICC master key (``master_key`` of the profile): EMV Book 2 A1.4.1 Option A from the issuer master key
  of the card file, computed at personalisation (the card holds only its own ICC MK);
* session key ``SK_ATC``: EMV Book 2 A1.3.1 common session key derivation, R = ATC || 00*6;
* application cryptogram (ARQC/TC/AAC), EMV Book 2 8.1 / A1.2.1::

      AC = MAC_alg3(SK_ATC, D || 80 00..),   D = Table 26 data || AIP || ATC || CVR

  where the Table 26 data (9F02 9F03 9F1A 95 5F2A 9A 9C 9F37, EMV Book 2 8.1.1 "recommended minimum set")
  is taken from the CDOL data the terminal sent, so the AC changes with the amount, the unpredictable number,
  the ATC and the card's own verdict (CVR, the last 4 bytes of the IAD 9F10);
* ARPC method 1 (EMV Book 2 8.2.1): ``ARPC = 3DES(SK_ATC, ARQC XOR (ARC || 00*6))``;
* the CVN: every profile uses this one method (call it the simulator's CVN; it is EMV CCD-like: Option A
  ICC MK, common session key, Table 26 data, ARPC method 1). The DKI/CVN bytes of a profile's
  ``iad_prefix`` only make 9F10 look like that scheme's IAD; neither card nor issuer interprets them;
* issuer script MAC (EMV Book 2 9.2.3, simplified): MAC_alg3 over ``CLA INS P1 P2 Lc || ATC || ARQC ||
  data`` under ``SK_SM``, the common session key derived with R = ARQC (Book 2 A1.3.1) from the same ICC MK
  (a real card has separate SMI/SMC master keys; one key is the documented simplification here).
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


def common_session_key(master_key: bytes, r: bytes) -> bytes:
    """EMV Book 2 A1.3.1: SK = 3DES_MK(R0 R1 F0 R3..R7) || 3DES_MK(R0 R1 0F R3..R7), R of 8 bytes."""
    if len(master_key) != 16:
        raise ValueError("the card master key must be 16 bytes")
    if len(r) != BLOCK:
        raise ValueError("the diversification value R must be 8 bytes")
    left = _ecb(master_key, r[:2] + b"\xf0" + r[3:])
    right = _ecb(master_key, r[:2] + b"\x0f" + r[3:])
    return left + right


def session_key(master_key: bytes, atc: int) -> bytes:
    """The AC session key of an ATC: common session key with R = ATC || 00*6."""
    return common_session_key(master_key, atc.to_bytes(2, "big") + bytes(6))


def arpc_method1(master_key: bytes, atc: int, arqc: bytes, arc: bytes) -> bytes:
    """ARPC method 1 (EMV Book 2 8.2.1): 3DES(SK_ATC, ARQC XOR (ARC || 00*6))."""
    if len(arqc) != BLOCK or len(arc) != 2:
        raise ValueError("ARPC method 1 needs an 8-byte ARQC and a 2-byte ARC")
    block = bytes(a ^ b for a, b in zip(arqc, arc + bytes(6), strict=True))
    return _ecb(session_key(master_key, atc), block)


def script_mac(master_key: bytes, arqc: bytes, header: bytes, atc: int, data: bytes) -> bytes:
    """8-byte secure messaging MAC of an issuer script command (see the module docstring)."""
    return retail_mac(common_session_key(master_key, arqc), header + atc.to_bytes(2, "big") + arqc + data)


def application_cryptogram(master_key: bytes, atc: int, data: bytes) -> bytes:
    """8-byte AC over ``data`` (CDOL data || AIP || ATC || CVR) with the ATC's session key."""
    return retail_mac(session_key(master_key, atc), data)
