"""The one reader interface shared by every transport (PC/SC, GemPC Twin serial).

A :class:`Reader` waits for card events, powers the card, and exchanges APDUs. ``transmit`` handles the
T=0 procedure bytes every transport can meet: ``61xx`` (fetch the rest with GET RESPONSE) and ``6Cxx``
(resend with the corrected Le). Transports implement only :meth:`Reader.transmit_raw` and the lifecycle.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple

from posguard.drivers.errors import TransportError

#: Upper bound of GET RESPONSE / resend rounds for one command; a card that keeps answering 61xx is broken.
MAX_T0_ROUNDS = 64


class Response(NamedTuple):
    """A response APDU: ``data`` (without SW) and the status word ``sw`` (e.g. 0x9000).

    A NamedTuple: building one is the cheapest immutable object in CPython (the APDU path is benchmarked).
    """

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    def __repr__(self) -> str:
        # Response data may hold card data (PAN, track 2): only its length is shown.
        return f"Response(sw={self.sw:04X}, data=<{len(self.data)} bytes>)"


class CardEvent(enum.Enum):
    INSERTED = "inserted"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """One reader as listed by discovery."""

    name: str
    transport: str  # "pcsc" | "twin-serial"
    card_present: bool
    atr: bytes | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "transport": self.transport,
            "card_present": self.card_present,
            "atr": self.atr.hex().upper() if self.atr is not None else None,
            "detail": self.detail,
        }


class Reader(abc.ABC):
    """A card reader with one slot.

    Lifecycle: ``wait_for_card`` -> ``power_on`` (ATR) -> ``transmit``... -> ``power_off`` ->
    ``wait_for_removal``; ``close`` releases the transport. Every wait takes a timeout in seconds and raises
    a typed :class:`~posguard.drivers.errors.ReaderError` instead of blocking longer.
    """

    name: str

    @abc.abstractmethod
    def card_present(self) -> bool:
        """True if a card is in the slot now."""

    @abc.abstractmethod
    def wait_for_event(self, timeout: float) -> CardEvent | None:
        """Wait up to ``timeout`` s for the next card insertion or removal; None on timeout."""

    @abc.abstractmethod
    def wait_for_card(self, timeout: float) -> None:
        """Return when a card is present; raise NoCard after ``timeout`` s."""

    @abc.abstractmethod
    def wait_for_removal(self, timeout: float) -> None:
        """Return when the slot is empty; raise CardStillPresent after ``timeout`` s."""

    @abc.abstractmethod
    def power_on(self) -> bytes:
        """Power (or reset) the card and return its ATR."""

    @abc.abstractmethod
    def transmit_raw(self, apdu: bytes) -> bytes:
        """Send one command APDU and return the raw response including SW1 SW2 (no T=0 handling)."""

    @abc.abstractmethod
    def power_off(self) -> None:
        """Power the card down (safe to call when already off)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the transport (safe to call twice)."""

    def transmit_raw_checked(self, apdu: bytes) -> bytes:
        """``transmit_raw`` that refuses an answer without status word (transports may say why)."""
        raw = self.transmit_raw(apdu)
        if len(raw) < 2:
            raise TransportError(
                f"response of {len(raw)} bytes has no status word", reader=self.name,
                hint="the card or reader sent a truncated answer: re-insert the card and retry",
            )
        return raw

    def transmit(self, apdu: bytes) -> Response:
        """Send ``apdu``; follow 61xx with GET RESPONSE and 6Cxx with a resend using the card's Le."""
        raw = self.transmit_raw_checked(apdu)
        sw1 = raw[-2]
        if sw1 != 0x61 and sw1 != 0x6C:
            return Response(raw[:-2], (sw1 << 8) | raw[-1])
        return self._t0_rounds(apdu, raw)

    def _t0_rounds(self, apdu: bytes, raw: bytes) -> Response:
        """Finish a command whose first answer ``raw`` was a T=0 procedure status (61xx or 6Cxx)."""
        data = bytearray()
        command = apdu
        for _ in range(MAX_T0_ROUNDS):
            data += raw[:-2]
            sw1, sw2 = raw[-2], raw[-1]
            if sw1 == 0x61:
                command = bytes((0x00, 0xC0, 0x00, 0x00, sw2))
            elif sw1 == 0x6C:
                command = _with_le(command, sw2)
                data.clear()  # the card discarded the previous answer; the resend repeats it whole
            else:
                return Response(bytes(data), (sw1 << 8) | sw2)
            raw = self.transmit_raw_checked(command)
        raise TransportError(
            f"card kept answering 61xx/6Cxx after {MAX_T0_ROUNDS} rounds", reader=self.name,
            hint="the card is misbehaving: re-insert it; if it persists, refuse the card",
        )

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def apdu_case(apdu: bytes) -> tuple[int, int]:
    """Return (case, Lc) of a short command APDU: case 1 (header only), 2 (Le), 3 (Lc+data), 4 (Lc+data+Le).

    Raises ValueError for lengths that are not a valid short APDU.
    """
    n = len(apdu)
    if n < 4:
        raise ValueError(f"command APDU of {n} bytes is shorter than its 4-byte header")
    if n == 4:
        return 1, 0
    if n == 5:
        return 2, 0
    lc = apdu[4]
    if lc and n == 5 + lc:
        return 3, lc
    if lc and n == 6 + lc:
        return 4, lc
    raise ValueError(f"command APDU of {n} bytes does not match its Lc {lc} (byte 4)")


def _with_le(apdu: bytes, le: int) -> bytes:
    case, lc = apdu_case(apdu)
    if case == 1:
        return apdu + bytes((le,))
    if case == 3:
        return apdu + bytes((le,))
    return apdu[:-1] + bytes((le,))
