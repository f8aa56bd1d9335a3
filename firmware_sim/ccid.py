"""CCID messages (USB CCID 1.1 bulk messages) and the GemPC Twin serial framing around them.

Serial frame: ``03 06 <CCID message> LRC`` (LRC = XOR of every byte before it); error frame
``03 15 16`` (NAK); card movement notification ``50 02`` (absent) / ``50 03`` (present).
A CCID message is a 10-byte header (type, dwLength LE, slot, seq, 3 type-specific bytes) + data.

An independent copy, on purpose: the simulator checks the driver, so it must not share its code. The
product's own home of this layout is ``posguard/drivers/twin/frames.py``; the simulator never imports posguard.
"""

from __future__ import annotations

from dataclasses import dataclass

SYNC, ACK, NAK = 0x03, 0x06, 0x15
NAK_FRAME = bytes([SYNC, NAK, SYNC ^ NAK])
NOTIFY = 0x50
CARD_ABSENT, CARD_PRESENT = 0x02, 0x03
HEADER = 10

PC_TO_RDR = {
    0x61: "SetParameters", 0x62: "IccPowerOn", 0x63: "IccPowerOff", 0x65: "GetSlotStatus",
    0x69: "Secure", 0x6A: "T0APDU", 0x6B: "Escape", 0x6C: "GetParameters", 0x6D: "ResetParameters",
    0x6E: "IccClock", 0x6F: "XfrBlock", 0x71: "Mechanical", 0x72: "Abort",
    0x73: "SetDataRateAndClockFrequency",
}
RDR_DATA_BLOCK, RDR_SLOT_STATUS, RDR_PARAMETERS, RDR_ESCAPE, RDR_RATE_CLOCK = 0x80, 0x81, 0x82, 0x83, 0x84

ICC_ACTIVE, ICC_INACTIVE, ICC_ABSENT = 0, 1, 2
CMD_FAILED = 0x40
ERR_ICC_MUTE = 0xFE
ERR_CMD_NOT_SUPPORTED = 0x00


def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def frame(message: bytes) -> bytes:
    body = bytes([SYNC, ACK]) + message
    return body + bytes([lrc(body)])


def notification(present: bool) -> bytes:
    return bytes([NOTIFY, CARD_PRESENT if present else CARD_ABSENT])


@dataclass(frozen=True)
class Message:
    """A PC_to_RDR message as received."""

    type: int
    slot: int
    seq: int
    specific: bytes
    data: bytes

    @property
    def name(self) -> str:
        return PC_TO_RDR.get(self.type, f"0x{self.type:02X}")

    @classmethod
    def parse(cls, raw: bytes) -> Message:
        return cls(raw[0], raw[5], raw[6], raw[7:10], raw[HEADER:])


def rdr_message(kind: int, request: Message, *, icc: int, failed: bool = False, error: int = 0,
                specific: int = 0, data: bytes = b"") -> bytes:
    """A RDR_to_PC answer to ``request`` (same slot and sequence number)."""
    status = icc | (CMD_FAILED if failed else 0)
    return (bytes([kind]) + len(data).to_bytes(4, "little")
            + bytes([request.slot, request.seq, status, error, specific]) + data)


@dataclass(frozen=True)
class Received:
    """One unit read from the host: a good frame, a frame with a bad LRC, or a NAK."""

    raw: bytes
    message: Message | None = None
    bad_lrc: bool = False
    nak: bool = False


class FrameDecoder:
    """Cuts the host's byte stream into frames; bytes outside a frame are skipped and counted."""

    def __init__(self, max_message: int = 271 + HEADER) -> None:
        self.buffer = bytearray()
        self.skipped = 0
        self.max_message = max_message

    def feed(self, data: bytes) -> list[Received]:
        self.buffer += data
        out: list[Received] = []
        while True:
            start = self.buffer.find(SYNC)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return out
            if start:
                self.skipped += start
                del self.buffer[:start]
            if len(self.buffer) < 2:
                return out
            if self.buffer[1] == NAK:
                if len(self.buffer) < 3:
                    return out
                out.append(Received(bytes(self.buffer[:3]), nak=True))
                del self.buffer[:3]
                continue
            if self.buffer[1] != ACK or len(self.buffer) >= 7 and self._length() > self.max_message:
                self.skipped += 1
                del self.buffer[:1]
                continue
            if len(self.buffer) < 2 + HEADER:
                return out
            total = 2 + self._length() + 1
            if len(self.buffer) < total:
                return out
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            message = Message.parse(raw[2:-1])
            out.append(Received(raw, message, bad_lrc=lrc(raw[:-1]) != raw[-1]))

    def _length(self) -> int:
        return HEADER + int.from_bytes(self.buffer[3:7], "little")
