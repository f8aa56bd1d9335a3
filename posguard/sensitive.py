"""Card data that guards itself, and what each class of card data means wherever it goes.

A leaf module (it imports nothing of posguard's) that every layer may use, the codec included.

A full PAN, track data, PIN block, CVV or key must never reach a log line, an exception message, a repr,
a capture file or the journal in clear. The helpers here mask or tokenise at the edge so no caller has to
remember: :class:`Pan` prints masked everywhere and only :meth:`Pan.reveal` gives the clear value.

Which fields are card data is declared once, by the dialect (``FieldSpec.sensitive``, one of
:data:`SENSITIVITY_CLASSES`), and for field 55 by the EMV tag table (:mod:`posguard.iso8583.emv_tags`).
What a class means is declared once, here, in :data:`TREATMENTS`: how it is shown (``describe()``, JSON, the
journal), whether it stays in the wire images kept as incident evidence, and whether it stays in a capture
(where PANs are then replaced by test PANs). Everything that masks a message derives from these two tables.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, Protocol

__all__ = [
    "Pan",
    "TrackData",
    "PinBlock",
    "Sensitivity",
    "SENSITIVITY_CLASSES",
    "Treatment",
    "TREATMENTS",
    "mask_pan",
    "mask_track",
    "mask_track2",
    "mask_track1",
    "mask_value",
    "masker_for",
    "mask_digits_in_text",
    "scrub",
    "pan_token",
    "luhn_ok",
    "luhn_check_digit",
    "mask_contact",
]

Sensitivity = Literal["pan", "track", "pin", "icc", "mac", "key", "expiry"]
SENSITIVITY_CLASSES: Final = ("pan", "track", "pin", "icc", "mac", "key", "expiry")
Shown = Literal["pan", "track", "tags", "hidden"]


@dataclass(frozen=True)
class Treatment:
    """What one class of card data becomes wherever a message leaves the codec.

    ``shown``: how ``describe()``, masked JSON and the journal show it (``pan`` 6+4, ``track`` PAN masked and
    the rest hidden, ``tags`` the EMV tag list with only display-safe values, ``hidden`` stars);
    ``in_evidence``: kept in the wire images an incident keeps as evidence;
    ``in_capture``: kept in a capture file (which replaces every PAN by a consistent test PAN).
    """

    shown: Shown
    in_evidence: bool
    in_capture: bool
    why: str


TREATMENTS: Final[Mapping[str, Treatment]] = {
    "pan": Treatment("pan", False, True, "primary account number (PCI DSS: 6+4 at most)"),
    "track": Treatment("track", False, True, "magnetic stripe / track 2 equivalent data"),
    "expiry": Treatment("hidden", False, True, "expiry date, card data in combination with the PAN"),
    "icc": Treatment("tags", False, True, "chip data: PAN, track 2 equivalent and name inside"),
    "pin": Treatment("hidden", False, False, "PIN block and its security control: never stored"),
    "key": Treatment("hidden", False, False, "keys and key check material: never stored"),
    "mac": Treatment("hidden", True, True, "message authentication code: no card data, kept for replay"),
}

_PAN_RE = re.compile(r"\d{12,19}")


def luhn_check_digit(partial: str) -> str:
    """The Luhn check digit that makes ``partial + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(pan: str) -> bool:
    """True when ``pan`` is all digits and passes the Luhn (mod 10) check."""
    if not pan.isdigit() or len(pan) < 2:
        return False
    return luhn_check_digit(pan[:-1]) == pan[-1]


def mask_pan(pan: str) -> str:
    """First six and last four digits visible, the rest ``*`` (PCI DSS display rule).

    Shorter values (under 13 characters) keep only the last four visible, and values of four or fewer
    characters are masked whole, so a fragment of a PAN never leaks by being short.
    """
    n = len(pan)
    if n >= 13:
        return pan[:6] + "*" * (n - 10) + pan[-4:]
    if n > 4:
        return "*" * (n - 4) + pan[-4:]
    return "*" * n


def mask_track2(track2: str) -> str:
    """Mask track 2 (or field 35) data: the PAN is masked, everything after the separator is hidden."""
    for sep in ("=", "D", "d"):
        idx = track2.find(sep)
        if idx > 0:
            return mask_pan(track2[:idx].lstrip(";")) + sep + "*" * (len(track2) - idx - 1)
    return "*" * len(track2)


def mask_track1(track1: str) -> str:
    """Mask track 1 data: PAN masked, name kept, discretionary data hidden."""
    parts = track1.split("^")
    if len(parts) >= 3:
        head = parts[0]
        prefix = head[:2] if head[:2] in ("%B", "%b") else (head[:1] if head[:1] in "Bb" else "")
        return prefix + mask_pan(head[len(prefix):]) + "^" + parts[1] + "^" + "*" * len("^".join(parts[2:]))
    return "*" * len(track1)


def mask_track(track: str) -> str:
    """Mask track data of either kind: track 1 (``%B...^NAME^...``) or track 2 / field 35 / track 3."""
    return mask_track1(track) if "^" in track else mask_track2(track)


def masker_for(sensitivity: str | None) -> Callable[[str], str]:
    """The function that shows a field's text as :data:`TREATMENTS` says for its class (chosen once per field,
    then called per value; ``tags`` — field 55 — is shown as stars here: the per-tag view needs the TLV parser)."""
    if sensitivity is None:
        return _as_is
    shown = TREATMENTS[sensitivity].shown if sensitivity in TREATMENTS else "hidden"
    if shown == "pan":
        return mask_pan
    if shown == "track":
        return mask_track
    return _stars


def _as_is(text: str) -> str:
    return text


def _stars(text: str) -> str:
    return "*" * min(len(text), 16)


def mask_value(sensitivity: str, text: str) -> str:
    """``text`` (a field value as text or hex) shown as :data:`TREATMENTS` says for its class."""
    return masker_for(sensitivity)(text)


_RUN = re.compile(r"\d{13,}")


def scrub(text: str) -> str:
    """Mask the PANs in free text and keep every other number readable.

    :func:`mask_digits_in_text` masks every 12-19 digit run, which would also hide the 12-digit RRN a
    customer needs as evidence. A PAN is 13-19 digits and passes the Luhn check, so this masks exactly those
    runs (and any run longer than 19, which may hide one), keeping RRNs, STANs and amounts.

    >>> scrub("card 4761739001010119 RRN 318220000001")
    'card 476173******0119 RRN 318220000001'
    """

    def one(m: re.Match[str]) -> str:
        run = m.group(0)
        if len(run) > 19 or luhn_ok(run):
            return mask_pan(run) if len(run) <= 19 else "*" * len(run)
        return run

    return _RUN.sub(one, text)


def mask_digits_in_text(text: str) -> str:
    """Mask every run of 12 to 19 digits in free text (a last line of defence for messages and logs)."""
    return _PAN_RE.sub(lambda m: mask_pan(m.group(0)), text)


def pan_token(pan: str, key: bytes) -> str:
    """A keyed, irreversible token for matching the same card across transactions (HMAC-SHA256, 32 hex).

    HMAC as RFC 2104 defines it, H((K ^ opad) || H((K ^ ipad) || PAN)), with the two keyed SHA-256 states
    computed once per key (:func:`_keyed_sha256`) and copied per PAN: the same value as
    ``hmac.new(key, pan, sha256)``, without setting up the key for every card read.
    """
    if not key:
        raise ValueError("pan_token needs a non-empty key (the terminal's tokenisation key)")
    inner_state, outer_state = _keyed_sha256(bytes(key))
    inner = inner_state.copy()
    inner.update(pan.encode("ascii", "replace"))
    outer = outer_state.copy()
    outer.update(inner.digest())
    return outer.hexdigest()[:32]


class _HashState(Protocol):
    def copy(self) -> _HashState: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _sha256_constructor() -> Callable[[bytes], _HashState]:
    """CPython's own SHA-256 when present (the value is the same SHA-256), hashlib's (OpenSSL) otherwise. Measured
    inside a card transaction, between two reader exchanges (caches cold): the OpenSSL HMAC took 50-75 us per
    token, copying these states 8-11 us (``benchmarks/bench_reader.py`` section (d))."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # CPython 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.11
        except ImportError:
            return hashlib.sha256
    return sha256  # type: ignore[no-any-return,unused-ignore]


_SHA256 = _sha256_constructor()
_SHA256_BLOCK = 64


@lru_cache(maxsize=8)
def _keyed_sha256(key: bytes) -> tuple[_HashState, _HashState]:
    """SHA-256 states after absorbing K ^ ipad and K ^ opad (RFC 2104 section 2), per tokenisation key.
    Held in process memory only, as the key itself is; never printed (an lru_cache shows no contents)."""
    if len(key) > _SHA256_BLOCK:
        key = _SHA256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\x00")
    return (_SHA256(key.translate(_IPAD)), _SHA256(key.translate(_OPAD)))


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class _PrintsMasked:
    """What a card-data value shows wherever it is printed: ``str()``, f-strings/``format`` and ``__json__``
    all give the subclass's ``masked`` form, and pickling (which would carry the clear value) is refused."""

    __slots__ = ()

    @property
    def masked(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.masked

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __json__(self) -> str:
        return self.masked

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} values are not picklable; store a token or the masked form")


class Pan(_PrintsMasked):
    """A primary account number that prints masked everywhere.

    ``str()``, ``repr()``, f-strings, ``%`` formatting and :func:`json.dumps` (via ``__json__``/``masked``)
    all give the masked form. The clear value is only available through :meth:`reveal`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Pan):
            value = value.reveal()
        self._value = str(value)

    def reveal(self) -> str:
        """The clear PAN. Call only where the clear value is required (building the host request)."""
        return self._value

    @property
    def masked(self) -> str:
        return mask_pan(self._value)

    @property
    def last4(self) -> str:
        return self._value[-4:]

    @property
    def bin(self) -> str:
        return self._value[:6]

    def token(self, key: bytes) -> str:
        return pan_token(self._value, key)

    def luhn_ok(self) -> bool:
        return luhn_ok(self._value)

    def __repr__(self) -> str:
        return f"Pan({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pan):
            return hmac.compare_digest(self._value, other._value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Pan", self._value))

    def __len__(self) -> int:
        return len(self._value)


class TrackData(_PrintsMasked):
    """Magnetic stripe track 2 or 3 as the reader gave it (between the sentinels), printing masked everywhere.

    Only :meth:`field_value` (the ISO 8583 field 35/36 image: ``=`` written as ``D``, ISO 7813 / pos-flows.md
    section B) and :meth:`reveal` give the clear data; ``str``/``repr``/f-strings show :func:`mask_track2`.
    """

    __slots__ = ("_value", "track_no")

    def __init__(self, value: str, *, track_no: int = 2) -> None:
        if track_no not in (2, 3):
            raise ValueError(f"track {track_no}: only tracks 2 and 3 travel in ISO 8583 (fields 35, 36)")
        self._value = str(value)
        self.track_no = track_no

    def reveal(self) -> str:
        return self._value

    def field_value(self) -> str:
        """The value of field 35 (track 2) or 36 (track 3): the track with the separator ``=`` as ``D``."""
        return self._value.replace("=", "D")

    @property
    def masked(self) -> str:
        return mask_track2(self._value)

    def __repr__(self) -> str:
        return f"TrackData({self.track_no}, {self.masked!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrackData):
            return self.track_no == other.track_no and hmac.compare_digest(self._value, other._value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("TrackData", self.track_no, self._value))


class PinBlock:
    """An encrypted PIN block (ISO 9564, field 52) as the PIN pad gave it: prints as ``PinBlock(<8 bytes>)``.

    The terminal never holds the clear PIN, but the block is still PIN data (PCI PIN): not logged, not
    journaled, not captured, not picklable. Only :meth:`reveal` gives the bytes (building field 52).
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != 8:
            raise ValueError("a PIN block is 8 bytes")
        self._value = value

    def reveal(self) -> bytes:
        """The 8 encrypted bytes, for field 52 only."""
        return self._value

    def __repr__(self) -> str:
        return "PinBlock(<8 bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PinBlock):
            return hmac.compare_digest(self._value, other._value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("PinBlock", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("PIN blocks are not picklable: they are never stored")


def mask_contact(contact: str) -> str:
    """Contact details are protected like card data: show only enough to recognise them. A ``phone:`` or
    ``email:`` prefix (how the merchant gave it) is kept as a word.

    >>> mask_contact("phone:13912345678"), mask_contact("li.lei@example.cn")
    ('phone *******5678', 'l***@example.cn')
    """
    how, sep, rest = contact.partition(":")
    if sep and how.strip().lower() in ("phone", "email"):
        return f"{how.strip().lower()} {mask_contact(rest.strip())}"
    if "@" in contact:
        name, _, domain = contact.partition("@")
        return (name[:1] + "***@" + domain) if name else "***@" + domain
    digits = [c for c in contact if c.isdigit()]
    if len(digits) >= 7:
        return "*" * (len(digits) - 4) + "".join(digits[-4:])
    return "*" * len(contact)

