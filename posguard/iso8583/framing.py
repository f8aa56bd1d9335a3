"""Framing for the host link: a length before each message, optional TPDU handling, stream decoding.

* ``binary2``: 2-byte big-endian binary length (CUP, most acquirers);
* ``ascii4``: 4 ASCII digits;
* ``bcd2``: 2-byte BCD length (0..9999).

A zero length is a keep-alive and is skipped. :class:`StreamDecoder` takes bytes as they arrive (partial
reads, several messages in one read) and returns whole messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posguard.iso8583.errors import DecodeError, EncodeError

__all__ = ["Framing", "StreamDecoder", "swap_tpdu", "FRAMINGS"]

FRAMINGS = ("binary2", "ascii4", "bcd2")


@dataclass(frozen=True)
class Framing:
    kind: str = "binary2"
    #: refuse frames longer than this (a corrupt length must not make us wait for 64 KB)
    max_length: int = 8192

    def __post_init__(self) -> None:
        if self.kind not in FRAMINGS:
            raise ValueError(f"unknown framing {self.kind!r}; use one of {', '.join(FRAMINGS)}")

    @property
    def header_size(self) -> int:
        return 4 if self.kind == "ascii4" else 2

    def frame(self, payload: bytes) -> bytes:
        n = len(payload)
        if n > self.max_length or (self.kind != "binary2" and n > 9999) or n > 0xFFFF:
            raise EncodeError("message too long for the framing", path="framing",
                              expected=f"at most {self.max_length} bytes", got=f"{n} bytes")
        if self.kind == "binary2":
            return n.to_bytes(2, "big") + payload
        if self.kind == "ascii4":
            return f"{n:04d}".encode("ascii") + payload
        return bytes.fromhex(f"{n:04d}") + payload

    def read_length(self, head: bytes, offset: int = 0) -> int:
        if self.kind == "binary2":
            n = int.from_bytes(head, "big")
        elif self.kind == "ascii4":
            if not head.isdigit():
                raise DecodeError("frame length is not 4 ASCII digits", path="framing", offset=offset,
                                  got=head.hex().upper(), hint="is the framing binary2 or bcd2?")
            n = int(head)
        else:
            digits = head.hex()
            if not digits.isdigit():
                raise DecodeError("frame length is not BCD", path="framing", offset=offset,
                                  got=digits.upper(), hint="is the framing binary2?")
            n = int(digits)
        if n > self.max_length:
            raise DecodeError("frame length exceeds the maximum", path="framing", offset=offset,
                              expected=f"at most {self.max_length}", got=str(n),
                              hint="is the framing right (binary2 / ascii4 / bcd2), or is there a TPDU?")
        return n


@dataclass
class StreamDecoder:
    """Reassembles framed messages from a byte stream."""

    framing: Framing = field(default_factory=Framing)
    _buf: bytearray = field(default_factory=bytearray)
    #: bytes consumed so far (for error offsets)
    consumed: int = 0
    keepalives: int = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        hs = self.framing.header_size
        while len(self._buf) >= hs:
            n = self.framing.read_length(bytes(self._buf[:hs]), self.consumed)
            if n == 0:
                del self._buf[:hs]
                self.consumed += hs
                self.keepalives += 1
                continue
            if len(self._buf) < hs + n:
                break
            out.append(bytes(self._buf[hs : hs + n]))
            del self._buf[: hs + n]
            self.consumed += hs + n
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole message."""
        return len(self._buf)


def swap_tpdu(payload: bytes) -> bytes:
    """Swap the TPDU's destination and source addresses (bytes 1-2 and 3-4), as a host does in its answer."""
    if len(payload) < 5:
        raise DecodeError("message shorter than a TPDU", path="h", offset=0, expected="5 bytes",
                          got=f"{len(payload)} bytes")
    return payload[:1] + payload[3:5] + payload[1:3] + payload[5:]
