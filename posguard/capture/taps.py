"""Capture taps: what the live till (``posguard run``, ``posguard demo``) records from its card readers.

A :class:`RecordingReader` keeps the ATR and APDUs of one card read; a :class:`FrameTap` holds a GemPC Twin's
raw frames. Both hold what they saw until the card's PAN is known, so the capture writer can sanitise it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FrameTap", "RecordingReader", "as_reader", "tap_frames"]


class RecordingReader:
    """Wraps a reader; keeps the ATR and APDUs of one card read so they can be written once the PAN is known."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.atr = b""
        self.apdus: list[tuple[bytes, bytes]] = []

    def power_on(self) -> bytes:
        self.atr = bytes(self.inner.power_on())
        self.apdus = []
        return self.atr

    def transmit_raw(self, apdu: bytes) -> bytes:
        r = bytes(self.inner.transmit_raw(apdu))
        self.apdus.append((bytes(apdu), r))
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FrameTap:
    """The Twin link's frame observer: holds the frames of a card read until its PAN is known, then writes
    them (sanitised, with the time they crossed the line) on :meth:`flush`."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.held: list[tuple[float, str, bytes]] = []

    def __call__(self, direction: str, frame: bytes) -> None:
        self.held.append((self.writer.now(), direction, bytes(frame)))

    def flush(self) -> None:
        held, self.held = self.held, []
        for at, direction, frame in held:
            self.writer.frame(direction, frame, at=at)


def tap_frames(reader: Any, writer: Any) -> FrameTap | None:
    """Attach a :class:`FrameTap` to ``reader`` when it is a GemPC Twin (its link reports raw frames)."""
    link = getattr(reader, "link", None)
    if writer is None or link is None or not hasattr(link, "on_frame"):
        return None
    tap = FrameTap(writer)
    link.on_frame = tap
    return tap


def as_reader(wrapper: RecordingReader) -> Any:
    """A :class:`~posguard.drivers.reader.Reader` subclass instance delegating to ``wrapper``."""
    from posguard.drivers.reader import CardEvent, Reader

    class _Delegate(Reader):
        name = wrapper.name

        def card_present(self) -> bool:
            return bool(wrapper.inner.card_present())

        def wait_for_event(self, timeout: float) -> CardEvent | None:
            event: CardEvent | None = wrapper.inner.wait_for_event(timeout)
            return event

        def wait_for_card(self, timeout: float) -> None:
            wrapper.inner.wait_for_card(timeout)

        def wait_for_removal(self, timeout: float) -> None:
            wrapper.inner.wait_for_removal(timeout)

        def power_on(self) -> bytes:
            return wrapper.power_on()

        def transmit_raw(self, apdu: bytes) -> bytes:
            return wrapper.transmit_raw(apdu)

        def power_off(self) -> None:
            wrapper.inner.power_off()

        def close(self) -> None:
            wrapper.inner.close()

    return _Delegate()
