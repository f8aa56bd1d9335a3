"""MagstripeReader against the serial swipe reader firmware on a pty."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from posguard.drivers.errors import PartialSwipe, ReaderUnplugged, SwipeError
from posguard.drivers.magstripe import MagstripeReader

PAN = "4761739001010119"


def open_reader(mag: Any, **kw: Any) -> MagstripeReader:
    return MagstripeReader(str(mag.link), **kw)


def test_swipe_over_serial(magstripe_factory: Callable[..., Any]) -> None:
    mag = magstripe_factory("visa_credit_sig")
    r = open_reader(mag, bcc=False)
    try:
        mag.swipe()
        s = r.read_swipe(2)
        assert s.pan.reveal() == PAN and s.expiry == "2812" and s.chip_card
        assert PAN not in repr(s)
    finally:
        r.close()


def test_swipe_with_bcc(magstripe_factory: Callable[..., Any]) -> None:
    mag = magstripe_factory("unionpay_debit_pin", bcc=True)
    r = open_reader(mag, bcc=True)
    try:
        mag.swipe()
        assert r.read_swipe(2).pan.masked == "625094******0014"
    finally:
        r.close()


@pytest.mark.parametrize("mode", ["partial", "misread"])
def test_bad_swipes_say_swipe_again(magstripe_factory: Callable[..., Any], mode: str) -> None:
    mag = magstripe_factory()
    r = open_reader(mag)
    try:
        mag.swipe(mode=mode)
        with pytest.raises(PartialSwipe) as e:
            r.read_swipe(2)
        assert "swipe again" in str(e.value) and PAN not in str(e.value)
    finally:
        r.close()


def test_line_noise_is_caught_by_the_bcc(magstripe_factory: Callable[..., Any]) -> None:
    mag = magstripe_factory(bcc=True, faults=("noise flip=0.05 times=0",), seed=3)
    r = open_reader(mag, bcc=True)
    try:
        mag.swipe()
        with pytest.raises(SwipeError, match="swipe again"):
            r.read_swipe(2)
    finally:
        r.close()


def test_no_swipe_times_out(magstripe_factory: Callable[..., Any]) -> None:
    r = open_reader(magstripe_factory())
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            r.read_swipe(0.2)
        assert time.monotonic() - t0 < 1
    finally:
        r.close()


def test_unplugged_reader(magstripe_factory: Callable[..., Any]) -> None:
    mag = magstripe_factory()
    r = open_reader(mag)
    try:
        mag.unplug()
        with pytest.raises(ReaderUnplugged):
            r.read_swipe(1)
    finally:
        r.close()
