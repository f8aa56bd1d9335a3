from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posguard.iso8583 import DecodeError, Framing, StreamDecoder, swap_tpdu


@pytest.mark.parametrize("kind,prefix", [("binary2", "0003"), ("ascii4", "30303033"), ("bcd2", "0003")])
def test_frame_prefixes(kind: str, prefix: str) -> None:
    assert Framing(kind).frame(b"abc").hex() == prefix + "616263"


@pytest.mark.parametrize("kind", ["binary2", "ascii4", "bcd2"])
@given(msgs=st.lists(st.binary(min_size=1, max_size=300), max_size=6), cuts=st.lists(st.integers(0, 2000), max_size=8),
       keepalives=st.integers(0, 3))
def test_stream_reassembles_any_split(kind: str, msgs: list[bytes], cuts: list[int], keepalives: int) -> None:
    f = Framing(kind)
    stream = f.frame(b"") * keepalives + b"".join(f.frame(m) for m in msgs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = StreamDecoder(f)
    out: list[bytes] = []
    last = 0
    for p in [*points, len(stream)]:
        out += dec.feed(stream[last:p])
        last = p
    assert out == msgs
    assert dec.pending == 0 and dec.keepalives == keepalives


def test_corrupt_length_is_an_error_not_a_hang() -> None:
    dec = StreamDecoder(Framing("ascii4"))
    with pytest.raises(DecodeError) as ei:
        dec.feed(b"12x4abc")
    assert ei.value.path == "framing"
    with pytest.raises(DecodeError):
        StreamDecoder(Framing("binary2", max_length=100)).feed(b"\xff\xff")


def test_tpdu_swap() -> None:
    assert swap_tpdu(bytes.fromhex("6000030000AABB")).hex().upper() == "6000000003AABB"
