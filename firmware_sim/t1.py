"""ISO 7816-3 T=1 block protocol on the card side, for TPDU-level readers (the GemPC Twin).

A TPDU reader passes T=1 blocks (NAD PCB LEN INF LRC) through XfrBlock untouched, so the
simulated card must speak blocks: I-blocks (with chaining), R-blocks and S-blocks (IFS,
RESYNCH, ABORT). Only LRC (no CRC) epilogues, as the ATRs of :mod:`firmware_sim.card` declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from firmware_sim.card import Outcome

MAX_INF = 254


def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def block(nad: int, pcb: int, inf: bytes = b"") -> bytes:
    body = bytes([nad, pcb, len(inf)]) + inf
    return body + bytes([lrc(body)])


class T1Session:
    """Block-level state of one activation: sequence numbers, chains, last block sent."""

    def __init__(self, process: Callable[[bytes], Outcome], ifsd: int = MAX_INF) -> None:
        self.process = process
        self.ifsd = ifsd
        self.card_ns = 0
        self.chain = bytearray()
        self.pending: list[bytes] = []  # response chunks not yet sent
        self.last_sent = b""

    def on_block(self, raw: bytes) -> Outcome:
        if len(raw) < 4 or raw[2] != len(raw) - 4 or lrc(raw[:-1]) != raw[-1]:
            return self._send(block(0, 0x80 | 0x01))  # R-block, EDC/other error
        nad, pcb, inf = raw[0], raw[1], raw[3:-1]
        nad = ((nad & 0x0F) << 4) | (nad >> 4)  # answer with SAD and DAD swapped
        if pcb & 0xC0 == 0xC0:
            return self._s_block(nad, pcb, inf)
        if pcb & 0xC0 == 0x80:
            if self.pending:
                return self._send_chunk(nad)
            return Outcome(self.last_sent)
        return self._i_block(nad, pcb, inf)

    def _s_block(self, nad: int, pcb: int, inf: bytes) -> Outcome:
        kind = pcb & 0x3F
        if pcb & 0x20:  # a response from the host (e.g. to WTX): nothing to answer
            return Outcome(None)
        if kind == 0x00:  # RESYNCH
            self.card_ns, self.chain, self.pending = 0, bytearray(), []
        elif kind == 0x01 and inf:  # IFS request
            self.ifsd = inf[0]
        elif kind == 0x02:  # ABORT
            self.chain, self.pending = bytearray(), []
        return self._send(block(nad, pcb | 0x20, inf))

    def _i_block(self, nad: int, pcb: int, inf: bytes) -> Outcome:
        host_ns, more = (pcb >> 6) & 1, bool(pcb & 0x20)
        self.chain += inf
        if more:
            return self._send(block(nad, 0x80 | ((host_ns ^ 1) << 4)))
        apdu, self.chain = bytes(self.chain), bytearray()
        outcome = self.process(apdu)
        if outcome.response is None:
            return outcome
        data = outcome.response
        self.pending = [data[i : i + self.ifsd] for i in range(0, len(data), self.ifsd)] or [b""]
        return replace(self._send_chunk(nad), delay=outcome.delay)

    def _send_chunk(self, nad: int) -> Outcome:
        chunk = self.pending.pop(0)
        pcb = (self.card_ns << 6) | (0x20 if self.pending else 0)
        self.card_ns ^= 1
        return self._send(block(nad, pcb, chunk))

    def _send(self, raw: bytes) -> Outcome:
        self.last_sent = raw
        return Outcome(raw)
