"""Card entry policy: a chip card swiped is told to insert the card; its stripe goes only as fallback right after a
failed chip read of that card (posguard.card_entry); the swipe's tracks ride along self-masked (fields 35/36)."""

from __future__ import annotations

import json
import pickle

import pytest

from posguard.card_entry import FallbackPolicy, FallbackWindow, InsertChipCard
from posguard.clock import VirtualClock
from posguard.drivers.errors import SwipeError
from posguard.drivers.magstripe import parse_swipe, swiped_card
from posguard.sensitive import TrackData, pan_token

KEY = b"K" * 32
PAN = "4761739001010119"
CHIP_T2 = f";{PAN}=2812201100000000?"
STRIPE_T2 = f";{PAN}=2812101100000000?"
T3 = f";01{PAN}=1560000000000000000000000000000000=0=1?"
TOKEN = pan_token(PAN, KEY)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1_700_000_000.0)


@pytest.fixture
def window(clock: VirtualClock) -> FallbackWindow:
    return FallbackWindow(clock, FallbackPolicy(window_s=60.0))


def test_a_stripe_only_card_is_a_swipe(window: FallbackWindow) -> None:
    assert window.entry_mode("101", TOKEN) == "swipe"
    card = swiped_card(parse_swipe(STRIPE_T2), KEY)
    assert card.entry_mode == "swipe" and card.track2 is not None
    assert card.track2.field_value() == f"{PAN}D2812101100000000"


@pytest.mark.parametrize("service", ["201", "601"])
def test_a_chip_card_swiped_without_a_failed_chip_read_is_told_to_insert_the_card(window: FallbackWindow,
                                                                                   service: str) -> None:
    with pytest.raises(InsertChipCard, match="insert the card") as info:
        window.entry_mode(service, TOKEN)
    assert f"service code {service[0]}xx" in str(info.value) and PAN not in str(info.value)
    assert isinstance(info.value, SwipeError)  # a swipe error: the operator is told what to do
    with pytest.raises(InsertChipCard):  # the driver refuses too: no caller can forget the policy
        swiped_card(parse_swipe(CHIP_T2), KEY)


def test_after_a_failed_chip_read_the_stripe_goes_once_as_fallback(window: FallbackWindow,
                                                                   clock: VirtualClock) -> None:
    window.chip_failed("CardMute", pan_token=None)
    clock.advance(59.0)
    assert window.entry_mode("201", TOKEN) == "fallback"
    card = swiped_card(parse_swipe(CHIP_T2), KEY, fallback=True)
    assert card.entry_mode == "fallback"
    with pytest.raises(InsertChipCard, match="no chip read of this card failed"):  # the window is used up
        window.entry_mode("201", TOKEN)


def test_the_fallback_window_closes(window: FallbackWindow, clock: VirtualClock) -> None:
    window.chip_failed("CardMute")
    clock.advance(61.0)
    assert not window.open
    with pytest.raises(InsertChipCard, match="more than 60 s ago"):
        window.entry_mode("201", TOKEN)


def test_a_good_chip_read_closes_the_window(window: FallbackWindow) -> None:
    window.chip_failed("CardDataError")
    window.chip_read()
    with pytest.raises(InsertChipCard):
        window.entry_mode("201", TOKEN)


def test_the_failed_chip_read_of_another_card_allows_no_fallback(window: FallbackWindow) -> None:
    window.chip_failed("CardStatusError", pan_token=pan_token("5413330089010434", KEY))
    with pytest.raises(InsertChipCard, match="another card"):
        window.entry_mode("201", TOKEN)


def test_fallback_is_never_claimed_for_a_stripe_only_card() -> None:
    assert swiped_card(parse_swipe(STRIPE_T2), KEY, fallback=True).entry_mode == "swipe"


def test_track_3_is_read_and_checked_against_track_2() -> None:
    swipe = parse_swipe(STRIPE_T2 + T3)
    assert swipe.has_track3
    card = swiped_card(swipe, KEY)
    assert card.track3 is not None and card.track3.field_value().startswith(f"01{PAN}D156")
    with pytest.raises(SwipeError, match="track 3 and track 2 disagree"):
        parse_swipe(STRIPE_T2 + T3.replace(PAN, "4000000000000002"))
    with pytest.raises(SwipeError, match="track 3: characters"):
        parse_swipe(STRIPE_T2 + ";01" + PAN + "=15A?")


def test_a_swipe_without_track_2_is_swiped_again() -> None:
    with pytest.raises(SwipeError, match="track 2 was not read"):
        swiped_card(parse_swipe(f"%B{PAN}^TEST/CARD^2812101100000000?"), KEY)


def test_track_data_masks_itself_everywhere() -> None:
    card = swiped_card(parse_swipe(STRIPE_T2 + T3), KEY)
    t2 = card.track2
    assert isinstance(t2, TrackData)
    shown = [str(t2), repr(t2), f"{t2}", repr(card), str(card), t2.__json__()]
    for text in shown:
        assert PAN not in text and "2812101100000000" not in text
    with pytest.raises(TypeError):
        pickle.dumps(t2)
    with pytest.raises(TypeError):
        json.dumps(t2)
