"""GemPC Twin serial reader: CCID over a serial line, spoken directly (no pcscd).

- :mod:`posguard.drivers.twin.frames`: the CCID-over-serial frame layout (constants, LRC, building a frame),
  shared with the capture;
- :mod:`posguard.drivers.twin.link`: the serial link (line decoder with resync, NAK/retransmission,
  fast path, counters, frame observer);
- :mod:`posguard.drivers.twin.reader`: :class:`~posguard.drivers.twin.reader.TwinReader` behind the common
  :class:`~posguard.drivers.reader.Reader` interface, and ``probe``.
"""
