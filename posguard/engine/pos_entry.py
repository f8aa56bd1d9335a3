"""Point-of-service entry mode (field 22), card sequence number (field 23) and the CUP read flags (60.4, 60.5),
declared per dialect family as data.

Field 22 is n3: positions 1-2 say how the PAN was read, position 3 is about the PIN.

* **ISO 8583:1987** (``iso87``, ``iso87ascii``, ``iso87bcd``): 01 manual (key entry), 02 magnetic stripe
  whose track data is *not* sent whole, 05 chip (ICC), 07 contactless chip, 80 chip card read from its stripe
  after the chip failed (fallback, full track sent), 90 magnetic stripe read in full and sent unaltered in
  field 35/45. The third digit is the terminal's PIN entry capability: 1 can accept a PIN, 2 cannot
  (ISO 8583:1987 field 22; the Mastercard/Visa usage of 80/90 as in the public DE 22 tables). This terminal
  sends track 2 unaltered in field 35, so a swipe is 90x, never 02x.
* **CUP** (China UnionPay POS): 01 manual, 02 magnetic stripe, 05 contact IC card, 07 contactless IC card
  (qPBOC); the third digit says whether *this* request carries a PIN: 1 PIN included (field 52), 2 no PIN
  (``emv-keys.md`` section C). A fallback is a magnetic stripe read (02x) flagged in field 60: 60.4 terminal
  read capability, 60.5 IC card condition code, 2 = the chip read failed and the stripe was used
  (``pos-flows.md`` section B field 60: "read capability, fallback flag"). **Second sources** (checked for
  issue 11): (1) the UnionPay POS application ``CaoEnXin/LiaoYang_POS`` ``Src/tranproc.c``:
  ``SetCommReqField()`` sets field 22 to ``02`` for ``FALLBACK_SWIPED`` as for a plain swipe (a ``95`` is
  commented out) and ``SetCommField60()`` writes 60 = type + batch + network code + ``500`` and, for
  ``FALLBACK_SWIPED``, ``szField60[12] = '2'`` (60.4 = 5, 60.5 = 2); (2) the CUP field-60 "transaction
  medium" table quoted at https://www.cnblogs.com/leegoo/p/archive/2013/11/18 : "chip-and-stripe card read
  by its stripe (Fall Back)" = 22 positions 1-2 ``02``/``90``, read capability ``5``/``6``, IC card condition
  code ``2`` "降级 (fallback)" (``1`` is an irregular swipe of a chip card). Both agree with this module.

Field 23 is the card (PAN) sequence number, tag 5F34 of a chip card (n3, e.g. 5F34 = 01 -> ``001``), sent for
chip and contactless reads when the card has it (EMV Book 3 Annex A; ``emv-keys.md`` section A.10).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["ENTRY_MODES", "PAN_ENTRY", "pos_entry_mode", "card_sequence_number", "cup_read_flags",
           "CHIP_MODES", "UnknownEntryMode"]

#: how a card can come in (``CardData.entry_mode``)
ENTRY_MODES: Final = ("chip", "contactless", "swipe", "fallback", "manual")
#: entry modes whose card data came from the chip (field 23, TC upload, CUP 60.3 = 205 detail)
CHIP_MODES: Final = frozenset({"chip", "contactless"})

#: field 22 positions 1-2 per dialect family and entry mode (see the module docstring for the sources)
PAN_ENTRY: Final[Mapping[str, Mapping[str, str]]] = {
    "iso": {"manual": "01", "chip": "05", "contactless": "07", "fallback": "80", "swipe": "90"},
    "cup": {"manual": "01", "chip": "05", "contactless": "07", "fallback": "02", "swipe": "02"},
}
#: CUP 60.4: terminal read capability: 5 = contact IC card reader (with magnetic stripe)
CUP_READ_CAPABILITY: Final = "5"
#: CUP 60.5: IC card condition code: 0 = not a fallback, 2 = fallback (the chip read failed, stripe used)
CUP_CONDITION: Final[Mapping[bool, str]] = {False: "0", True: "2"}


class UnknownEntryMode(ValueError):
    """A card's entry mode that no dialect family declares a field 22 for."""


def family_of(uses_field_60: bool) -> str:
    """The dialect family of a profile: CUP-style profiles carry field 60."""
    return "cup" if uses_field_60 else "iso"


def pos_entry_mode(family: str, entry_mode: str, *, pin_included: bool = False, pin_capable: bool = True) -> str:
    """Field 22 for a card read ``entry_mode`` in ``family`` (``iso`` or ``cup``).

    ``pin_included``: the request carries an online PIN block (field 52): the CUP third digit (1 / 2).
    ``pin_capable``: the terminal can accept a PIN (a PIN pad is configured): the ISO third digit (1 / 2).

    >>> pos_entry_mode("iso", "swipe"), pos_entry_mode("iso", "fallback"), pos_entry_mode("cup", "chip")
    ('901', '801', '052')
    >>> pos_entry_mode("cup", "chip", pin_included=True)
    '051'
    """
    try:
        pan_entry = PAN_ENTRY[family][entry_mode]
    except KeyError:
        raise UnknownEntryMode(f"no field 22 for entry mode {entry_mode!r} in the {family!r} family; known: "
                               f"{', '.join(ENTRY_MODES)}") from None
    if family == "cup":
        return pan_entry + ("1" if pin_included else "2")
    return pan_entry + ("1" if pin_capable else "2")


def card_sequence_number(entry_mode: str, pan_sequence: str | None) -> str | None:
    """Field 23 from 5F34 (two BCD digits), for chip and contactless reads only; None when not sent.

    >>> card_sequence_number("chip", "01"), card_sequence_number("swipe", "01"), card_sequence_number("chip", None)
    ('001', None, None)
    """
    if entry_mode not in CHIP_MODES or not pan_sequence:
        return None
    if not pan_sequence.isdigit() or len(pan_sequence) > 3:
        raise UnknownEntryMode(f"tag 5F34 (PAN sequence number) {pan_sequence!r} is not 1-3 digits")
    return f"{int(pan_sequence):03d}"


def cup_read_flags(entry_mode: str) -> str:
    """CUP 60.4 + 60.5 for a card request: read capability, then the fallback flag.

    >>> cup_read_flags("chip"), cup_read_flags("fallback")
    ('50', '52')
    """
    return CUP_READ_CAPABILITY + CUP_CONDITION[entry_mode == "fallback"]
