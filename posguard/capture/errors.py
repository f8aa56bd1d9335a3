"""The error of a capture that cannot be read or replayed (its own module, so that the record kinds' declared
keys in :mod:`posguard.capture.format` can name the operator actions' arguments of :mod:`posguard.capture.ops`,
which raises it too, without an import cycle)."""

from __future__ import annotations

from posguard.sensitive import mask_digits_in_text

__all__ = ["CaptureError"]


class CaptureError(ValueError):
    """A capture file that cannot be read; ``line`` is 1-based, 0 for the file as a whole (not found, not text).

    Its text never holds a card number: a value quoted from the file (a PAN pasted where a card's ``ref``, a
    ``txn`` or an action belongs) has its digit runs of card-number length masked here, once for every message."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {mask_digits_in_text(message)}" if line else mask_digits_in_text(message))
        self.line = line
