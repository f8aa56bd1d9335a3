"""A minimal terminal-side EMV script for the simulator tests (independent of posguard).

Commands are built with plain byte arithmetic and answers read with a tiny TLV walker, so the
tests do not trust the simulator's own TLV helper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

PSE = b"1PAY.SYS.DDF01"
Send = Callable[[bytes], tuple[bytes, int]]


def tlv_items(data: bytes) -> Iterator[tuple[str, bytes, bool]]:
    """The top-level BER-TLV objects of ``data`` (EMV Book 3 Annex B) as (tag hex, value, constructed); padding
    bytes 00/FF between objects are skipped; a value shorter than its length is a ValueError."""
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        start = pos
        pos += 1
        if data[start] & 0x1F == 0x1F:
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        tag = data[start:pos].hex().upper()
        length = data[pos]
        pos += 1
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        value = data[pos : pos + length]
        if len(value) != length:
            raise ValueError(f"tag {tag} claims {length} bytes, {len(value)} present")
        pos += length
        yield tag, value, bool(data[start] & 0x20)


def tlv_find(data: bytes, wanted: str) -> bytes | None:
    """Depth-first search of BER-TLV ``data`` for tag ``wanted`` (hex)."""
    for tag, value, constructed in tlv_items(data):
        if tag == wanted:
            return value
        if constructed:
            found = tlv_find(value, wanted)
            if found is not None:
                return found
    return None


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> bytes:
    out = bytes([cla, ins, p1, p2])
    if data:
        out += bytes([len(data)]) + data
    if le is not None:
        out += bytes([le & 0xFF])
    return out


def exchange(send: Send, command: bytes) -> tuple[bytes, int]:
    """Send with T=0 handling: 6Cxx -> resend with that Le; 61xx -> GET RESPONSE until done."""
    data, sw = send(command)
    if sw >> 8 == 0x6C:
        data, sw = send(command[:-1] + bytes([sw & 0xFF]) if len(command) > 4 else command + bytes([sw & 0xFF]))
    out = data
    while sw >> 8 == 0x61:
        data, sw = send(apdu(0x00, 0xC0, 0x00, 0x00, le=sw & 0xFF))
        out += data
    return out, sw


def dol_data(dol: bytes, values: dict[str, bytes]) -> bytes:
    """Concatenate terminal values for a DOL (missing tags are zero-filled)."""
    out = b""
    pos = 0
    while pos < len(dol):
        start = pos
        pos += 1
        if dol[start] & 0x1F == 0x1F:
            while dol[pos] & 0x80:
                pos += 1
            pos += 1
        tag, length = dol[start:pos].hex().upper(), dol[pos]
        pos += 1
        value = values.get(tag, b"")
        out += value[:length].rjust(length, b"\x00")
    return out


def terminal_values(amount: int, unpredictable: int = 0x12345678) -> dict[str, bytes]:
    return {
        "9F02": bytes.fromhex(f"{amount:012d}"),
        "9F03": bytes(6), "9F1A": bytes.fromhex("0156"), "5F2A": bytes.fromhex("0156"),
        "95": bytes(5), "9A": bytes.fromhex("250101"), "9C": b"\x00",
        "9F37": unpredictable.to_bytes(4, "big"), "9F35": b"\x22", "8A": b"00",
    }


def read_application(send: Send) -> dict[str, bytes]:
    """SELECT PSE, read the directory, SELECT the first AID, GPO, READ RECORD per AFL."""
    fci, sw = exchange(send, apdu(0x00, 0xA4, 0x04, 0x00, PSE))
    assert sw == 0x9000, f"SELECT PSE {sw:04X}"
    sfi = tlv_find(fci, "88")
    assert sfi is not None
    record, sw = exchange(send, apdu(0x00, 0xB2, 0x01, (sfi[0] << 3) | 4))
    assert sw == 0x9000, f"READ RECORD PSE {sw:04X}"
    aid = tlv_find(record, "4F")
    assert aid is not None
    fci, sw = exchange(send, apdu(0x00, 0xA4, 0x04, 0x00, aid))
    assert sw == 0x9000, f"SELECT AID {sw:04X}"
    pdol = tlv_find(fci, "9F38") or b""
    values = terminal_values(1000)
    gpo, sw = exchange(send, apdu(0x80, 0xA8, 0x00, 0x00, b"\x83" + bytes([len(dol_data(pdol, values))])
                                  + dol_data(pdol, values)))
    assert sw == 0x9000, f"GPO {sw:04X}"
    afl = tlv_find(gpo, "94")
    assert afl is not None
    found: dict[str, bytes] = {"4F": aid, "82": tlv_find(gpo, "82") or b"", "94": afl}
    for i in range(0, len(afl), 4):
        sfi_byte, first, last = afl[i], afl[i + 1], afl[i + 2]
        for number in range(first, last + 1):
            rec, sw = exchange(send, apdu(0x00, 0xB2, number, sfi_byte | 4))
            assert sw == 0x9000, f"READ RECORD {number} SFI {sfi_byte >> 3}: {sw:04X}"
            for tag in ("5A", "5F24", "57", "8C", "8D", "8E", "5F34", "9F08", "5F20"):
                value = tlv_find(rec, tag)
                if value is not None:
                    found[tag] = value
    return found


def generate_ac(send: Send, cdol: bytes, p1: int, amount: int, unpredictable: int = 0x12345678) -> dict[str, bytes]:
    data = dol_data(cdol, terminal_values(amount, unpredictable))
    resp, sw = exchange(send, apdu(0x80, 0xAE, p1, 0x00, data))
    assert sw == 0x9000, f"GENERATE AC {sw:04X}"
    return {tag: tlv_find(resp, tag) or b"" for tag in ("9F27", "9F36", "9F26", "9F10")}
