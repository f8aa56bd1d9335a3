"""Message authentication codes for the host link.

* ``x919`` — ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", ANSI X9.19): single-DES CBC under K1 over every
  block, then the last result is decrypted under K2 and encrypted under K1 (2-key 3DES on the final block).
* ``cbc`` — ISO/IEC 9797-1 MAC algorithm 1 with single DES (the "single-DES CBC" some CUP acquirers use).
* ``cup-ecb`` — the UnionPay POS "ECB" MAC: XOR all zero-padded 8-byte blocks, expand the result to 16
  upper-case hex characters, encrypt the first 8, XOR with the last 8, encrypt again, expand to hex and keep
  the first 8 characters (8 ASCII bytes on the wire). With a 16-byte key the encryptions are 2-key 3DES.

Padding (``x919`` and ``cbc``): method 1 = zero bytes up to a block boundary (empty data = one zero block),
method 2 = one 0x80 byte then zeros.

Single DES is computed as TripleDES with ``K|K|K`` (EDE with equal keys degenerates to DES), 2-key 3DES as
``K1|K2|K1``; both through the ``cryptography`` package's decrepit TripleDES. The CBC chain is one CBC pass;
ECB contexts are set up once per key and thread and reused (``benchmarks/bench_mac.py``: a MAC of a 0200 costs
about what a bare TDES-CBC of the same bytes does).

Keys guard themselves: :class:`MacKey` shows only its key check value in ``repr``/``str``.

>>> key = MacKey.from_hex("0123456789ABCDEFFEDCBA9876543210")
>>> key
MacKey(len=16, kcv=08D7B4)
>>> MacScheme("x919", key).compute(b"Now is the time for all ").hex()[:8]
'a1c72e74'
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

__all__ = [
    "MacAlgorithm",
    "MacKey",
    "MacScheme",
    "MacError",
    "des_ecb",
    "retail_mac",
    "cbc_mac",
    "cup_ecb_mac",
    "key_check_value",
]

MacAlgorithm = Literal["x919", "cbc", "cup-ecb"]
ALGORITHMS: tuple[MacAlgorithm, ...] = ("x919", "cbc", "cup-ecb")
BLOCK = 8


class MacError(ValueError):
    """A MAC could not be computed (bad key length, unknown algorithm or padding). Never holds key bytes."""


def _tdes_key(key: bytes) -> bytes:
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise MacError(f"a DES key is 8, 16 or 24 bytes, got {len(key)}")


_contexts = threading.local()
_CONTEXTS_KEPT = 32


def _ecb_context(key: bytes, decrypt: bool) -> CipherContext:
    """An ECB context for ``key``, kept per thread and reused: ECB has no state between whole blocks, so one
    context serves every call (setting one up costs more than the DES itself on a short message)."""
    cache: dict[tuple[bytes, bool], CipherContext] | None = getattr(_contexts, "cache", None)
    if cache is None:
        cache = _contexts.cache = {}
    ctx = cache.get((key, decrypt))
    if ctx is None:
        if len(cache) >= _CONTEXTS_KEPT:
            cache.clear()
        cipher = Cipher(TripleDES(_tdes_key(key)), modes.ECB())
        ctx = cache[(key, decrypt)] = cipher.decryptor() if decrypt else cipher.encryptor()
    return ctx


def _ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or 3DES (16/24-byte key) ECB on whole blocks."""
    return _ecb_context(key, decrypt).update(block)


def des_ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or TDES (16/24-byte key) ECB over whole 8-byte blocks (key unwrapping, check values)."""
    if len(data) % BLOCK:
        raise MacError(f"ECB works on whole {BLOCK}-byte blocks, got {len(data)} bytes")
    return _ecb(key, data, decrypt=decrypt)


def _xor(a: bytes, b: bytes) -> bytes:
    """XOR of two 8-byte blocks."""
    if len(a) != len(b):
        raise MacError(f"XOR of blocks of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def pad(data: bytes, method: int) -> bytes:
    """ISO/IEC 9797-1 padding method 1 or 2."""
    if method == 1:
        if not data:
            return bytes(BLOCK)
        return data + bytes(-len(data) % BLOCK)
    if method == 2:
        data = data + b"\x80"
        return data + bytes(-len(data) % BLOCK)
    raise MacError(f"padding method {method} is not supported; use 1 (zeros) or 2 (0x80 then zeros)")


def _cbc_des(k1: bytes, padded: bytes) -> bytes:
    """The last block of a single-DES CBC encryption with a zero IV (one pass in ``cryptography``)."""
    if not padded:
        return bytes(BLOCK)
    enc = Cipher(TripleDES(_tdes_key(k1)), modes.CBC(bytes(BLOCK))).encryptor()
    return enc.update(padded)[-BLOCK:]


def retail_mac(key: bytes, data: bytes, *, padding: int = 1) -> bytes:
    """ISO 9797-1 MAC algorithm 3 / ANSI X9.19 with a double-length key; returns 8 bytes."""
    if len(key) != 16:
        raise MacError(f"the retail MAC needs a double-length (16-byte) key, got {len(key)} bytes")
    # E_K1(D_K2(y_n)) with y_n = E_K1(x_n ^ y_n-1) is 2-key TDES-EDE of (x_n ^ y_n-1): one single-DES CBC pass
    # over the blocks before the last, then one TDES block under K1|K2|K1 (the same MAC, one step less).
    padded = pad(data, padding)
    last = len(padded) - BLOCK
    y = _cbc_des(key[:8], padded[:last]) if last else bytes(BLOCK)
    return _ecb(key, _xor(y, padded[last:]))


def cbc_mac(key: bytes, data: bytes, *, padding: int = 1) -> bytes:
    """ISO 9797-1 MAC algorithm 1 with single DES under the first 8 key bytes; returns 8 bytes."""
    if len(key) not in (8, 16):
        raise MacError(f"the CBC MAC needs an 8- or 16-byte key, got {len(key)} bytes")
    return _cbc_des(key[:8], pad(data, padding))


def cup_ecb_mac(key: bytes, data: bytes) -> bytes:
    """The UnionPay POS "ECB" MAC; returns the 8 ASCII hex characters that go on the wire."""
    padded = data + bytes(-len(data) % BLOCK)
    acc = 0
    for i in range(0, len(padded), BLOCK):
        acc ^= int.from_bytes(padded[i : i + BLOCK], "big")
    expanded = acc.to_bytes(BLOCK, "big").hex().upper().encode("ascii")
    step = _ecb(key, expanded[:BLOCK])
    step = _ecb(key, _xor(step, expanded[BLOCK:]))
    return step.hex().upper().encode("ascii")[:BLOCK]


def key_check_value(key: bytes, length: int = 3) -> bytes:
    """The key check value: the key encrypting a zero block, leftmost ``length`` bytes."""
    return _ecb(key, bytes(BLOCK))[:length]


@dataclass(frozen=True)
class MacKey:
    """A MAC key. ``repr``/``str`` show the length and key check value, never the key."""

    _value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self._value) not in (8, 16, 24):
            raise MacError(f"a MAC key is 8, 16 or 24 bytes, got {len(self._value)}")

    @classmethod
    def from_hex(cls, text: str) -> MacKey:
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise MacError("a MAC key in hex must have an even number of hex digits") from None

    def reveal(self) -> bytes:
        """The clear key bytes (explicit opt-in)."""
        return self._value

    @property
    def kcv(self) -> str:
        return key_check_value(self._value).hex().upper()

    def __repr__(self) -> str:
        return f"MacKey(len={len(self._value)}, kcv={self.kcv})"

    __str__ = __repr__


@dataclass(frozen=True)
class MacScheme:
    """Which MAC the acquirer wants, with which key and padding."""

    algorithm: MacAlgorithm
    key: MacKey
    padding: int = 1

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise MacError(f"unknown MAC algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        pad(b"", self.padding)  # validates the padding method

    def compute(self, data: bytes) -> bytes:
        """The 8 bytes that go into field 64 (or 128)."""
        key = self.key.reveal()
        if self.algorithm == "x919":
            return retail_mac(key, data, padding=self.padding)
        if self.algorithm == "cbc":
            return cbc_mac(key, data, padding=self.padding)
        return cup_ecb_mac(key, data)

    def verify(self, data: bytes, mac: bytes) -> bool:
        """Constant-time comparison of ``mac`` with the MAC of ``data``."""
        return hmac.compare_digest(self.compute(data), bytes(mac))
