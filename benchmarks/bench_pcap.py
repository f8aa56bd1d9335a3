"""pcap import throughput: ``import_pcap`` vs dpkt's bare packet loop over the same file, in one run.

The benchmark writes a pcap (Ethernet, IPv4, one TCP connection, ``binary2`` framing) of N ISO 8583 messages
(default 100,000: 0200 sales with 20 fields including field 55 and their 0210 answers, one message per segment)
into a temporary directory, removed afterwards. Two passes over the same file:

* **dpkt loop** (the peer): ``dpkt.pcap.Reader`` iterating the packets and parsing each down to the TCP payload
  (``Ethernet(buf).data.data.data``): no reassembly, no framing, no decoding, nothing written;
* **import_pcap**: what ``posguard capture import-pcap`` does: the same reading and parsing with every record
  checked, TCP reassembly per direction, framing, tid/mid from the messages, and each message decoded, sanitised
  and written to a capture.

Prints messages per second of both and the ratio import / loop (how much of the loop's speed the import keeps).
One run each; no target is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from dpkt import ethernet, ip, pcap, tcp

from posguard.capture.pcap import import_pcap
from posguard.iso8583 import Message
from posguard.iso8583.framing import Framing

ICC = ("9F2608A1B2C3D4E5F60718" "9F2701809F100706010A03A0A8009F3704112233449F360200259505008004E000"
       "9A032611239C01009F02060000000012345F2A0201568202580084")
TERM, HOST = (bytes([10, 0, 0, 2]), 40000), (bytes([10, 0, 0, 1]), 5000)


def _messages(dialect: str) -> tuple[bytes, bytes]:
    sale = {"t": "0200", "2": "4761739001010119", "3": "000000", "4": "000000012345", "7": "1123101530",
            "11": "000123", "12": "101530", "13": "1123", "14": "2812", "22": "051", "23": "001", "25": "00",
            "35": "4761739001010119=28122011000000000000", "37": "612345678901", "41": "TERM0001",
            "42": "MERCHANT0000001", "49": "156", "55": ICC}
    answer = {k: v for k, v in sale.items() if k not in ("2", "14", "22", "23", "35", "55")}
    answer.update({"t": "0210", "38": "A1B2C3", "39": "00"})
    return Message.from_dict(sale, dialect).encode(), Message.from_dict(answer, dialect).encode()


def write_pcap(path: Path, n: int, dialect: str) -> int:
    """A pcap of ``n`` messages (a SYN/SYN-ACK first); returns the number of packets."""
    fr = Framing("binary2")
    request, answer = (fr.frame(m) for m in _messages(dialect))
    templates = {}
    for name, (src, dst), data in (("out", (TERM, HOST), request), ("in", (HOST, TERM), answer)):
        seg = tcp.TCP(sport=src[1], dport=dst[1], seq=0, flags=tcp.TH_ACK | tcp.TH_PUSH, win=65535, data=data)
        pkt = bytes(ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=ethernet.ETH_TYPE_IP,
                                      data=ip.IP(src=src[0], dst=dst[0], p=ip.IP_PROTO_TCP, ttl=64, data=seg)))
        templates[name] = (bytearray(pkt), len(data))
    seq_at = 14 + 20 + 4  # the TCP sequence number in the templates (checksums are not recomputed: not read)
    with open(path, "wb") as fh:
        w = pcap.Writer(fh, snaplen=65535, linktype=1)
        for i, (src, dst, flags) in enumerate(((TERM, HOST, tcp.TH_SYN), (HOST, TERM, tcp.TH_SYN | tcp.TH_ACK))):
            syn = tcp.TCP(sport=src[1], dport=dst[1], seq=999 + i * 1000, flags=flags, win=65535)
            w.writepkt(bytes(ethernet.Ethernet(type=ethernet.ETH_TYPE_IP, data=ip.IP(
                src=src[0], dst=dst[0], p=ip.IP_PROTO_TCP, data=syn))), ts=1_764_500_000.0)
        seqs = {"out": 1000, "in": 2000}
        t = 1_764_500_000.0
        for k in range(n):
            direction = "out" if k % 2 == 0 else "in"
            pkt, size = templates[direction]
            struct.pack_into(">I", pkt, seq_at, seqs[direction])
            seqs[direction] = (seqs[direction] + size) % (1 << 32)
            t += 0.0005
            w.writepkt_time(bytes(pkt), t)
    return n + 2


def dpkt_loop(path: Path) -> int:
    """The peer: every packet parsed down to its TCP payload; returns the segments with a payload."""
    count = 0
    with open(path, "rb") as fh:
        for _ts, buf in pcap.Reader(fh):
            payload = ethernet.Ethernet(buf).data.data.data
            if payload:
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000, help="ISO messages in the pcap (default 100000)")
    ap.add_argument("--dialect", default="iso87ascii", choices=("iso87ascii", "iso87", "cup", "iso87bcd"))
    ns, _other = ap.parse_known_args(argv)  # benchmarks/run hands every benchmark the same arguments
    tmp = Path(tempfile.mkdtemp(prefix="posguard-bench-pcap-"))
    try:
        src = tmp / "host-link.pcap"
        packets = write_pcap(src, ns.messages, ns.dialect)
        print(f"pcap: {ns.messages:,} messages in {packets:,} packets, {src.stat().st_size / 1e6:.1f} MB "
              f"(Ethernet, IPv4, binary2, {ns.dialect})")
        start = time.perf_counter()
        seen = dpkt_loop(src)
        loop_s = time.perf_counter() - start
        start = time.perf_counter()
        written = import_pcap(src, tmp / "host-link.jsonl", dialect=ns.dialect)
        import_s = time.perf_counter() - start
        assert seen == written == ns.messages, (seen, written)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loop_rate, import_rate = ns.messages / loop_s, ns.messages / import_s
    print(f"{'pass':<40} {'seconds':>8} {'messages/s':>12}")
    print(f"{'dpkt loop (read + parse to TCP payload)':<40} {loop_s:>8.2f} {loop_rate:>12,.0f}")
    print(f"{'import_pcap (reassemble, decode, write)':<40} {import_s:>8.2f} {import_rate:>12,.0f}")
    print(f"ratio import_pcap / dpkt loop: {import_rate / loop_rate:.3f}x "
          f"(the import takes {import_s / loop_s:.1f}x the loop's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
