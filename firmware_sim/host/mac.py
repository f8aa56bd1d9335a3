"""The simulated host's own MAC implementation (kept separate from posguard's on purpose).

``x919``    ISO 9797-1 MAC algorithm 3 / ANSI X9.19 retail MAC: single-DES CBC with K1, final block
            decrypt K2, encrypt K1; padding method 1 (zeros) or 2 (0x80 then zeros).
``cbc``     ISO 9797-1 MAC algorithm 1 with single DES (K1), padding 1.
``cup-ecb`` UnionPay "ECB" MAC: XOR the zero-padded 8-byte blocks, expand to 16 hex characters,
            encrypt the first 8, XOR with the last 8, encrypt again, expand, keep the first 8 characters.
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

ALGORITHMS = ("x919", "cbc", "cup-ecb")


def _ede(key: bytes, block: bytes, decrypt: bool = False) -> bytes:
    k = key * 3 if len(key) == 8 else (key + key[:8] if len(key) == 16 else key)
    c = Cipher(TripleDES(k), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(block) + op.finalize()


def _pad(data: bytes, method: int) -> bytes:
    if method == 2:
        data = data + b"\x80"
    elif not data:
        data = bytes(8)
    return data + bytes(-len(data) % 8)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _cbc(k1: bytes, data: bytes) -> bytes:
    y = bytes(8)
    for i in range(0, len(data), 8):
        y = _ede(k1, _xor(y, data[i : i + 8]))
    return y


def compute(algorithm: str, key: bytes, data: bytes, padding: int = 1) -> bytes:
    if algorithm == "x919":
        if len(key) != 16:
            raise ValueError("x919 needs a 16-byte (double-length) key")
        y = _cbc(key[:8], _pad(data, padding))
        return _ede(key[:8], _ede(key[8:], y, decrypt=True))
    if algorithm == "cbc":
        return _cbc(key[:8], _pad(data, padding))
    if algorithm == "cup-ecb":
        padded = data + bytes(-len(data) % 8)
        acc = bytes(8)
        for i in range(0, len(padded), 8):
            acc = _xor(acc, padded[i : i + 8])
        hexed = acc.hex().upper().encode()
        step = _ede(key, hexed[:8])
        step = _ede(key, _xor(step, hexed[8:]))
        return step.hex().upper().encode()[:8]
    raise ValueError(f"unknown MAC algorithm {algorithm!r}; choose one of {ALGORITHMS}")


# -- what the host requires, per dialect (the strict default of SimConfig.security) --------------------------
#: The MAC algorithm each dialect's acquirer uses with the working MAC key of the sign-on: CUP the UnionPay POS
#: "ECB" MAC (cash2one/bank_interface ``unionpaypos.cpp``, ``../shared/reference/emv-keys.md`` §E); the ISO
#: dialects ANSI X9.19 (ISO 9797-1 algorithm 3) in field 64, or 128 when a secondary bitmap is present.
DIALECT_ALGORITHM = {"cup": "cup-ecb", "iso87": "x919", "iso87ascii": "x919", "iso87bcd": "x919"}

#: Requests that must carry a MAC (their responses carry one too): the financial requests, pre-authorisations,
#: advices and refunds (CUP 0220), reversals and reversal advices, batch/TC uploads and settlement, and their
#: repeats (``../shared/reference/pos-flows.md`` §B: "MAC covers MTI through the end"; openpos sends 64 on all
#: of these). Network management (08xx) carries none: the keys are what it delivers.
MACED_MTIS = frozenset({"0100", "0200", "0201", "0220", "0221", "0320", "0321", "0400", "0401", "0420", "0421",
                        "0500"})


def required(mti: str) -> bool:
    """True when a request of ``mti`` must carry a MAC under the strict default."""
    return mti in MACED_MTIS
