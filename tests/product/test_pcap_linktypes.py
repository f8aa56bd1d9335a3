"""Issue 14 item 6: pcaps and pcapngs written by dpkt (the packet library the importer reads with), of every link
type the importer reads, IPv4 and IPv6, carrying the real ISO 8583 messages of ``tests/captures``; TCP segments
out of order, retransmitted with other boundaries, overlapping, across a sequence wrap; several connections."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from dpkt import ethernet, ip, ip6, loopback, pcap, pcapng, sll, sll2, tcp

from posguard.capture import read_capture
from posguard.capture.pcap import PcapError, TcpStream, import_pcap
from posguard.iso8583.framing import Framing
from tests.product.conftest import CAPTURES, clear_pan_hits

V4 = {"host": bytes([10, 0, 0, 1]), "term": bytes([10, 0, 0, 2])}
V6 = {"host": bytes.fromhex("fd000000000000000000000000000001"), "term": bytes.fromhex("fd000000000000000000000000000002")}
HOST_PORT = 5000


def _messages(name: str = "iso87ascii-reversal") -> list[tuple[str, bytes]]:
    return [(r["dir"], bytes.fromhex(r["hex"])) for r in read_capture(CAPTURES / f"{name}.jsonl").of_kind("iso")]


def _ip_packet(v: int, src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    seg = tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, win=65535, data=payload)
    if v == 4:
        return bytes(ip.IP(src=src, dst=dst, p=ip.IP_PROTO_TCP, ttl=64, data=seg))
    return bytes(ip6.IP6(src=src, dst=dst, nxt=ip.IP_PROTO_TCP, hlim=64, plen=len(bytes(seg)), data=seg))


def _link(linktype: int, v: int, raw_ip: bytes) -> bytes:
    etype = ethernet.ETH_TYPE_IP if v == 4 else ethernet.ETH_TYPE_IP6
    if linktype == 1:
        return bytes(ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=etype, data=raw_ip))
    if linktype == 113:
        return bytes(sll.SLL(type=4, hrd=1, hlen=6, hdr=b"\x02" * 6 + b"\x00\x00", ethtype=etype, data=raw_ip))
    if linktype == 276:
        return bytes(sll2.SLL2(ethtype=etype, intindex=2, type=4, hdr=b"\x02" * 6 + b"\x00\x00", data=raw_ip))
    if linktype == 0:  # BSD loopback: the family in the writer's byte order
        return bytes(loopback.Loopback(family=2 if v == 4 else 24, data=raw_ip))
    return raw_ip  # 101, 228, 229: raw IP


class Conn:
    """One TCP connection of the terminal to the host: framed messages cut into segments."""

    def __init__(self, v: int = 4, term_port: int = 40000, isn: tuple[int, int] = (1000, 9000)) -> None:
        self.v, self.term_port = v, term_port
        self.addr = V4 if v == 4 else V6
        self.seq = {"out": isn[0], "in": isn[1]}

    def ends(self, direction: str) -> tuple[bytes, bytes, int, int]:
        if direction == "out":
            return self.addr["term"], self.addr["host"], self.term_port, HOST_PORT
        return self.addr["host"], self.addr["term"], HOST_PORT, self.term_port

    def packet(self, direction: str, seq: int, flags: int, payload: bytes) -> bytes:
        src, dst, sport, dport = self.ends(direction)
        return _ip_packet(self.v, src, dst, sport, dport, seq, flags, payload)

    def handshake(self) -> list[bytes]:
        syn = self.packet("out", self.seq["out"], tcp.TH_SYN, b"")
        synack = self.packet("in", self.seq["in"], tcp.TH_SYN | tcp.TH_ACK, b"")
        self.seq = {d: (s + 1) % (1 << 32) for d, s in self.seq.items()}
        return [syn, synack]

    def stream(self, direction: str, data: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
        """(seq, payload) of ``data`` cut at ``cuts``, advancing this direction's sequence number."""
        base, out, prev = self.seq[direction], [], 0
        for c in [*cuts, len(data)]:
            if c > prev:
                out.append(((base + prev) % (1 << 32), data[prev:c]))
                prev = c
        self.seq[direction] = (base + len(data)) % (1 << 32)
        return out


def _write(path: Path, packets: list[bytes], linktype: int, *, ng: bool = False, nano: bool = False) -> None:
    buf = io.BytesIO()
    writer = pcapng.Writer(buf, linktype=linktype) if ng else pcap.Writer(buf, linktype=linktype, nano=nano)
    for i, pkt in enumerate(packets):
        writer.writepkt(pkt, ts=1_764_500_000.0 + i * 0.001)
    path.write_bytes(buf.getvalue())


def _day_packets(conn: Conn, framing: str, messages: list[tuple[str, bytes]]) -> list[bytes]:
    """A handshake, then each message framed and split in two segments."""
    fr, packets = Framing(framing), [*conn.handshake()]
    for direction, raw in messages:
        data = fr.frame(raw)
        for seq, part in conn.stream(direction, data, [len(data) // 2]):
            packets.append(conn.packet(direction, seq, tcp.TH_PUSH | tcp.TH_ACK, part))
    return packets


def _check(out: Path, messages: list[tuple[str, bytes]], n: int) -> None:
    assert n == len(messages)
    cap = read_capture(out)
    iso = list(cap.of_kind("iso"))
    assert [r["dir"] for r in iso] == [d for d, _ in messages]
    assert [r["mti"] for r in iso] == [raw[:4].decode() for _, raw in messages]
    assert (cap.tid, cap.mid) == ("POSGRD01", "MERCHANT0000001")  # fields 41/42 of the first request
    assert clear_pan_hits(out.read_bytes()) == []


CASES = [  # (link type, IP version, pcapng, nanosecond pcap)
    (1, 4, False, False), (1, 6, True, False), (113, 4, False, True), (113, 6, True, False),
    (276, 4, True, False), (276, 6, False, False), (0, 4, False, False), (0, 6, True, False),
    (101, 4, False, False), (101, 6, True, False), (228, 4, False, False), (229, 6, True, False),
]


@pytest.mark.parametrize(("linktype", "v", "ng", "nano"), CASES,
                         ids=[f"lt{c[0]}-ipv{c[1]}-{'pcapng' if c[2] else 'pcap-ns' if c[3] else 'pcap'}"
                              for c in CASES])
def test_every_link_type_and_container_imports_every_message(linktype: int, v: int, ng: bool, nano: bool,
                                                             tmp_path: Path) -> None:
    messages = _messages()
    packets = [_link(linktype, v, p) for p in _day_packets(Conn(v), "binary2", messages)]
    src, out = tmp_path / ("day.pcapng" if ng else "day.pcap"), tmp_path / "day.jsonl"
    _write(src, packets, linktype, ng=ng, nano=nano)
    _check(out, messages, import_pcap(src, out, dialect="iso87ascii"))


def test_given_tid_and_mid_win_over_the_messages(tmp_path: Path) -> None:
    messages = _messages()
    src, out = tmp_path / "d.pcap", tmp_path / "d.jsonl"
    _write(src, [_link(1, 4, p) for p in _day_packets(Conn(), "binary2", messages)], 1)
    import_pcap(src, out, dialect="iso87ascii", tid="OTHER001", mid="M2")
    assert (read_capture(out).tid, read_capture(out).mid) == ("OTHER001", "M2")


def test_pcapng_interfaces_keep_their_own_link_type_and_time_resolution(tmp_path: Path) -> None:
    """Two IDBs (Ethernet in microseconds, SLL2 in nanoseconds): a request on one, its answers on the other."""
    messages = _messages()
    conn, fr = Conn(), Framing("binary2")
    idbs = [pcapng.InterfaceDescriptionBlockLE(linktype=1, snaplen=65535),
            pcapng.InterfaceDescriptionBlockLE(linktype=276, snaplen=65535, opts=[
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"),
                pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_ENDOFOPT)])]
    buf = io.BytesIO()
    writer = pcapng.Writer(buf, idb=idbs)
    t = 1_764_500_000
    for i, raw_ip in enumerate(conn.handshake() + [
            conn.packet(d, seq, tcp.TH_ACK, part) for d, raw in messages
            for seq, part in conn.stream(d, fr.frame(raw), [])]):
        iface = 0 if i % 2 == 0 else 1
        ticks = (t + i) * (10**6 if iface == 0 else 10**9)
        writer.writepkt(pcapng.EnhancedPacketBlockLE(
            iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF, caplen=0, pkt_len=0,
            pkt_data=_link(1 if iface == 0 else 276, 4, raw_ip)))
    src, out = tmp_path / "two.pcapng", tmp_path / "two.jsonl"
    src.write_bytes(buf.getvalue())
    _check(out, messages, import_pcap(src, out, dialect="iso87ascii"))
    times = [r["t"] for r in read_capture(out).of_kind("iso")]
    assert times == [float(i) for i in range(2, 2 + len(messages))]  # one second apart, whatever the interface


@pytest.mark.parametrize("framing", ["binary2", "ascii4"])
def test_out_of_order_retransmitted_and_overlapping_segments_across_a_wrap(framing: str, tmp_path: Path) -> None:
    """Small segments, each direction's sequence numbers wrapping past 2**32; every segment resent with other
    boundaries (overlapping the next), and segments swapped with their neighbours."""
    messages = _messages()
    conn, fr, rng = Conn(isn=((1 << 32) - 40, (1 << 32) - 7)), Framing(framing), random.Random(14)
    packets = conn.handshake()
    for direction, raw in messages:
        data = fr.frame(raw)
        base = conn.seq[direction]
        segs = conn.stream(direction, data, sorted(rng.sample(range(1, len(data)), min(6, len(data) - 1))))
        window = []
        for seq, part in segs:
            window.append(conn.packet(direction, seq, tcp.TH_ACK, part))
            off = (seq - base) % (1 << 32)
            lo, hi = max(0, off - 3), min(len(data), off + len(part) + 5)  # resent, overlapping both neighbours
            window.append(conn.packet(direction, (base + lo) % (1 << 32), tcp.TH_ACK, data[lo:hi]))
        for i in range(0, len(window) - 1, 3):
            window[i], window[i + 1] = window[i + 1], window[i]  # out of order
        packets.extend(window)
    src, out = tmp_path / "messy.pcap", tmp_path / "messy.jsonl"
    _write(src, [_link(1, 4, p) for p in packets], 1)
    _check(out, messages, import_pcap(src, out, dialect="iso87ascii", framing=framing))
    assert [r["stan"] for r in read_capture(out).of_kind("iso")] == [raw_stan(raw) for _, raw in messages]


def raw_stan(raw: bytes) -> object:
    from posguard.iso8583 import Message

    return Message.decode(raw, "iso87ascii").stan


def test_two_connections_and_a_reopened_one_on_the_same_ports(tmp_path: Path) -> None:
    """Connection A (port 40000) and B (40001) interleaved; A ends with half a message; then A's ports open again
    with a new SYN (new ISN: a new stream, the half message forgotten); A's first SYN resent changes nothing."""
    messages = _messages()
    half = len(messages) // 2
    a, b = Conn(term_port=40000, isn=(1000, 9000)), Conn(term_port=40001, isn=(50000, 70000))
    pa, pb = _day_packets(a, "binary2", messages[:half]), _day_packets(b, "binary2", messages[half:])
    pa.insert(3, a.packet("out", 1000, tcp.TH_SYN, b""))  # the first SYN again, mid-stream
    cut = Framing("binary2").frame(messages[0][1])[:9]  # A drops with half a message sent: never imported
    pa.append(a.packet("out", a.seq["out"], tcp.TH_ACK, cut))
    a2 = Conn(term_port=40000, isn=(123456, 654321))
    pa2 = _day_packets(a2, "binary2", messages)
    order = pa[:2] + pb[:2] + [p for pair in zip(pa[2:], pb[2:], strict=False) for p in pair]
    order += pa[2 + len(pb[2:]):] + pb[2 + len(pa[2:]):] + pa2
    src, out = tmp_path / "two.pcap", tmp_path / "two.jsonl"
    _write(src, [_link(113, 4, p) for p in order], 113)
    n = import_pcap(src, out, dialect="iso87ascii")
    assert n == 2 * len(messages)
    got = sorted(f"{r['stan']} {r['dir']}" for r in read_capture(out).of_kind("iso"))
    want = sorted(f"{raw_stan(raw)} {d}" for d, raw in messages + messages)
    assert got == want


def test_a_wrong_framing_is_one_pcap_error_naming_the_packet(tmp_path: Path) -> None:
    messages = _messages()
    src = tmp_path / "f.pcapng"
    _write(src, [_link(276, 6, p) for p in _day_packets(Conn(6), "ascii4", messages)], 276, ng=True)
    with pytest.raises(PcapError) as err:
        import_pcap(src, tmp_path / "f.jsonl", dialect="iso87ascii", framing="binary2")
    text = str(err.value)
    assert "\n" not in text and "packet 3 (out, [fd00::2]:40000 -> [fd00::1]:5000)" in text


def test_an_unknown_link_type_is_named(tmp_path: Path) -> None:
    src = tmp_path / "u.pcap"
    _write(src, [b"\x00" * 40], 147)
    with pytest.raises(PcapError, match=r"packet 1: link type 147 is not supported \(read: 0 BSD"):
        import_pcap(src, tmp_path / "u.jsonl", dialect="cup")


def test_a_pcapng_packet_on_an_undescribed_interface_is_named(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = pcapng.Writer(buf, linktype=1)
    writer.writepkt(pcapng.EnhancedPacketBlockLE(iface_id=3, pkt_data=b"\x00" * 20, ts_low=1))
    src = tmp_path / "i.pcapng"
    src.write_bytes(buf.getvalue())
    with pytest.raises(PcapError, match="packet 1 .*interface 3 was never described"):
        import_pcap(src, tmp_path / "i.jsonl", dialect="cup")


def test_the_stream_keeps_the_longest_copy_and_drops_what_it_delivered() -> None:
    s = TcpStream()
    assert s.syn((1 << 32) - 1) and s.next_seq == 0
    assert s.data(5, b"FGH") == []  # ahead: waits
    assert s.data(5, b"FGHIJ") == []  # a longer copy of the same start replaces it
    assert s.data(0, b"ABC") == [b"ABC"]
    assert s.data(1, b"BCDEF") == [b"DEF", b"GHIJ"]  # overlaps the past; fills the gap; drains the pending
    assert s.data(2, b"CD") == [] and not s.syn((1 << 32) - 1)  # an old retransmission, a resent SYN
    assert s.syn(77) and s.next_seq == 78 and not s.pending



def test_a_time_stamp_beyond_any_date_is_named(tmp_path: Path) -> None:
    """An IDB's if_tsoffset of 2**62 s: one PcapError, not an overflow from the capture's clock."""
    idb = pcapng.InterfaceDescriptionBlockLE(linktype=1, snaplen=65535, opts=[
        pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_IF_TSOFFSET, data=(1 << 62).to_bytes(8, "little")),
        pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_ENDOFOPT)])
    buf = io.BytesIO()
    pcapng.Writer(buf, idb=idb).writepkt(_link(1, 4, Conn().handshake()[0]), ts=1.0)
    src = tmp_path / "t.pcapng"
    src.write_bytes(buf.getvalue())
    with pytest.raises(PcapError, match="packet 1: time stamp .* is not a date"):
        import_pcap(src, tmp_path / "t.jsonl", dialect="cup")


def test_the_cli_imports_a_pcapng_and_names_a_bad_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from posguard.cli import main

    messages = _messages()
    src, out = tmp_path / "cli.pcapng", tmp_path / "cli.jsonl"
    _write(src, [_link(276, 4, p) for p in _day_packets(Conn(), "binary2", messages)], 276, ng=True)
    assert main(["capture", "import-pcap", str(src), str(out), "--dialect", "iso87ascii"]) == 0
    assert capsys.readouterr().out == f"{out}: {len(messages)} message(s) imported\n"
    assert read_capture(out).tid == "POSGRD01"
    src.write_bytes(src.read_bytes()[:-10])  # the last block cut short
    assert main(["capture", "import-pcap", str(src), str(out), "--dialect", "iso87ascii"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("posguard capture import-pcap: pcapng block ") and err.count("\n") == 1
    assert "does not fit the file" in err


def test_a_segment_the_capture_lost_is_one_error_naming_the_packet_after_it(tmp_path: Path) -> None:
    messages = _messages()
    packets = _day_packets(Conn(), "binary2", messages)
    del packets[4]  # the first half of the answer to the first request (packets 3-4 carry the request)
    src, out = tmp_path / "lost.pcap", tmp_path / "lost.jsonl"
    _write(src, [_link(1, 4, p) for p in packets], 1)
    with pytest.raises(PcapError) as err:
        import_pcap(src, out, dialect="iso87ascii")
    assert str(err.value).startswith("packet 5 (in, 10.0.0.1:5000 -> 10.0.0.2:40000): bytes before it were never")
    assert not out.exists()  # nothing written


def test_a_cup_day_in_sll2_over_ipv6_names_its_terminal(tmp_path: Path) -> None:
    """CUP (TPDU before the MTI): the duplicate charge day; tid/mid from the requests, the incident found."""
    from posguard.capture.replay import replay
    from posguard.service.till import Till

    messages = _messages("cup-duplicate_charge")
    src, out = tmp_path / "cup.pcapng", tmp_path / "cup.jsonl"
    _write(src, [_link(276, 6, p) for p in _day_packets(Conn(6), "binary2", messages)], 276, ng=True)
    assert import_pcap(src, out, dialect="cup") == len(messages)
    cap = read_capture(out)
    assert (cap.tid, cap.mid) == ("POSGRD01", "MERCHANT0000001")
    assert clear_pan_hits(out.read_bytes()) == []
    result = replay(out, desk=Till.for_replay, journal_path=tmp_path / "j.db")
    try:
        assert "duplicate_charge" in [i.kind for i in result.incidents]
    finally:
        result.journal.close()
