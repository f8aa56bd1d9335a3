"""Command APDU parsing (ISO 7816-4 short cases) and status words the applet uses."""

from __future__ import annotations

from dataclasses import dataclass

SW_OK = 0x9000
SW_AUTH_FAILED = 0x6300  # EXTERNAL AUTHENTICATE: issuer authentication failed (EMV Book 3 6.5.4)
SW_SM_MISSING = 0x6987  # expected secure messaging data objects missing
SW_SM_INCORRECT = 0x6988  # secure messaging data objects incorrect (script MAC wrong)
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_WRONG_P1P2 = 0x6A86
SW_DATA_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00


class ApduFormatError(ValueError):
    """The command bytes are not a valid short APDU."""


@dataclass(frozen=True)
class Command:
    """A parsed command APDU. ``le`` is None when absent; Le byte 00 means 256."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 (no data), 2 (Le only), 3 (data only), 4 (data and Le)."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    @classmethod
    def parse(cls, raw: bytes) -> Command:
        if len(raw) < 4:
            raise ApduFormatError(f"APDU is {len(raw)} bytes, at least 4 needed")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise ApduFormatError("extended-length APDUs are not supported by this card")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, data=body[1:])
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, data=body[1 : 1 + lc], le=body[-1] or 256)
        raise ApduFormatError(f"Lc={lc} does not match the {len(body) - 1} bytes that follow")


def sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")
