"""Import a pcap or pcapng of the host link (TCP, ``binary2``/``bcd2``/``ascii4`` framing) into a capture.

Read with `dpkt <https://pypi.org/project/dpkt/>`_: the file's records are walked with dpkt's pcap headers and
pcapng blocks (SHB, IDB, EPB, SPB, the obsolete PB; every interface keeps its own link type and time
resolution), each packet is parsed with dpkt's link layers (Ethernet with VLAN tags, Linux cooked SLL and SLL2,
BSD loopback/null, raw IP) down to IPv4 or IPv6 and TCP. Each direction of each connection is reassembled by
sequence number (:class:`TcpStream`), then split into messages by the framing. Messages to the host port are
``out``, from it ``in``; each goes through the capture's sanitiser. The capture header's ``tid``/``mid`` come
from fields 41/42 of the first request that carries them unless given. See ``docs/capture-format.md``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
from dpkt import ethernet, ip, ip6, loopback, pcap, pcapng, sll, sll2, tcp

from posguard.capture.format import CaptureWriter
from posguard.clock import VirtualClock
from posguard.iso8583.errors import Iso8583Error
from posguard.iso8583.framing import Framing, StreamDecoder

__all__ = ["LINK_TYPES", "PcapError", "Segment", "TcpStream", "import_pcap", "read_packets", "read_tcp_segments"]


class PcapError(ValueError):
    """The file is not a pcap we can read; the text says where and why."""


#: link types read (tcpdump.org/linktypes.html): the dpkt class that parses each, or None for raw IP
LINK_TYPES: dict[int, tuple[str, Any]] = {
    0: ("BSD loopback/null", loopback.Loopback),
    1: ("Ethernet", ethernet.Ethernet),
    101: ("raw IP", None),
    108: ("OpenBSD loopback", loopback.Loopback),
    113: ("Linux cooked (SLL)", sll.SLL),
    228: ("raw IPv4", None),
    229: ("raw IPv6", None),
    276: ("Linux cooked v2 (SLL2)", sll2.SLL2),
}

_MOD = 1 << 32
_HALF = 1 << 31
_SYN, _ACK = tcp.TH_SYN, tcp.TH_ACK
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": (pcap.LEFileHdr, pcap.LEPktHdr, 1e-6),
                b"\xa1\xb2\xc3\xd4": (pcap.FileHdr, pcap.PktHdr, 1e-6),
                b"\x4d\x3c\xb2\xa1": (pcap.LEFileHdr, pcap.LEPktHdr, 1e-9),
                b"\xa1\xb2\x3c\x4d": (pcap.FileHdr, pcap.PktHdr, 1e-9)}
_NG_SHB = b"\x0a\x0d\x0d\x0a"
_YEAR_10000 = 253_402_300_800  # seconds since 1970
#: what dpkt raises on bytes it cannot parse
_PARSE_ERRORS = (dpkt.Error, struct.error, ValueError, IndexError, KeyError, TypeError)


@dataclass
class Segment:
    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes
    n: int = 0  # the packet's number in the file (1-based), for errors


# -- the file: pcap or pcapng records ----------------------------------------------------------------------------
def read_packets(data: bytes) -> Iterator[tuple[int, float, int, bytes]]:
    """Every packet of a pcap or pcapng file: ``(number, time, link type, bytes)``; :class:`PcapError` names the
    packet (or block) where the file stops making sense."""
    if data[:4] == _NG_SHB:
        yield from _read_pcapng(data)
        return
    if len(data) < 24:
        raise PcapError("file shorter than a pcap header (24 bytes)")
    if data[:4] not in _PCAP_MAGICS:
        raise PcapError(f"not a pcap or pcapng file (magic {data[:4].hex()}; pcap is a1b2c3d4 or a1b23c4d in "
                        "either byte order, pcapng starts 0a0d0d0a)")
    file_hdr, pkt_hdr, unit = _PCAP_MAGICS[data[:4]]
    linktype = file_hdr(data[:24]).linktype & 0xFFFF  # the upper bits carry FCS flags (pcap-savefile(5))
    hl = pkt_hdr.__hdr_len__
    pos, n = 24, 0
    while pos < len(data):
        n += 1
        if pos + hl > len(data):
            raise PcapError(f"packet {n}: record header truncated at byte {pos}")
        hdr = pkt_hdr(data[pos:pos + hl])
        pkt = data[pos + hl:pos + hl + hdr.caplen]
        if len(pkt) < hdr.caplen:
            raise PcapError(f"packet {n} is truncated at byte {pos} ({len(pkt)} of {hdr.caplen} bytes)")
        pos += hl + hdr.caplen
        yield n, hdr.tv_sec + hdr.tv_usec * unit, linktype, pkt


def _read_pcapng(data: bytes) -> Iterator[tuple[int, float, int, bytes]]:
    """pcapng blocks (pcapng spec, IETF draft-ietf-opsawg-pcapng): a section starts with an SHB (its byte-order
    magic says the endianness), each IDB declares an interface (link type, if_tsresol, if_tsoffset), packets are
    EPBs (interface id, 64-bit time), SPBs (first interface, no time) or the obsolete PBs; others are skipped."""
    le = True
    ifaces: list[tuple[int, float, int]] = []  # link type, seconds per tick, offset (s)
    pos, n, block, last_ts = 0, 0, 0, 0.0
    while pos < len(data):
        block += 1
        if pos + 12 > len(data):
            raise PcapError(f"pcapng block {block} truncated at byte {pos}")
        btype_raw = data[pos:pos + 4]
        if btype_raw == _NG_SHB:
            bom = data[pos + 8:pos + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise PcapError(f"pcapng block {block} at byte {pos}: section header with no byte-order magic")
            le, ifaces = bom == b"\x4d\x3c\x2b\x1a", []
        btype, blen = struct.unpack("<II" if le else ">II", data[pos:pos + 8])
        if blen < 12 or blen % 4 or pos + blen > len(data):
            raise PcapError(f"pcapng block {block} at byte {pos}: length {blen} does not fit the file")
        buf = data[pos:pos + blen]
        pos += blen
        try:
            if btype == pcapng.PCAPNG_BT_SHB:
                shb = (pcapng.SectionHeaderBlockLE if le else pcapng.SectionHeaderBlock)(buf)
                if shb.v_major != pcapng.PCAPNG_VERSION_MAJOR:
                    raise PcapError(f"pcapng block {block}: section version {shb.v_major}.{shb.v_minor} "
                                    "is not 1.x")
            elif btype == pcapng.PCAPNG_BT_IDB:
                ifaces.append(_interface((pcapng.InterfaceDescriptionBlockLE if le
                                          else pcapng.InterfaceDescriptionBlock)(buf), le))
            elif btype in (pcapng.PCAPNG_BT_EPB, pcapng.PCAPNG_BT_PB):
                n += 1
                cls = {pcapng.PCAPNG_BT_EPB: (pcapng.EnhancedPacketBlockLE, pcapng.EnhancedPacketBlock),
                       pcapng.PCAPNG_BT_PB: (pcapng.PacketBlockLE, pcapng.PacketBlock)}[btype][0 if le else 1]
                epb = cls(buf)
                iface = epb.iface_id if btype == pcapng.PCAPNG_BT_EPB else epb.iface_id & 0xFFFF
                if iface >= len(ifaces):
                    raise PcapError(f"packet {n} (pcapng block {block}): interface {iface} was never described "
                                    f"({len(ifaces)} IDB(s) before it)")
                linktype, tick, offset = ifaces[iface]
                last_ts = offset + ((epb.ts_high << 32) | epb.ts_low) * tick
                yield n, last_ts, linktype, bytes(epb.pkt_data)
            elif btype == pcapng.PCAPNG_BT_SPB:
                n += 1
                if not ifaces:
                    raise PcapError(f"packet {n} (pcapng block {block}): a simple packet block before any IDB")
                (orig,) = struct.unpack("<I" if le else ">I", buf[8:12])
                yield n, last_ts, ifaces[0][0], buf[12:12 + min(orig, blen - 16)]  # no time: the previous one's
        except PcapError:
            raise
        except _PARSE_ERRORS as exc:
            raise PcapError(f"pcapng block {block} at byte {pos - blen}: unreadable ({exc})") from None


def _interface(idb: Any, le: bool) -> tuple[int, float, int]:
    tick, offset = 1e-6, 0
    for opt in idb.opts:
        if opt.code == pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            res = opt.data[0]  # high bit: a negative power of 2, else of 10
            tick = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0 ** -(res & 0x7F)
        elif opt.code == pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) == 8:
            (offset,) = struct.unpack("<q" if le else ">q", opt.data)
    return int(idb.linktype), tick, offset


# -- the packet: link layer, IP, TCP ---------------------------------------------------------------------------------
def _tcp_of(pkt: bytes, linktype: int, n: int) -> tuple[str, str, Any] | None:
    """(source address, destination address, dpkt TCP) of one packet, or None when it is not whole TCP."""
    kind = LINK_TYPES.get(linktype)
    if kind is None:
        names = ", ".join(f"{k} {v[0]}" for k, v in LINK_TYPES.items())
        raise PcapError(f"packet {n}: link type {linktype} is not supported (read: {names})")
    try:
        if kind[1] is None:
            net: Any = ip.IP(pkt) if pkt[:1] and pkt[0] >> 4 == 4 else ip6.IP6(pkt)
        else:
            net = kind[1](pkt).data
    except _PARSE_ERRORS:
        return None  # a link or IP header that does not parse: not a segment of ours
    if isinstance(net, ip.IP):
        if net.p != 6 or net.offset or net.mf or not isinstance(net.data, tcp.TCP):
            return None  # not TCP, or an IP fragment (not reassembled)
        return socket.inet_ntop(socket.AF_INET, net.src), socket.inet_ntop(socket.AF_INET, net.dst), net.data
    if isinstance(net, ip6.IP6):
        if not isinstance(net.data, tcp.TCP) or 44 in net.extension_hdrs:
            return None  # not TCP, or a fragment
        return socket.inet_ntop(socket.AF_INET6, net.src), socket.inet_ntop(socket.AF_INET6, net.dst), net.data
    return None


def read_tcp_segments(data: bytes) -> list[Segment]:
    """Every TCP segment (IPv4 or IPv6) of a pcap or pcapng file, in file order."""
    out: list[Segment] = []
    for n, ts, linktype, pkt in read_packets(data):
        if not 0 <= ts < _YEAR_10000:
            raise PcapError(f"packet {n}: time stamp {ts:.0f} s is not a date (before 1970 or after 9999)")
        found = _tcp_of(pkt, linktype, n)
        if found is not None:
            src, dst, seg = found
            out.append(Segment(float(ts), (src, int(seg.sport)), (dst, int(seg.dport)), int(seg.seq),
                               int(seg.flags), bytes(seg.data), n))
    return out


# -- TCP reassembly --------------------------------------------------------------------------------------------------
@dataclass
class TcpStream:
    """One direction of one connection, reassembled by sequence number (modulo 2**32).

    Bytes already delivered are dropped (retransmissions, also when they overlap new bytes with other segment
    boundaries: only the new tail is kept); segments ahead of the next expected byte wait in ``pending``. The
    first SYN fixes the initial sequence number (it takes one number); without one, the first data segment
    starts the stream.
    """

    isn: int | None = None
    next_seq: int | None = None
    pending: dict[int, bytes] = field(default_factory=dict)

    def syn(self, seq: int) -> bool:
        """A SYN: True when it opens a new stream (a different ISN), False for a retransmitted SYN."""
        if self.isn == seq:
            return False
        self.isn, self.next_seq, self.pending = seq, (seq + 1) % _MOD, {}
        return True

    def data(self, seq: int, payload: bytes) -> list[bytes]:
        """The bytes this segment makes deliverable in order (possibly none)."""
        if not payload:
            return []
        if self.next_seq is None:
            self.next_seq = seq
        ahead = (seq - self.next_seq) % _MOD
        if ahead and ahead < _HALF:  # a gap before it: keep for later (the longest copy of a start wins)
            if len(payload) > len(self.pending.get(seq, b"")):
                self.pending[seq] = payload
            return []
        out = self._take(seq, payload)
        while self.pending:
            key = next((k for k in self.pending if (self.next_seq - k) % _MOD < _HALF), None)
            if key is None:
                break
            out += self._take(key, self.pending.pop(key))
        return out

    def _take(self, seq: int, payload: bytes) -> list[bytes]:
        assert self.next_seq is not None
        behind = (self.next_seq - seq) % _MOD  # bytes of it already delivered
        if behind >= len(payload):
            return []  # a retransmission of bytes already seen
        self.next_seq = (seq + len(payload)) % _MOD
        return [payload[behind:]]


@dataclass
class _Direction:
    stream: TcpStream = field(default_factory=TcpStream)
    decoder: StreamDecoder | None = None
    gap_at: int = 0  # the first packet waiting behind a gap (0: none waits)


def import_pcap(pcap: str | Path, output: str | Path, *, dialect: str, framing: str = "binary2",
                host_port: int | None = None, tid: str = "", mid: str = "") -> int:
    """Write ``output`` (a capture) from ``pcap`` (pcap or pcapng); returns the number of ISO messages written.

    ``tid``/``mid`` left empty are taken from fields 41/42 of the first request (``out``) carrying them.
    """
    try:
        data = Path(pcap).read_bytes()
    except OSError as exc:
        raise PcapError(f"cannot read {pcap}: {exc.strerror}") from None
    segments = read_tcp_segments(data)
    if not segments:
        raise PcapError(f"{pcap} holds no TCP segments (IPv4 or IPv6)")
    if host_port is None:
        syn = next((s for s in segments if s.flags & _SYN and not s.flags & _ACK), None)
        host_port = syn.dst[1] if syn else segments[0].dst[1]
    messages = _messages(sorted(segments, key=lambda seg: seg.ts), host_port, Framing(framing))
    if not tid or not mid:
        found_tid, found_mid = _terminal_of(messages, dialect)
        tid, mid = tid or found_tid, mid or found_mid
    clock = VirtualClock(start=min(s.ts for s in segments))
    with CaptureWriter(output, dialect=dialect, tid=tid, mid=mid, clock=clock,
                       extra={"source": "pcap", "framing": framing}) as writer:
        for ts, direction, payload in messages:
            clock.advance(max(0.0, ts - clock.now()))
            writer.iso(direction, payload)
    return len(messages)


def _messages(segments: list[Segment], host_port: int, framing: Framing) -> list[tuple[float, str, bytes]]:
    """(time, direction, message) of every framed message on the host port's connections, in time order."""
    flows: dict[tuple[tuple[str, int], tuple[str, int]], _Direction] = {}
    out: list[tuple[float, str, bytes]] = []
    for seg in segments:
        if host_port not in (seg.src[1], seg.dst[1]):
            continue
        flow = flows.setdefault((seg.src, seg.dst), _Direction())
        if seg.flags & _SYN:
            if flow.stream.syn(seg.seq):  # a new connection on the same ports starts a new stream
                flow.decoder, flow.gap_at = None, 0
            continue
        chunks = flow.stream.data(seg.seq, seg.payload)
        flow.gap_at = (flow.gap_at or seg.n) if flow.stream.pending else 0
        if not chunks:
            continue
        if flow.decoder is None:
            flow.decoder = StreamDecoder(framing)
        direction = "out" if seg.dst[1] == host_port else "in"
        for chunk in chunks:
            try:
                payloads = flow.decoder.feed(chunk)
            except Iso8583Error as exc:
                raise PcapError(f"packet {seg.n} ({direction}, {_addr(seg.src)} -> {_addr(seg.dst)}): "
                                f"{exc}") from None
            out.extend((seg.ts, direction, p) for p in payloads)
    for (src, dst), flow in flows.items():
        if flow.gap_at:
            direction = "out" if dst[1] == host_port else "in"
            raise PcapError(f"packet {flow.gap_at} ({direction}, {_addr(src)} -> {_addr(dst)}): bytes before it "
                            "were never captured, so the messages after them cannot be framed (packets lost by "
                            "the capture?)")
    return out


def _addr(a: tuple[str, int]) -> str:
    return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"


def _terminal_of(messages: list[tuple[float, str, bytes]], dialect: str) -> tuple[str, str]:
    """Fields 41 (terminal id) and 42 (merchant id) of the first request that carries them ("" when none does)."""
    from posguard.iso8583 import Message

    tid = mid = ""
    for _ts, direction, raw in messages:
        if direction != "out":
            continue
        try:
            msg = Message.decode(raw, dialect)
        except Exception:  # noqa: BLE001 - an undecodable message is written as such; it names no terminal
            continue
        t41, t42 = msg.get("41"), msg.get("42")
        tid = tid or (t41.strip() if isinstance(t41, str) else "")
        mid = mid or (t42.strip() if isinstance(t42, str) else "")
        if tid and mid:
            break
    return tid, mid
