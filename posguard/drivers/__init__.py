"""Card readers behind one interface: PC/SC (pyscard), GemPC Twin serial (pyserial), magstripe swipe.

``posguard.drivers.pcsc`` needs pyscard (optional extra ``pcsc``) and is imported on demand.
"""

from posguard.drivers.errors import (
    CardMute,
    CardRemoved,
    CardReset,
    CardStillPresent,
    InvalidCardNumber,
    NoCard,
    NoReader,
    PartialSwipe,
    ReaderBusy,
    ReaderError,
    ReaderTimeout,
    ReaderUnplugged,
    ServiceUnavailable,
    SwipeChecksumError,
    SwipeError,
    TransportError,
)
from posguard.drivers.reader import CardEvent, Reader, ReaderInfo, Response

__all__ = [
    "CardEvent", "CardMute", "CardRemoved", "CardReset", "CardStillPresent", "InvalidCardNumber", "NoCard",
    "NoReader", "PartialSwipe", "Reader", "ReaderBusy", "ReaderError", "ReaderInfo", "ReaderTimeout",
    "ReaderUnplugged", "Response", "ServiceUnavailable", "SwipeChecksumError", "SwipeError", "TransportError",
]
