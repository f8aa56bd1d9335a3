"""The error of a capture that cannot be read or replayed (its own module, so that the record kinds' declared
keys in :mod:`posguard.capture.format` can name the operator actions' arguments of :mod:`posguard.capture.ops`,
which raises it too, without an import cycle)."""

from __future__ import annotations

__all__ = ["CaptureError"]


class CaptureError(ValueError):
    """A capture file that cannot be read; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
