"""The serial magstripe reader, read over its pty with pyserial."""

from __future__ import annotations

import time

import pytest
import serial

STX, ETX = 0x02, 0x03


def read_frame(port: serial.Serial, *, bcc: bool = False, timeout: float = 3.0) -> bytes:
    """Bytes up to ETX (and the BCC after it); bounded by ``timeout``."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out += port.read(1)
        if ETX in out:
            if bcc:
                out += port.read(1)
            return bytes(out)
    raise AssertionError(f"no complete frame within {timeout} s: {bytes(out)!r}")


def test_swipe_sends_both_tracks_framed(magstripe_factory) -> None:  # type: ignore[no-untyped-def]
    mag = magstripe_factory("visa_credit_sig")
    with mag.open_serial() as port:
        sent = mag.swipe()
        frame = read_frame(port)
    assert frame == sent
    text = frame[1:-2].decode("ascii")
    track1, _, track2 = text.partition("?")
    assert track1 == "%B4761739001010119^VISA TEST/CARDHOLDER^28122011000000000000"
    assert track2 == ";4761739001010119=28122011000000000000?"
    assert frame[0] == STX and frame[-2:] == b"\r\x03"


def test_bcc_after_etx(magstripe_factory) -> None:  # type: ignore[no-untyped-def]
    mag = magstripe_factory("unionpay_debit_pin", bcc=True)
    with mag.open_serial() as port:
        mag.swipe()
        frame = read_frame(port, bcc=True)
    check = 0
    for byte in frame[1:-1]:
        check ^= byte
    assert frame[-1] == check and frame[-2] == ETX
    assert b";6250947000000014=2812" in frame


@pytest.mark.parametrize(("mode", "expected"), [
    ("misread", b"\x02%E?;E?\r\x03"),
    ("track2", b"\x02;5413330089010434=28122011000000000000?\r\x03"),
])
def test_misread_and_single_track(magstripe_factory, mode, expected) -> None:  # type: ignore[no-untyped-def]
    mag = magstripe_factory("mastercard_nocvm")
    with mag.open_serial() as port:
        mag.swipe(mode=mode)
        assert read_frame(port) == expected


def test_partial_swipe_has_no_track2_end_sentinel(magstripe_factory) -> None:  # type: ignore[no-untyped-def]
    mag = magstripe_factory()
    with mag.open_serial() as port:
        mag.swipe(mode="partial")
        track2 = read_frame(port)[1:-2].decode().split("?", 1)[1]
    assert track2.startswith(";4761") and not track2.endswith("?")


def test_noise_is_deterministic_for_a_seed(magstripe_factory) -> None:  # type: ignore[no-untyped-def]
    frames = []
    for _ in range(2):
        mag = magstripe_factory(faults=["noise flip=0.05 dup=0.05 times=0"], seed=7)
        with mag.open_serial(timeout=0.3) as port:
            clean = mag.swipe()
            frames.append(port.read(200))
    assert frames[0] == frames[1]
    assert frames[0] != clean


def test_slow_swipe_and_unplug(magstripe_factory) -> None:  # type: ignore[no-untyped-def]
    mag = magstripe_factory(faults=["delay seconds=0.3"])
    with mag.open_serial() as port:
        started = time.monotonic()
        mag.swipe()
        read_frame(port)
        assert 0.3 <= time.monotonic() - started < 2.0
        mag.unplug()
        assert not mag.link.exists()
        with pytest.raises(serial.SerialException):
            port.read(1)
