"""The simulator's pyiso8583 dialect specs and posguard's codec agree byte for byte (both directions)."""

from __future__ import annotations

import iso8583
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.host.dialects import get_spec
from posguard.iso8583 import Message


def n(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=length, max_size=length)


def n_var(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=lo, max_size=hi)


ans = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ", min_size=8, max_size=8)
hexbytes = st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper())


@st.composite
def sale_doc(draw: st.DrawFn, dialect: str) -> dict[str, str]:
    doc = {
        "t": draw(st.sampled_from(["0200", "0210", "0400", "0100"])),
        "2": draw(n_var(12, 19)),
        "3": draw(n(6)),
        "4": draw(n(12)),
        "11": draw(n(6)),
        "22": draw(n(3)),
        "25": draw(n(2)),
        "35": draw(n_var(12, 19)) + "D" + draw(n_var(4, 17)),
        "37": draw(n(12)),
        "41": draw(ans),
        "42": draw(ans) + "1234567",
        "49": draw(n(3)),
        "64": draw(hexbytes),
    }
    if dialect == "cup":
        doc["h"] = "6000030000603100000000"
        doc["60"] = draw(n_var(8, 13))
    return doc


def _agree(dialect: str, doc: dict[str, str]) -> None:
    spec = get_spec(dialect)
    ours = Message.from_dict(doc, dialect).encode()
    theirs, _ = iso8583.encode(dict(doc), spec)
    assert ours == bytes(theirs)
    decoded, _ = iso8583.decode(ours, spec)
    again = Message.decode(bytes(theirs), dialect).to_dict(reveal=True)
    for k, v in doc.items():
        assert decoded[k].upper() == v.upper()
        assert again[k].upper() == v.upper()


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_cup_wire_format_agrees(data: st.DataObject):
    _agree("cup", data.draw(sale_doc("cup")))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["iso87ascii", "iso87", "iso87bcd"]), st.data())
def test_iso_wire_formats_agree(dialect: str, data: st.DataObject):
    _agree(dialect, data.draw(sale_doc(dialect)))
