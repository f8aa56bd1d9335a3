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


@pytest.mark.parametrize(("key", "data", "mac"), [
    # RFC 4231 section 4: test cases 1, 2 and 6 (a key longer than the SHA-256 block is hashed first)
    (bytes([0x0B]) * 20, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (bytes([0xAA]) * 131, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
])
def test_token_is_hmac_sha256_per_rfc_4231(key: bytes, data: str, mac: str) -> None:
    """The token keeps its keyed states per key (no key set-up per card read): still HMAC-SHA256, truncated."""
    assert pan_token(data, key) == mac[:32]
    assert pan_token(data, bytearray(key)) == mac[:32]  # the same key given as a bytearray


def test_token_matches_the_standard_library_hmac_for_many_keys() -> None:
    import hashlib
    import hmac
    import random

    rng = random.Random(11)
    for n in range(1, 140, 7):
        key = rng.randbytes(n)
        pan = "".join(rng.choice("0123456789") for _ in range(12 + n % 8))
        assert pan_token(pan, key) == hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()[:32]
