"""Length-prefix framing on the acquirer's TCP stream (independent of posguard's framing).

``binary2`` (2-byte big-endian length, the CUP default), ``ascii4`` (4 ASCII digits), ``bcd2`` (2-byte BCD).
A zero-length frame is a keep-alive and is skipped.
"""

from __future__ import annotations

FRAMINGS = ("binary2", "ascii4", "bcd2")


class FramingError(ValueError):
    pass


def _prefix_len(kind: str) -> int:
    if kind not in FRAMINGS:
        raise FramingError(f"unknown framing {kind!r}; choose one of {FRAMINGS}")
    return 4 if kind == "ascii4" else 2


def frame(kind: str, payload: bytes) -> bytes:
    n = len(payload)
    if kind == "binary2":
        if n > 0xFFFF:
            raise FramingError(f"payload of {n} bytes does not fit a 2-byte length")
        return n.to_bytes(2, "big") + payload
    if kind == "ascii4":
        if n > 9999:
            raise FramingError(f"payload of {n} bytes does not fit 4 ASCII digits")
        return f"{n:04d}".encode() + payload
    if kind == "bcd2":
        if n > 9999:
            raise FramingError(f"payload of {n} bytes does not fit 2 BCD bytes")
        return bytes.fromhex(f"{n:04d}") + payload
    raise FramingError(f"unknown framing {kind!r}; choose one of {FRAMINGS}")


def _read_length(kind: str, prefix: bytes) -> int:
    if kind == "binary2":
        return int.from_bytes(prefix, "big")
    text = prefix.decode("ascii", "replace") if kind == "ascii4" else prefix.hex()
    if not text.isdigit():
        raise FramingError(f"{kind} length prefix {prefix.hex()} is not decimal")
    return int(text)


class Deframer:
    """Feed it stream bytes, get back whole payloads (handles partial and coalesced reads)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._plen = _prefix_len(kind)
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= self._plen:
            n = _read_length(self.kind, bytes(self._buf[: self._plen]))
            if len(self._buf) < self._plen + n:
                break
            payload = bytes(self._buf[self._plen : self._plen + n])
            del self._buf[: self._plen + n]
            if n:
                out.append(payload)
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)
