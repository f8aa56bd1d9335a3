"""The GemPC Twin's CCID-over-serial frame layout: constants, LRC, building a frame.

Wire format (as libccidtwin speaks it): every CCID message travels as ``03 06 <CCID message> LRC`` with
LRC = XOR of all preceding frame bytes; ``03 15 16`` is a NAK (resend your last frame); ``50 02`` /
``50 03`` are unsolicited card-absent / card-present notifications. A CCID message is a 10-byte header
(type, payload length little-endian in bytes 1-4, slot, sequence number, 3 message-specific bytes) and its
payload.

The one home of this layout in the product: the Twin driver (:mod:`posguard.drivers.twin.link`,
:mod:`posguard.drivers.twin.reader`) and the capture (:mod:`posguard.capture.format`) both read it here.
The simulator (``firmware_sim/ccid.py``) keeps its own copy on purpose.
"""

from __future__ import annotations

__all__ = [
    "SYNC",
    "ACK",
    "NAK_BYTE",
    "NOTIFY",
    "CARD_ABSENT",
    "CARD_PRESENT",
    "NAK",
    "CCID_HEADER",
    "MAX_PAYLOAD",
    "PC_TO_RDR_SET_PARAMETERS",
    "PC_TO_RDR_ICC_POWER_ON",
    "PC_TO_RDR_ICC_POWER_OFF",
    "PC_TO_RDR_GET_SLOT_STATUS",
    "PC_TO_RDR_ESCAPE",
    "PC_TO_RDR_XFR_BLOCK",
    "RDR_TO_PC_DATA_BLOCK",
    "RDR_TO_PC_SLOT_STATUS",
    "RDR_TO_PC_ESCAPE",
    "lrc",
    "encode_frame",
]

SYNC = 0x03
ACK = 0x06
NAK_BYTE = 0x15
NOTIFY = 0x50
CARD_ABSENT = 0x02
CARD_PRESENT = 0x03
NAK = bytes((SYNC, NAK_BYTE, SYNC ^ NAK_BYTE))
CCID_HEADER = 10
#: Largest CCID payload accepted from the line; a longer length field means garbage, not a frame.
MAX_PAYLOAD = 512

# CCID message types
PC_TO_RDR_SET_PARAMETERS = 0x61
PC_TO_RDR_ICC_POWER_ON = 0x62
PC_TO_RDR_ICC_POWER_OFF = 0x63
PC_TO_RDR_GET_SLOT_STATUS = 0x65
PC_TO_RDR_ESCAPE = 0x6B
PC_TO_RDR_XFR_BLOCK = 0x6F
RDR_TO_PC_DATA_BLOCK = 0x80
RDR_TO_PC_SLOT_STATUS = 0x81
RDR_TO_PC_ESCAPE = 0x83


def lrc(data: bytes) -> int:
    """XOR of all bytes."""
    x = 0
    for b in data:
        x ^= b
    return x


def encode_frame(ccid: bytes) -> bytes:
    """Wrap one CCID message for the line: ``03 06 <ccid> LRC``."""
    return b"\x03\x06" + ccid + bytes((lrc(ccid) ^ SYNC ^ ACK,))
