"""Issue 10: ``import-pcap`` answers every bad pcap with one PcapError (a frame over the framing's limit, a
truncated packet, mutated bytes), never a traceback; a fuzzer over a few thousand mutated pcaps checks it, and
(issue 14) over as many mutated pcapngs (written by dpkt: SHB, IDB with options, EPBs; IPv6 in SLL2)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from dpkt import pcapng, sll2, tcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posguard.capture.format import CaptureError, read_capture
from posguard.capture.pcap import PcapError, import_pcap
from tests.product.test_pcap_import import HOST, TERM, _packet, _pcap
from tests.product.test_pcap_linktypes import Conn


def _seed() -> bytes:
    """A small pcap: a SYN and two framed messages to the host."""
    frames = [len(m).to_bytes(2, "big") + m for m in (b"0800\x82" + bytes(15) + b"301", b"0810" + bytes(20))]
    packets = [(1.0, _packet(TERM, HOST, 999, 0x02, b""))]
    seq = 1000
    for i, f in enumerate(frames):
        packets.append((1.0 + i, _packet(TERM, HOST, seq, 0x18, f)))
        seq += len(f)
    return _pcap(packets)


def test_a_frame_over_the_limit_is_one_error_naming_the_packet(tmp_path: Path) -> None:
    big = (9000).to_bytes(2, "big") + b"0" * 9000
    pcap = tmp_path / "big.pcap"
    pcap.write_bytes(_pcap([(1.0, _packet(TERM, HOST, 999, 0x02, b"")), (2.0, _packet(TERM, HOST, 1000, 0x18, big))]))
    with pytest.raises(PcapError) as err:
        import_pcap(pcap, tmp_path / "o.jsonl", dialect="iso87ascii")
    assert "packet 2" in str(err.value) and "8192" in str(err.value) and "\n" not in str(err.value)


def _seed_ng() -> bytes:
    """A small pcapng: a nanosecond SLL2 interface, the handshake over IPv6 and two framed messages."""
    frames = [len(m).to_bytes(2, "big") + m for m in (b"0800\x82" + bytes(15) + b"301", b"0810" + bytes(20))]
    conn = Conn(6)
    pkts = conn.handshake() + [conn.packet(d, seq, tcp.TH_ACK, part) for d, f in zip(("out", "in"), frames, strict=True)
                               for seq, part in conn.stream(d, f, [3])]
    buf = io.BytesIO()
    idb = pcapng.InterfaceDescriptionBlockLE(linktype=276, snaplen=65535, opts=[
        pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"),
        pcapng.PcapngOptionLE(code=pcapng.PCAPNG_OPT_ENDOFOPT)])
    writer = pcapng.Writer(buf, idb=idb)
    for i, p in enumerate(pkts):
        writer.writepkt(bytes(sll2.SLL2(ethtype=0x86DD, data=p)), ts=1.0 + i)
    return buf.getvalue()


SEED, SEED_NG = _seed(), _seed_ng()


def test_the_pcapng_seed_imports(tmp_path: Path) -> None:
    pcap, out = tmp_path / "s.pcapng", tmp_path / "s.jsonl"
    pcap.write_bytes(SEED_NG)
    assert import_pcap(pcap, out, dialect="iso87ascii") == 2


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(SEED) - 1), st.integers(0, 255)), max_size=8),
       st.integers(min_value=0, max_value=len(SEED)))
def test_fuzzed_pcaps_give_a_pcap_error_or_a_readable_capture(tmp_path: Path, flips: list[tuple[int, int]],
                                                              cut: int) -> None:
    _fuzz(SEED, tmp_path, flips, cut)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(SEED_NG) - 1), st.integers(0, 255)), max_size=8),
       st.integers(min_value=0, max_value=len(SEED_NG)))
def test_fuzzed_pcapngs_give_a_pcap_error_or_a_readable_capture(tmp_path: Path, flips: list[tuple[int, int]],
                                                                cut: int) -> None:
    _fuzz(SEED_NG, tmp_path, flips, cut)


def _fuzz(seed: bytes, tmp_path: Path, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    pcap, out = tmp_path / "f.pcap", tmp_path / "f.jsonl"
    pcap.write_bytes(bytes(data))
    try:
        import_pcap(pcap, out, dialect="iso87ascii")
    except PcapError as exc:
        assert "\n" not in str(exc)
        return
    try:
        read_capture(out)
    except CaptureError as exc:  # pragma: no cover - the importer writes what the reader reads
        raise AssertionError(f"the importer wrote a capture the reader refuses: {exc}") from None
