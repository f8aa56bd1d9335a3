"""``posguard demo`` end to end: simulators up, the whole day through the real stack, every process cleaned up;
the day's capture replays to the incidents the live run printed; nothing it wrote holds a PAN in clear."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from posguard.capture import read_capture
from posguard.capture.replay import replay
from posguard.drivers.twin.frames import lrc
from posguard.iso8583.message import Message
from posguard.service.till import Till
from tests.product.conftest import ROOT, clear_pan_hits

ERROR_KINDS = {"duplicate_charge", "wrong_card", "wrong_amount", "void_mismatch", "unsettled", "unsigned",
               "reversal"}


def _tagged(tag: str) -> list[str]:
    """Command lines of live processes whose environment carries ``tag`` (the demo's simulators inherit it)."""
    needle = f"POSGUARD_TEST_TAG={tag}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if needle in (d / "environ").read_bytes().split(b"\0"):
                    out.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return out


@pytest.mark.pcscd
@pytest.mark.parametrize(("dialect", "reader"), [("cup", "auto"), ("iso87ascii", "auto"), ("cup", "twin")])
def test_demo_day_detects_and_corrects_every_error_kind(dialect: str, reader: str, tmp_path: Path) -> None:
    record = tmp_path / "day.jsonl"
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "PCSCLITE_CSOCK_NAME"}
    env["POSGUARD_TEST_TAG"] = tag
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "posguard.cli", "demo", "--dialect", dialect, "--reader", reader, "--record",
                             str(record), "--journal-dir", str(journal_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=90)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err[-3000:]
    assert elapsed < 60
    assert "== incident report" in out and "every simulator stopped" in out
    # issue 12 §6: the UnionPay debit card's PIN is keyed on the encrypting PIN pad (field 52), as the host's
    # default PIN-block check requires of its online-PIN CVM
    assert "the sign-on's working PIN key loaded under the terminal's TMK" in out
    assert any("UnionPay Debit" in line and "PIN entered on the PIN pad" in line for line in out.splitlines())
    pin_sales = [line for line in out.splitlines() if "sale" in line and "on 625094******0014:" in line]
    assert pin_sales and " approved rc 00" in pin_sales[0]  # the host accepted the block (not 99/81: wrong key)
    # the unbalanced batch: the acquirer's report names the sale the host booked against a 51, nothing else
    [finding] = [line for line in out.splitlines() if "host_booked_not_approved:" in line]
    assert "sale" in finding and "CNY 15.00; terminal declined rc 51, host approved" in finding
    assert "the acquirer's settlement report, batch 1: 1 finding(s)" in out
    live = [line for line in out.splitlines() if "INCIDENT " in line]
    kinds = {line.split("INCIDENT ")[1].split()[0] for line in live}
    assert kinds == ERROR_KINDS
    assert _tagged(tag) == []  # every simulator and the private pcscd it started are gone

    # record -> replay: the same incidents, the same transactions
    result = replay(record, desk=Till.for_replay, journal_path=tmp_path / "replay.db")
    try:
        replayed = [(i.kind, i.rule, tuple(i.transactions)) for i in result.incidents]
    finally:
        result.journal.close()
    printed = [line.split("INCIDENT ")[1] for line in live]
    assert [f"{k} [{r}] txns {', '.join(t) or '-'}" for k, r, t in replayed] == [p.split(" -> ")[0] for p in printed]

    # the reader's records: the swiped card always; the raw frames when the reader is the serial Twin
    capture = read_capture(record)
    [swipe] = list(capture.of_kind("swipe"))
    swiped = [c for c in capture.of_kind("card") if c["ref"] == swipe["ref"]]
    assert swiped and swiped[0]["entry_mode"] == "swipe" and swipe["track2"].startswith(swiped[0]["pan"] + "=")
    swipe_ops = [o for o in capture.of_kind("op") if o["op"] == "sale" and o.get("card") == swipe["ref"]]
    sales_out = [Message.decode(bytes.fromhex(r["hex"]), dialect) for r in capture.of_kind("iso")
                 if r["dir"] == "out" and r["mti"] == "0200"]
    with_track = [m for m in sales_out if "35" in m]  # a swiped sale carries its (sanitised) track 2
    assert swipe_ops and len(with_track) == len(swipe_ops)
    assert all(str(m["35"]) == swipe["track2"].replace("=", "D") and m["22"] == ("022" if dialect == "cup" else "901")
               for m in with_track)
    frames = list(capture.of_kind("frame"))
    if "GemPC Twin" in out:
        assert {f["dir"] for f in frames} == {"out", "in"}
        for f in frames:
            raw = bytes.fromhex(f["hex"])
            assert raw[:2] == bytes.fromhex("0306") and lrc(raw[:-1]) == raw[-1], f
        test_pans = {c["pan"] for c in capture.of_kind("card")}
        assert any(p in f["hex"] for f in frames for p in test_pans)  # the card data is there, sanitised
        assert result.skipped["frame"] == len(frames)
    else:
        assert frames == []

    # nothing written in the run holds a PAN in clear: capture, console, journal (+WAL)
    assert capture.dialect == dialect
    assert clear_pan_hits(record.read_bytes()) == []
    assert clear_pan_hits((out + err).encode()) == []
    for f in journal_dir.iterdir():
        assert clear_pan_hits(f.read_bytes()) == [], f.name


def test_demo_help_lists_its_options() -> None:
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "demo", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    assert res.returncode == 0
    for opt in ("--dialect", "--record"):
        assert opt in res.stdout
    json.dumps(res.stdout)
