"""Known-answer vectors for the iso87bcd and cup dialects, written by hand from the published layouts.

iso87bcd — jPOS ``org.jpos.iso.packager.ISO87BPackager``: MTI IFB_NUMERIC(4) -> 2 BCD bytes; bitmap
IFB_BITMAP(16) binary; 2 IFB_LLNUM(19, pad=false) -> 1-byte BCD digit count + BCD right-padded with 0;
3/4/11 IFB_NUMERIC left-padded BCD; 41 IF_CHAR(8) ASCII right-padded with spaces; 28 IFB_AMOUNT(9) ->
'C'/'D' + BCD digits.

cup — shared/reference/pos-flows.md §B "CUP framing": 5-byte TPDU ``6000030000`` + 6-byte header,
BCD MTI, 8-byte binary bitmap, n fields and LL/LLL lengths in BCD, 41/42/49 ASCII, 55 binary.
"""

from __future__ import annotations

from posguard.iso8583 import Message, decode


def test_iso87bcd_sale() -> None:
    fields = {"2": "4761739001010119", "3": "000000", "4": "000000001000", "11": "000001", "41": "TERM0001"}
    expected = bytes.fromhex(
        "0200"                      # MTI, BCD
        "7020000000800000"          # bitmap: 2, 3, 4, 11, 41
        "16" "4761739001010119"     # 2: LL BCD = 16 digits, BCD
        "000000"                    # 3
        "000000001000"              # 4
        "000001"                    # 11
        "5445524D30303031"          # 41: "TERM0001" ASCII
    )
    assert Message("0200", fields, "iso87bcd").encode() == expected
    assert decode(expected, "iso87bcd").fields() == fields


def test_iso87bcd_odd_lengths_padding_and_amounts() -> None:
    msg = Message("0200", {"22": "51", "28": "C00000100", "32": "12345", "41": "T1"}, "iso87bcd")
    expected = bytes.fromhex(
        "0200"
        "0000041100800000"          # bitmap: 22 (byte 2, 0x04), 28 + 32 (byte 3, 0x10|0x01), 41
        "0051"                      # 22: IFB_NUMERIC(3) "51" -> "051", left-padded BCD
        "43" "00000100"             # 28: IFB_AMOUNT(9): 'C' then 8 BCD digits
        "05" "123450"               # 32: IFB_LLNUM(11, pad=false): 5 digits, right-padded nibble
        "5431202020202020"          # 41: IF_CHAR(8) "T1" right-padded with spaces
    )
    assert msg.encode() == expected
    back = decode(expected, "iso87bcd")
    assert back.fields() == {"22": "051", "28": "C00000100", "32": "12345", "41": "T1      "}


def test_cup_sale() -> None:
    fields = {
        "2": "4761739001010119", "3": "000000", "4": "000000001000", "11": "000001", "22": "051",
        "25": "00", "41": "TERM0001", "42": "MERCHANT0000001", "49": "156", "60": "22000001000",
    }
    expected = bytes.fromhex(
        "6000030000" "603100310000"    # TPDU + header (field h)
        "0200"                         # MTI, BCD
        "70200480" "00C08010"          # bitmap: 2 3 4 11 22 25 41 42 49 60
        "16" "4761739001010119"        # 2
        "000000" "000000001000" "000001"
        "0510"                         # 22: n3 left-aligned, right-padded with 0
        "00"                           # 25
        "5445524D30303031"             # 41 ASCII
        "4D45524348414E5430303030303031"  # 42 ASCII "MERCHANT0000001"
        "313536"                       # 49 ASCII "156"
        "0011" "220000010000"          # 60: LLL BCD = 11 digits, right-padded
    )
    msg = Message("0200", fields, "cup", header=bytes.fromhex("6000030000603100310000"))
    assert msg.encode() == expected
    back = decode(expected, "cup")
    assert back.fields() == fields
    assert back.header == bytes.fromhex("6000030000603100310000")
    assert (back["60.1"], back["60.2"], back["60.3"]) == ("22", "000001", "000")
    assert back.kind == "sale"


def test_cup_19_digit_pan_and_binary_icc() -> None:
    msg = Message("0200", {"2": "6250947000000000014", "55": bytes.fromhex("9F34031E0300")}, "cup")
    raw = msg.encode()
    assert raw[11:].hex().upper() == (
        "0200" "4000000000000200"
        "19" "62509470000000000140"     # 19 digits, right-padded
        "0006" "9F34031E0300"           # 55: LLL BCD byte count, binary
    )
    assert decode(raw, "cup")["55.9F34"] == bytes.fromhex("1E0300")
