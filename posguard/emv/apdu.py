"""Command APDUs of the EMV contact flow (EMV Book 3 section 6.5). Pure byte builders."""

from __future__ import annotations

PSE_NAME = b"1PAY.SYS.DDF01"

# GENERATE AC reference control parameter (P1)
AC_AAC = 0x00
AC_TC = 0x40
AC_ARQC = 0x80


def select(name: bytes, *, next_occurrence: bool = False) -> bytes:
    """SELECT by DF name (P1 04), first (P2 00) or next (P2 02) occurrence."""
    return bytes((0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, len(name))) + name + b"\x00"


def read_record(sfi: int, record: int) -> bytes:
    if not 1 <= sfi <= 30 or not 1 <= record <= 255:
        raise ValueError(f"READ RECORD SFI {sfi} record {record} out of range")
    return bytes((0x00, 0xB2, record, (sfi << 3) | 0x04, 0x00))


def get_processing_options(pdol_data: bytes) -> bytes:
    body = bytes((0x83, len(pdol_data))) + pdol_data
    return bytes((0x80, 0xA8, 0x00, 0x00, len(body))) + body + b"\x00"


def generate_ac(p1: int, cdol_data: bytes) -> bytes:
    return bytes((0x80, 0xAE, p1, 0x00, len(cdol_data))) + cdol_data + b"\x00"


def external_authenticate(issuer_auth_data: bytes) -> bytes:
    """EXTERNAL AUTHENTICATE (EMV Book 3 §6.5.4) with the issuer authentication data (tag 91's value)."""
    if not 8 <= len(issuer_auth_data) <= 16:
        raise ValueError(f"issuer authentication data has {len(issuer_auth_data)} bytes, expected 8-16")
    return bytes((0x00, 0x82, 0x00, 0x00, len(issuer_auth_data))) + issuer_auth_data


def verify_plain_pin(pin: str) -> bytes:
    """VERIFY with an ISO 9564 format-2 plaintext PIN block (offline plaintext PIN)."""
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("PIN must be 4-12 digits")
    block = bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))
    return bytes((0x00, 0x20, 0x00, 0x80, 0x08)) + block
