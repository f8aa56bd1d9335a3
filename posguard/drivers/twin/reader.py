"""The GemPC Twin as a :class:`~posguard.drivers.reader.Reader`: the CCID slot, spoken directly (no pcscd).

:class:`TwinReader` sends CCID commands through a :class:`~posguard.drivers.twin.link.TwinLink` and maps the
slot status and error register to the common reader errors; :func:`probe` says whether a Twin answers on a
serial port.
"""

from __future__ import annotations

import time

from posguard.drivers.errors import (
    CardMute,
    CardRemoved,
    CardStillPresent,
    NoCard,
    ReaderError,
    TransportError,
)
from posguard.drivers.reader import CardEvent, Reader, ReaderInfo, apdu_case
from posguard.drivers.twin.frames import (
    CCID_HEADER,
    PC_TO_RDR_ESCAPE,
    PC_TO_RDR_GET_SLOT_STATUS,
    PC_TO_RDR_ICC_POWER_OFF,
    PC_TO_RDR_ICC_POWER_ON,
    PC_TO_RDR_XFR_BLOCK,
)
from posguard.drivers.twin.link import SerialPort, TwinCounters, TwinLink, open_serial

__all__ = ["TwinReader", "probe"]

#: How often a wait for card movement asks the reader for its slot status.
EVENT_POLL_S = 0.1

#: CCID bError values (slot error register) -> (error class, message).
_CCID_ERRORS: dict[int, tuple[type[ReaderError], str]] = {
    0xFF: (TransportError, "command aborted by the reader"),
    0xFE: (CardMute, "card is mute (no answer)"),
    0xFD: (CardMute, "parity error talking to the card"),
    0xFC: (CardMute, "card sent more data than expected (overrun)"),
    0xFB: (TransportError, "reader hardware error"),
    0xF8: (CardMute, "card ATR has a bad TS byte"),
    0xF7: (CardMute, "card ATR has a bad TCK byte"),
    0xF6: (CardMute, "card protocol not supported"),
    0xF5: (CardMute, "card voltage class not supported"),
    0xF4: (CardMute, "procedure byte conflict"),
    0xF3: (TransportError, "protocol deactivated"),
    0xF2: (TransportError, "reader busy with an automatic sequence"),
    0xE0: (TransportError, "slot busy"),
}


def _atr_protocols(atr: bytes) -> set[int]:
    """Protocols offered by an ATR (T=0 when no TDi says otherwise)."""
    protos: set[int] = set()
    if len(atr) < 2:
        return {0}
    i = 1
    y = atr[1] >> 4
    while True:
        i += bin(y & 0x7).count("1")  # TAi, TBi, TCi
        if not y & 0x8 or i + 1 >= len(atr):
            break
        i += 1
        td = atr[i]
        protos.add(td & 0x0F)
        y = td >> 4
    return protos or {0}


def _t0_tpdu(apdu: bytes) -> bytes:
    """Command APDU -> T=0 TPDU: case 1 gets P3=00, case 4 loses Le (the card answers 61xx)."""
    case, _ = apdu_case(apdu)
    if case == 1:
        return apdu + b"\x00"
    if case == 4:
        return apdu[:-1]
    return apdu


class TwinReader(Reader):
    """A GemPC Twin on a serial port, driven without pcscd.

    ``port`` is a device path (opened 115200 8N2) or an already open pyserial-like object.
    """

    def __init__(self, port: str | SerialPort, *, timeout: float = 2.0, power_timeout: float = 4.0,
                 apdu_timeout: float = 8.0, retries: int = 2, name: str | None = None) -> None:
        if isinstance(port, str):
            self.name = name or f"GemPC Twin {port}"
            serial_port: SerialPort = open_serial(port)
        else:
            self.name = name or "GemPC Twin"
            serial_port = port
        self.link = TwinLink(serial_port, name=self.name, timeout=timeout, retries=retries)
        self.power_timeout = power_timeout
        self.apdu_timeout = apdu_timeout
        self._seq = 0
        self._powered = False
        self._t0 = True
        self._closed = False
        self._present = self._slot_present()

    @property
    def counters(self) -> TwinCounters:
        return self.link.counters

    # -- CCID ------------------------------------------------------------------------------------------
    def _command(self, msg_type: int, payload: bytes = b"", specific: bytes = b"\x00\x00\x00",
                 timeout: float | None = None) -> bytes:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        ccid = bytes((msg_type,)) + len(payload).to_bytes(4, "little") + bytes((0, seq)) + specific + payload
        answer = self.link.exchange(ccid, timeout)
        if len(answer) < CCID_HEADER:
            raise TransportError(f"CCID answer of {len(answer)} bytes is shorter than its header",
                                 reader=self.name)
        status = answer[7]
        if status & 0x03 == 0x02:
            self._present = False
        elif status & 0x03 in (0, 1):
            self._present = True
        if status >> 6 == 1:
            self._raise_slot_error(msg_type, status, answer[8])
        return answer

    def _raise_slot_error(self, msg_type: int, status: int, error: int) -> None:
        if status & 0x03 == 0x02:
            if self._powered or msg_type == PC_TO_RDR_XFR_BLOCK:
                self._powered = False
                raise CardRemoved("card removed", reader=self.name, code=error)
            raise NoCard("no card in the reader", reader=self.name, code=error)
        cls, message = _CCID_ERRORS.get(error, (TransportError, "reader reported an error"))
        raise cls(message, reader=self.name, code=error)

    def _slot_present(self) -> bool:
        answer = self._command(PC_TO_RDR_GET_SLOT_STATUS)
        return answer[7] & 0x03 != 0x02

    def firmware(self) -> str:
        """The reader's firmware string (Escape 02), as pcscd asks first."""
        answer = self._command(PC_TO_RDR_ESCAPE, b"\x02")
        return answer[CCID_HEADER:].rstrip(b"\x00").decode("ascii", "replace")

    # -- Reader ----------------------------------------------------------------------------------------
    def card_present(self) -> bool:
        self._present = self._slot_present()
        return self._present

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        deadline = time.monotonic() + timeout
        was = self._present  # last state this reader reported: a movement since then is the next event
        while True:
            self.link.card_events.clear()
            now = self.card_present()  # GetSlotStatus; also makes the reader flush its notifications
            if now != was:
                if not now:
                    self._powered = False
                return CardEvent.INSERTED if now else CardEvent.REMOVED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.link.poll_events(min(remaining, EVENT_POLL_S))

    def wait_for_card(self, timeout: float) -> None:
        if self.card_present():
            return
        if self.wait_for_event(timeout) is not CardEvent.INSERTED:
            raise NoCard("no card inserted in time", reader=self.name)

    def wait_for_removal(self, timeout: float) -> None:
        if not self.card_present():
            return
        if self.wait_for_event(timeout) is not CardEvent.REMOVED:
            raise CardStillPresent("card not removed in time", reader=self.name)

    def power_on(self) -> bytes:
        answer = self._command(PC_TO_RDR_ICC_POWER_ON, timeout=self.power_timeout)
        atr = answer[CCID_HEADER:]
        if not atr:
            raise CardMute("card answered power-on with an empty ATR", reader=self.name)
        self._t0 = 0 in _atr_protocols(atr)
        self._powered = True
        self.link.card_events.clear()
        return atr

    def transmit_raw(self, apdu: bytes) -> bytes:
        if not self._powered:
            raise CardRemoved("card not powered", reader=self.name,
                              hint="the card was removed or not powered on: insert it and start again")
        tpdu = _t0_tpdu(apdu) if self._t0 else apdu
        answer = self._command(PC_TO_RDR_XFR_BLOCK, tpdu, timeout=self.apdu_timeout)
        return answer[CCID_HEADER:]

    def power_off(self) -> None:
        if self._closed:
            return
        self._powered = False
        try:
            self._command(PC_TO_RDR_ICC_POWER_OFF)
        except (NoCard, CardRemoved):
            pass

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._powered:
                self.power_off()
        except ReaderError:
            pass
        self._closed = True
        try:
            self.link.port.close()
        except Exception:  # closing a vanished port may fail any way
            pass

    def __repr__(self) -> str:
        return f"TwinReader({self.name!r})"


def probe(path: str, timeout: float = 0.5) -> ReaderInfo | None:
    """A ReaderInfo when a GemPC Twin answers on ``path``; None when nothing Twin-like answers."""
    try:
        reader = TwinReader(path, timeout=timeout, retries=0)
    except ReaderError:
        return None
    try:
        detail = reader.firmware()
        present = reader.card_present()
        atr = None
        if present:
            try:
                atr = reader.power_on()
            except ReaderError as e:
                detail += f"; card error: {e.message}"
        return ReaderInfo(name=reader.name, transport="twin-serial", card_present=present, atr=atr,
                          detail=detail)
    except ReaderError:
        return None
    finally:
        reader.close()
