"""Import a pcap of the host link (TCP, ``binary2``/``bcd2``/``ascii4`` framing) into a capture.

Parsed with :mod:`struct` only: classic pcap (both byte orders, micro- and nanosecond stamps), link types
Ethernet (1), raw IPv4 (101, 228), Linux cooked (113) and loopback/null (0). IPv4 + TCP; each direction's
payload is reassembled by sequence number (retransmissions dropped), then split into messages by the framing.
Messages to the host port are ``out``, from it ``in``; each goes through the capture's sanitiser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from posguard.capture.format import CaptureWriter
from posguard.clock import VirtualClock
from posguard.iso8583.errors import Iso8583Error
from posguard.iso8583.framing import Framing, StreamDecoder

__all__ = ["PcapError", "read_tcp_segments", "import_pcap"]


class PcapError(ValueError):
    """The file is not a pcap we can read; the text says where and why."""


@dataclass
class Segment:
    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes
    n: int = 0  # the packet's number in the file (1-based), for errors


@dataclass
class _Flow:
    next_seq: int | None = None
    decoder: StreamDecoder | None = None
    pending: dict[int, bytes] = field(default_factory=dict)


_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
           b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def read_tcp_segments(data: bytes) -> list[Segment]:
    if len(data) < 24:
        raise PcapError("file shorter than a pcap header (24 bytes)")
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        raise PcapError("pcapng is not supported: convert with `editcap -F pcap in.pcapng out.pcap`")
    if magic not in _MAGICS:
        raise PcapError(f"not a pcap file (magic {magic.hex()})")
    endian, unit = _MAGICS[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    out: list[Segment] = []
    pos, n = 24, 0
    while pos + 16 <= len(data):
        n += 1
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + incl]
        if len(pkt) < incl:
            raise PcapError(f"packet {n} is truncated at byte {pos}")
        pos += 16 + incl
        ip = _strip_link(pkt, linktype, n)
        if ip is None or len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue  # not IPv4/TCP
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0] or len(ip)
        tcp = ip[ihl:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        off = (tcp[12] >> 4) * 4
        out.append(Segment(sec + frac * unit, (_ip(ip[12:16]), sport), (_ip(ip[16:20]), dport), seq, tcp[13],
                           bytes(tcp[off:]), n))
    return out


def _strip_link(pkt: bytes, linktype: int, n: int) -> bytes | None:
    if linktype == 1:  # Ethernet, optionally one VLAN tag
        if len(pkt) < 14:
            return None
        etype, off = struct.unpack(">H", pkt[12:14])[0], 14
        if etype == 0x8100 and len(pkt) >= 18:
            etype, off = struct.unpack(">H", pkt[16:18])[0], 18
        return pkt[off:] if etype == 0x0800 else None
    if linktype in (101, 228):
        return pkt
    if linktype == 113:  # Linux cooked
        return pkt[16:] if len(pkt) > 16 and struct.unpack(">H", pkt[14:16])[0] == 0x0800 else None
    if linktype == 0:  # BSD loopback
        return pkt[4:]
    raise PcapError(f"packet {n}: link type {linktype} is not supported (Ethernet, raw IP, Linux cooked, null)")


def import_pcap(pcap: str | Path, output: str | Path, *, dialect: str, framing: str = "binary2",
                host_port: int | None = None, tid: str = "", mid: str = "") -> int:
    """Write ``output`` (a capture) from ``pcap``; returns the number of ISO messages written."""
    try:
        data = Path(pcap).read_bytes()
    except OSError as exc:
        raise PcapError(f"cannot read {pcap}: {exc.strerror}") from None
    segments = read_tcp_segments(data)
    if not segments:
        raise PcapError(f"{pcap} holds no TCP segments")
    if host_port is None:
        syn = next((s for s in segments if s.flags & 0x02 and not s.flags & 0x10), None)
        host_port = syn.dst[1] if syn else segments[0].dst[1]
    start = segments[0].ts
    clock = VirtualClock(start=start)
    flows: dict[tuple[tuple[str, int], tuple[str, int]], _Flow] = {}
    count = 0
    with CaptureWriter(output, dialect=dialect, tid=tid, mid=mid, clock=clock,
                       extra={"source": "pcap", "framing": framing}) as writer:
        for seg in sorted(segments, key=lambda s: s.ts):
            if host_port not in (seg.src[1], seg.dst[1]):
                continue
            flow = flows.setdefault((seg.src, seg.dst), _Flow(decoder=StreamDecoder(Framing(framing))))
            if seg.flags & 0x02:  # SYN consumes one sequence number
                flow.next_seq = (seg.seq + 1) & 0xFFFFFFFF
                continue
            if not seg.payload:
                continue
            if flow.next_seq is None:
                flow.next_seq = seg.seq
            if seg.seq != flow.next_seq:
                if (seg.seq - flow.next_seq) & 0xFFFFFFFF < 0x80000000:
                    flow.pending[seg.seq] = seg.payload  # out of order: keep for later
                continue  # else a retransmission of bytes already seen
            chunks = [seg.payload]
            flow.next_seq = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
            while flow.next_seq in flow.pending:
                more = flow.pending.pop(flow.next_seq)
                chunks.append(more)
                flow.next_seq = (flow.next_seq + len(more)) & 0xFFFFFFFF
            clock.advance(max(0.0, seg.ts - clock.now()))
            direction = "out" if seg.dst[1] == host_port else "in"
            assert flow.decoder is not None
            for chunk in chunks:
                try:
                    payloads = flow.decoder.feed(chunk)
                except Iso8583Error as exc:
                    raise PcapError(f"packet {seg.n} ({direction}, {seg.src[0]}:{seg.src[1]} -> {seg.dst[0]}:"
                                    f"{seg.dst[1]}): {exc}") from None
                for payload in payloads:
                    writer.iso(direction, payload)
                    count += 1
    return count
