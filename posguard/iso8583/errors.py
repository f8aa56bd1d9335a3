"""Typed codec errors that say what was wrong, where, and what to check.

Every error carries the field path (``"35"``, ``"55.9F34"``, ``"90.2"``), the byte offset into the
message, what was expected and what was found, a short hex window around the offset with card data
masked, and where it can a hint at the likely spec mistake. Clear card data never appears in the text.
"""

from __future__ import annotations

from collections.abc import Iterable

from posguard.sensitive import mask_digits_in_text

__all__ = ["Iso8583Error", "DecodeError", "EncodeError", "TLVError", "SpecError", "hex_window"]


def hex_window(
    data: bytes,
    offset: int,
    *,
    masked_spans: Iterable[tuple[int, int]] = (),
    before: int = 6,
    after: int = 10,
) -> str:
    """A hex dump of ``data`` around ``offset`` with bytes inside ``masked_spans`` shown as ``**``.

    The byte at ``offset`` is bracketed: ``30 32 [30] 30``.
    """
    lo = max(0, offset - before)
    hi = min(len(data), offset + after)
    spans = list(masked_spans)
    parts: list[str] = []
    for i in range(lo, hi):
        masked = any(s <= i < e for s, e in spans)
        h = "**" if masked else f"{data[i]:02X}"
        parts.append(f"[{h}]" if i == offset else h)
    if offset >= len(data):
        parts.append("[<end>]")
    prefix = "… " if lo > 0 else ""
    suffix = " …" if hi < len(data) else ""
    return prefix + " ".join(parts) + suffix


#: the paths that name no field, as a reader says them (``path`` keeps the key: "t", "p", "h", as pyiso8583's)
_PLACES = {"t": "MTI", "p": "bitmap", "h": "header"}


class Iso8583Error(ValueError):
    """Base of every error the codec raises."""

    kind = "error"

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        expected: str | None = None,
        got: str | None = None,
        window: str | None = None,
        hint: str | None = None,
    ) -> None:
        # Last line of defence: no digit run that could be a PAN survives into the text.
        self.reason = mask_digits_in_text(reason)
        self.path = path
        self.offset = offset
        self.expected = expected
        self.got = mask_digits_in_text(got) if got is not None else None
        self.window = window
        self.hint = hint
        super().__init__(self._text())

    def _text(self) -> str:
        where: list[str] = []
        if self.path is not None:
            where.append(_PLACES.get(self.path, f"field {self.path}"))
        if self.offset is not None:
            where.append(f"at byte {self.offset}")
        text = self.reason
        if where:
            text += " (" + " ".join(where) + ")"
        if self.expected is not None or self.got is not None:
            text += f"; expected {self.expected or '?'}, got {self.got or '?'}"
        if self.window:
            text += f"; bytes: {self.window}"
        if self.hint:
            text += f" — {self.hint}"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "reason": self.reason,
            "path": self.path,
            "offset": self.offset,
            "expected": self.expected,
            "got": self.got,
            "hint": self.hint,
        }


class DecodeError(Iso8583Error):
    """Raw bytes could not be decoded under the dialect."""


class EncodeError(Iso8583Error):
    """A message could not be encoded under the dialect."""


class TLVError(DecodeError):
    """A BER-TLV structure (field 55) is malformed; ``path`` names the tag, ``offset`` is within the field."""


class SpecError(Iso8583Error):
    """A dialect or field spec is itself inconsistent."""
