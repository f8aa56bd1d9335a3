"""Capture and replay: JSON Lines records of a trading day, sanitised as written (``docs/capture-format.md``)."""

from posguard.capture.format import CAPTURE_VERSION, KINDS, Capture, CaptureError, CaptureWriter, read_capture
from posguard.capture.sanitize import Sanitiser, substitute_pan

__all__ = ["CAPTURE_VERSION", "KINDS", "Capture", "CaptureError", "CaptureWriter", "read_capture", "Sanitiser",
           "substitute_pan"]
