"""ISO 7813 swipe parsing: tracks, LRC, BCC, partial and misread swipes, masking."""

from __future__ import annotations

import json

import pytest

from posguard.drivers.errors import InvalidCardNumber, PartialSwipe, SwipeChecksumError, SwipeError
from posguard.drivers.magstripe import ETX, STX, parse_frame, parse_swipe, track_lrc

PAN = "4761739001010119"
T1 = f"%B{PAN}^VISA TEST/CARDHOLDER^2812201100000000?"
T2 = f";{PAN}=2812201100000000?"


def frame(payload: str, bcc: bool = False) -> bytes:
    body = payload.encode() + b"\r" + bytes((ETX,))
    out = bytes((STX,)) + body
    if bcc:
        x = 0
        for b in body:
            x ^= b
        out += bytes((x,))
    return out


def test_both_tracks() -> None:
    s = parse_swipe(T1 + T2)
    assert s.pan.reveal() == PAN and s.expiry == "2812" and s.service_code == "201"
    assert s.name == "VISA TEST/CARDHOLDER" and s.chip_card
    assert s.track2_data() == f"{PAN}=2812201100000000"


def test_track2_only_and_track1_only() -> None:
    assert parse_swipe(T2).has_track2 and not parse_swipe(T2).has_track1
    assert parse_swipe(T1).pan.reveal() == PAN


def test_card_lrc_checked_when_present() -> None:
    good = T2 + track_lrc(T2, track_no=2)
    assert parse_swipe(good).pan.reveal() == PAN
    bad_char = chr(ord(track_lrc(T2, track_no=2)) ^ 0x01)
    with pytest.raises(SwipeChecksumError, match="track 2"):
        parse_swipe(T2 + bad_char)
    t1_lrc = track_lrc(T1, track_no=1)
    assert parse_swipe(T1 + t1_lrc + T2).has_track1


def test_track2_lrc_known_value() -> None:
    # ;1234=? : 4-bit values B,1,2,3,4,D,F -> XOR = D -> "=" (0x30 + 0xD)
    assert track_lrc(";1234=?", track_no=2) == "="


def test_frame_with_and_without_bcc() -> None:
    assert parse_frame(frame(T1 + T2)).pan.reveal() == PAN
    assert parse_frame(frame(T1 + T2, bcc=True), bcc=True).pan.reveal() == PAN
    broken = bytearray(frame(T1 + T2, bcc=True))
    broken[-1] ^= 0x01
    with pytest.raises(SwipeChecksumError, match="BCC"):
        parse_frame(bytes(broken))
    with pytest.raises(PartialSwipe, match="BCC"):
        parse_frame(frame(T1 + T2), bcc=True)


def test_partial_swipe_missing_end_sentinel() -> None:
    with pytest.raises(PartialSwipe, match="end sentinel"):
        parse_swipe(T1 + f";{PAN}=2812")


def test_frame_without_etx_is_partial() -> None:
    with pytest.raises(PartialSwipe, match="ETX"):
        parse_frame(bytes((STX,)) + T2.encode())


def test_misread_tracks() -> None:
    with pytest.raises(PartialSwipe, match="unreadable"):
        parse_swipe("%E?;E?")


def test_luhn_failure() -> None:
    with pytest.raises(InvalidCardNumber, match="Luhn"):
        parse_swipe(";4761739001010118=2812201?")


def test_tracks_that_disagree() -> None:
    other = ";5413330089010434=2812201?"
    with pytest.raises(SwipeError, match="disagree"):
        parse_swipe(T1 + other)


def test_bad_month() -> None:
    with pytest.raises(SwipeError, match="month"):
        parse_swipe(f";{PAN}=2813201?")


def test_every_error_says_swipe_again_and_hides_the_pan() -> None:
    for text in (T1 + f";{PAN}=28", ";4761739001010118=2812201?", T2 + "0"):
        with pytest.raises(SwipeError) as e:
            parse_swipe(text)
        assert "swipe again" in str(e.value)
        assert PAN not in str(e.value) and "476173900101011" not in str(e.value)


def test_repr_str_and_masked_dict_hide_pan_and_tracks() -> None:
    s = parse_swipe(T1 + T2)
    for text in (repr(s), str(s), f"{s}", json.dumps(s.masked()), repr(s.pan)):
        assert PAN not in text
        assert "2812201100000000" not in text
    assert "476173******0119" in repr(s)
