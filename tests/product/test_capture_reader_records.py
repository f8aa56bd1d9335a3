"""``frame`` and ``swipe`` records: sanitised as written (frames keep a valid LRC), read back, and counted (not
replayed) by a replay; a swipe through the serial magstripe simulator recorded and replayed as a swiped sale."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from posguard.capture import CaptureError, CaptureWriter, Sanitiser, read_capture
from posguard.capture.format import sanitise_frame
from posguard.capture.replay import replay
from posguard.clock import VirtualClock
from posguard.drivers.twin.frames import encode_frame, lrc
from posguard.iso8583 import Message
from posguard.sensitive import luhn_ok
from posguard.service.till import Till
from tests.product.conftest import SIM_PANS, clear_pan_hits

VISA = SIM_PANS[0]


def ccid(msg_type: int, payload: bytes, seq: int = 3) -> bytes:
    return bytes((msg_type,)) + len(payload).to_bytes(4, "little") + bytes((0, seq, 0, 0, 0)) + payload


def valid(frame: bytes) -> bool:
    return frame[:2] == b"\x03\x06" and lrc(frame[:-1]) == frame[-1]


def test_frame_sanitiser_replaces_pans_and_recomputes_the_lrc() -> None:
    s = Sanitiser(salt=b"s" * 16)
    record = bytes.fromhex(f"70135A08{VISA}5F24032812315F340101") + b"\x90\x00"
    raw = encode_frame(ccid(0x80, record))
    clean = sanitise_frame(raw, s)  # the PAN was not learnt before: tag 5A teaches it
    test = s.learn(VISA)
    assert len(clean) == len(raw) and valid(clean) and clean != raw
    assert clean[2:12] == raw[2:12]  # CCID header (length, slot, seq) unchanged
    assert bytes.fromhex(test) in clean and bytes.fromhex(VISA) not in clean
    assert luhn_ok(test) and test[:6] == VISA[:6]
    # track 2 equivalent (57) and track 1 (ASCII, tag 56) of a PAN already known: the same test PAN
    t2 = bytes.fromhex(f"5710{VISA}D28122011000000000000F")
    t1 = b"\x56\x10B" + VISA.encode()[:15]
    clean2 = sanitise_frame(encode_frame(ccid(0x80, t2 + b"\x90\x00")), s)
    assert valid(clean2) and bytes.fromhex(test) in clean2 and clean_pan_free(clean2)
    clean1 = sanitise_frame(encode_frame(ccid(0x80, t1 + VISA.encode()[15:] + b"\x90\x00")), s)
    assert valid(clean1) and test.encode() in clean1 and clean_pan_free(clean1)


def clean_pan_free(data: bytes) -> bool:
    return clear_pan_hits(data) == []


def test_frame_sanitiser_blanks_verify_and_leaves_other_commands() -> None:
    s = Sanitiser()
    verify = bytes.fromhex("0020008008241234FFFFFFFFFF")
    clean = sanitise_frame(encode_frame(ccid(0x6F, verify)), s)
    assert valid(clean) and clean[12:-1] == bytes.fromhex("0020008008") + bytes(8)
    read = encode_frame(ccid(0x6F, bytes.fromhex("00B2010C00")))
    assert sanitise_frame(read, s) == read
    assert sanitise_frame(b"\x03\x15\x16", s) == bytes(3)  # not a frame: only its length is kept


def test_writer_frame_and_swipe_records_read_back(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    clock = VirtualClock()
    with CaptureWriter(path, dialect="cup", tid="POSGRD01", mid="MERCHANT0000001", clock=clock) as w:
        at = w.now()
        clock.advance(1.0)
        w.swipe(f"{VISA}=28121011234567890123", ref="s1", has_track1=True)
        w.frame("in", encode_frame(ccid(0x80, bytes.fromhex(f"5A08{VISA}9000"))), at=at)  # held: t kept >= 1
        w.frame("out", encode_frame(ccid(0x6F, bytes.fromhex("0020008008241234FFFFFFFFFF"))))
    assert clear_pan_hits(path.read_bytes()) == []
    cap = read_capture(path)
    [swipe] = list(cap.of_kind("swipe"))
    pan, _, rest = swipe["track2"].partition("=")
    assert pan != VISA and pan[:6] == VISA[:6] and luhn_ok(pan) and rest == "2812101" + "0" * 13
    frames = list(cap.of_kind("frame"))
    assert [f["dir"] for f in frames] == ["in", "out"]
    assert all(valid(bytes.fromhex(f["hex"])) for f in frames)
    assert pan in frames[0]["hex"]  # one card, one test PAN across record kinds
    ts = [r["t"] for r in cap.records]
    assert ts == sorted(ts)


@pytest.mark.parametrize(("record", "what"), [
    ('{"t": 0, "k": "frame", "dir": "up", "hex": "00"}', "dir"),
    ('{"t": 0, "k": "frame", "dir": "in", "hex": "zz"}', "not hex"),
    ('{"t": 0, "k": "swipe"}', "track2"),
])
def test_bad_frame_and_swipe_records_name_the_line(record: str, what: str) -> None:
    text = '{"posguard_capture": 1, "dialect": "cup", "terminal": {"tid": "T"}}\n' + record + "\n"
    with pytest.raises(CaptureError) as info:
        read_capture(io.StringIO(text))
    assert info.value.line == 2 and what in str(info.value)


# -- a swipe through the service: `posguard run` + serial magstripe simulator + host simulator -------------
def test_service_swipe_is_recorded_and_replays_as_a_swiped_sale(tmp_path: Path) -> None:
    from firmware_sim.host import HostSimulator, SimConfig
    from firmware_sim.rig.sims import magstripe_reader
    from tests.product.stdin_service import LOGS, stdin_service
    from tests.product.test_service import write_config

    capture = tmp_path / "swipe.jsonl"
    with HostSimulator(SimConfig(dialect="iso87ascii")) as host, magstripe_reader(service_code="101") as mag:
        config = write_config(tmp_path, host.port)
        config.write_text(config.read_text().replace('kind = "pcsc"', f'kind = "none"\nmagstripe_port = '
                                                                        f'"{mag.link}"'))
        with stdin_service(config, record=capture, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as service:
            assert service.ask("status")["ok"]  # started: the swipe reader's port is open
            mag.swipe()
            sale = service.ask("swipe 1999 order=S-1")
            assert sale["ok"] and sale["state"] == "signature_pending", sale  # a swipe is signed for
            assert service.ask(f"sign {sale['txn']}")["state"] == "signed"
    out, err = service.out, service.err
    assert service.returncode == 0, err
    assert clear_pan_hits(capture.read_bytes() + out.encode() + err.encode() + "".join(LOGS).encode()) == []
    cap = read_capture(capture)
    [swipe] = list(cap.of_kind("swipe"))
    [card] = list(cap.of_kind("card"))
    assert card["entry_mode"] == "swipe" and card["source"] == "magstripe" and card["cvm_required"] is True
    assert swipe["track2"].startswith(card["pan"] + "=")
    [out_sale] = [r for r in cap.of_kind("iso") if r["dir"] == "out" and r["mti"] == "0200"]
    assert Message.decode(bytes.fromhex(out_sale["hex"]), "iso87ascii")["22"] == "901"  # swiped, full track 2 in field 35

    result = replay(capture, desk=Till.for_replay, journal_path=tmp_path / "replay.db")
    try:
        assert result.skipped == {"swipe": 1}
        [sent] = [m for m in result.sent if m.mti == "0200"]
        assert sent["22"] == "901" and sent.pan is not None and sent.pan.reveal() == card["pan"]
        assert sent["35"] == swipe["track2"].replace("=", "D")  # the swipe's sanitised track 2 is sent again
        states = {t.id: t.state for t in result.journal.find_txns()}
        assert states == {sale["txn"]: "signed"}
    finally:
        result.journal.close()
    json.dumps(result.skipped)
