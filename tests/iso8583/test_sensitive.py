from __future__ import annotations

import json
import pickle

import pytest

from posguard.sensitive import Pan, luhn_ok, mask_digits_in_text, mask_pan, mask_track2, pan_token


def test_pan_masks_itself_everywhere() -> None:
    p = Pan("4761739001010119")
    for text in (str(p), repr(p), f"{p}", f"{p}", json.dumps({"pan": str(p)})):
        assert "4761739001010119" not in text
    assert p.masked == "476173******0119" and p.reveal() == "4761739001010119"
    with pytest.raises(TypeError):
        pickle.dumps(p)


def test_masking_helpers() -> None:
    assert mask_pan("6250947000000000014") == "625094*********0014"
    assert mask_pan("1234") == "****"
    assert mask_track2("4761739001010119=28122011000") == "476173******0119=***********"
    assert mask_digits_in_text("card 4761739001010119 ok") == "card 476173******0119 ok"
    assert luhn_ok("4761739001010119") and not luhn_ok("4761739001010118")


def test_tokens_are_keyed_and_stable() -> None:
    a = pan_token("4761739001010119", b"k1")
    assert a == pan_token("4761739001010119", b"k1") != pan_token("4761739001010119", b"k2")
    assert "4761739001010119" not in a and len(a) == 32
