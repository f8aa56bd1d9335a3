"""A pcap of the host link (TCP, any framing, split and retransmitted segments) becomes a capture."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from posguard.capture import read_capture
from posguard.capture.pcap import PcapError, import_pcap
from posguard.capture.replay import replay
from posguard.iso8583.framing import Framing
from posguard.service.till import Till
from tests.product.conftest import CAPTURES, clear_pan_hits

HOST, TERM = (bytes([10, 0, 0, 1]), 5000), (bytes([10, 0, 0, 2]), 40000)


def _packet(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", src[1], dst[1], seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src[0], dst[0]) + tcp
    return b"\x00" * 12 + b"\x08\x00" + ip  # Ethernet


def _pcap(packets: list[tuple[float, bytes]]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for ts, pkt in packets:
        out += struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(pkt), len(pkt)) + pkt
    return out


@pytest.mark.parametrize("framing", ["binary2", "ascii4"])
def test_pcap_of_the_host_link_imports_every_message(framing: str, tmp_path: Path) -> None:
    source = read_capture(CAPTURES / "iso87ascii-reversal.jsonl")
    messages = [(r["dir"], bytes.fromhex(r["hex"])) for r in source.of_kind("iso")]
    fr = Framing(framing)
    seqs = {"out": 1000, "in": 9000}
    packets: list[tuple[float, bytes]] = [(1.0, _packet(TERM, HOST, 999, 0x02, b""))]
    t = 1.0
    for direction, raw in messages:
        src, dst = (TERM, HOST) if direction == "out" else (HOST, TERM)
        data = fr.frame(raw)
        half = len(data) // 2
        for part in (data[:half], data[half:]):  # split across two segments
            t += 0.01
            packets.append((t, _packet(src, dst, seqs[direction], 0x18, part)))
            seqs[direction] += len(part)
        packets.append((t, _packet(src, dst, seqs[direction] - len(data) + half, 0x18, data[half:])))  # resent
    pcap = tmp_path / "link.pcap"
    pcap.write_bytes(_pcap(packets))
    out = tmp_path / "link.jsonl"
    n = import_pcap(pcap, out, dialect="iso87ascii", framing=framing, tid="POSGRD01")
    assert n == len(messages)
    cap = read_capture(out)
    assert [r["dir"] for r in cap.of_kind("iso")] == [d for d, _ in messages]
    assert clear_pan_hits(out.read_bytes()) == []
    result = replay(out, desk=Till.for_replay, journal_path=tmp_path / "j.db")
    try:
        assert "reversal" in [i.kind for i in result.incidents]
    finally:
        result.journal.close()


def test_not_a_pcap_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)
    with pytest.raises(PcapError, match="pcapng"):
        import_pcap(bad, tmp_path / "o.jsonl", dialect="cup")
