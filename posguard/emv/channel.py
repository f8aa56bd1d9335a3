"""A card channel: one place where the session's commands go out, are counted and traced.

The trace holds the step name, status word and response length only: never APDU data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from posguard.drivers.errors import ReaderError
from posguard.drivers.reader import Reader, Response
from posguard.emv.errors import CardDataError
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import TLV, parse_tlv

log = logging.getLogger("posguard.emv")


class CardChannel:
    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.commands = 0
        self.trace: list[str] = []

    def send(self, apdu: bytes, stage: str) -> Response:
        """Transmit ``apdu``; reader errors get a note naming ``stage`` and propagate with their type."""
        self.commands += 1
        try:
            r = self.reader.transmit(apdu)
        except ReaderError as e:
            e.add_note(f"during EMV step: {stage}")
            self.trace.append(f"{stage}: {type(e).__name__}")
            raise
        self.trace.append(f"{stage}: SW {r.sw:04X} ({len(r.data)} bytes)")
        log.debug("%s: SW %04X, %d bytes", stage, r.sw, len(r.data))
        return r


@dataclass(frozen=True, slots=True, repr=False)
class CardTLV(TLV):
    """A card's data object with its nested objects parsed once, when the answer was checked: the session
    looks into the same templates several times (``children``, ``find_tag``) without parsing them again."""

    kids: tuple[TLV, ...] = field(default=(), compare=False)

    @property
    def children(self) -> list[TLV]:
        return list(self.kids)


def parse_card_tlv(data: bytes, *, path: str, stage: str) -> list[TLV]:
    """parse_tlv that reports corrupt card data as CardDataError (path and offset, never values); every
    constructed object is parsed down to its leaves here, once (:class:`CardTLV`)."""
    try:
        return [_tree(item) for item in parse_tlv(data, path=path)]
    except TLVError as e:
        raise CardDataError(f"corrupt TLV from the card: {e.reason}", stage=stage, path=e.path,
                            offset=e.offset) from None


def _tree(item: TLV) -> TLV:
    if not item.constructed:
        return item
    return CardTLV(item.tag, item.value, item.offset, tuple(_tree(child) for child in item.children))
