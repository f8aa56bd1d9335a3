"""``posguard diagnose`` against healthy simulators (all ok) and against each injected fault (the right check
fails, with the figure and advice a technician needs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.rig.pcscd import get_rig
from firmware_sim.rig.sims import SimProcess, vpcd_card
from posguard.clock import SystemClock
from posguard.diagnose import CheckResult, DiagnoseConfig, exit_status, run_checks
from posguard.engine.journal import Journal
from tests.product.conftest import ROOT


@pytest.fixture
def host() -> Iterator[HostSimulator]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        yield sim


@pytest.fixture
def journal_file(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    Journal(path, clock=SystemClock()).close()
    return path


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def cfg_for(host: HostSimulator | None, journal: Path | None = None, **kw: object) -> DiagnoseConfig:
    cfg = DiagnoseConfig(reader="Virtual PCD 00 00", host="127.0.0.1" if host else None,
                         port=host.port if host else None, dialect="iso87ascii", journal=str(journal) if journal
                         else None, apdu_samples=5, apdu_timeout=1.5, soak_seconds=0.3)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.mark.pcscd
def test_healthy_simulators_report_ok(host: HostSimulator, journal_file: Path) -> None:
    with vpcd_card("visa_credit_sig"):
        results = by_name(run_checks(cfg_for(host, journal_file), ["pcsc", "card", "host", "journal", "clock"]))
    assert {n: r.verdict for n, r in results.items()} == {
        "pcsc": "ok", "card": "ok", "host": "ok", "journal": "ok", "clock": "ok"}, results
    assert "APDU median" in results["pcsc"].figure and results["pcsc"].data["atr"]
    assert results["card"].data["apdus"] > 5
    assert "0800 echo" in results["host"].figure
    assert abs(results["clock"].data["drift_s"]) < 5


@pytest.mark.pcscd
def test_pcscd_stopped_fails_the_pcsc_check() -> None:
    get_rig().stop()
    [result] = run_checks(cfg_for(None), ["pcsc"])
    assert result.verdict == "fail" and "pcscd not running" in result.figure and "pcscd" in result.advice


@pytest.mark.pcscd
def test_mute_card_fails_the_card_check() -> None:
    with vpcd_card("visa_credit_sig", faults=["mute ins=A8 times=0"]):
        [result] = run_checks(cfg_for(None), ["card"])
    assert result.verdict == "fail" and "EMV read failed" in result.figure and result.advice
    assert result.advice not in result.figure  # the hint is printed once, on its own line


def test_no_host_configured_skips_the_clock_saying_why() -> None:
    [result] = run_checks(DiagnoseConfig(), ["clock"])
    assert result.verdict == "skip" and "no host configured" in result.figure and "host.address" in result.advice


@pytest.mark.pcscd
def test_no_card_is_a_warning() -> None:
    with vpcd_card("visa_credit_sig", inserted=False):
        results = run_checks(cfg_for(None), ["pcsc"])
    assert results[0].verdict == "warn" and "no card" in results[0].figure and exit_status(results) == 1


def _twin(tmp_path: Path, *faults: str) -> SimProcess:
    args = ["--link", str(tmp_path / "twin"), "--profile", "visa_credit_sig"]
    for f in faults:
        args += ["--fault", f]
    sim = SimProcess("twin_reader", args)
    sim.start()
    return sim


def test_serial_twin_healthy_is_ok(tmp_path: Path) -> None:
    sim = _twin(tmp_path)
    try:
        [result] = run_checks(cfg_for(None, serial_port=str(tmp_path / "twin")), ["serial"])
    finally:
        sim.stop()
    assert result.verdict == "ok", result
    assert result.data["polls"] > 3 and result.data["counters"]["lrc_errors"] == 0


def test_serial_noise_is_reported(tmp_path: Path) -> None:
    sim = _twin(tmp_path, "noise garbage=0.4 flip=0.2 times=0")
    try:
        [result] = run_checks(cfg_for(None, serial_port=str(tmp_path / "twin")), ["serial"])
    finally:
        sim.stop()
    assert result.verdict in ("warn", "fail"), result
    c = result.data.get("counters", {})
    assert c.get("lrc_errors", 0) + c.get("garbage_bytes", 0) + c.get("retransmissions", 0) > 0 or \
        "does not answer" in result.figure
    assert "cable" in result.advice or "power-cycle" in result.advice


def test_host_down_fails_host_and_skips_clock(journal_file: Path) -> None:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        port = sim.port
    results = by_name(run_checks(DiagnoseConfig(host="127.0.0.1", port=port, dialect="iso87ascii"),
                                 ["host", "clock"]))
    assert results["host"].verdict == "fail" and "cannot connect" in results["host"].figure
    assert results["clock"].verdict == "skip"


def test_journal_with_a_pending_reversal_warns(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, clock=SystemClock())
    with j.atomic("t"):
        j.saf_insert(kind="reversal", txn_id=None, state="queued", mti="0400", sealed=b"x", reason="98",
                     next_at=0.0, expires_at=None)
    j.close()
    [result] = run_checks(DiagnoseConfig(journal=str(path)), ["journal"])
    assert result.verdict == "warn" and "integrity ok" in result.figure and result.data["pending"] == 1
    assert "host line" in result.advice


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--check", "host", "--host",
                          "127.0.0.1:1", "--json"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 2
    [obj] = [json.loads(line) for line in res.stdout.splitlines()]
    assert obj["check"] == "host" and obj["verdict"] == "fail" and obj["next"]


def _diagnose_cli(*args: str) -> tuple[int, dict[str, dict[str, object]]]:
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--json", *args], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert res.stderr == "", res.stderr
    return res.returncode, {o["check"]: o for o in (json.loads(line) for line in res.stdout.splitlines())}


def test_a_healthy_twin_box_follows_reader_kind(tmp_path: Path) -> None:
    """reader.kind = "twin": no PC/SC check to fail (no pcscd on this box), the serial check runs."""
    config = tmp_path / "posguard.toml"
    config.write_text(f'[reader]\nkind = "twin"\nserial_port = "{tmp_path / "twin"}"\n')
    sim = _twin(tmp_path)
    try:
        status, results = _diagnose_cli("--config", str(config), "--check", "pcsc", "--check", "serial")
    finally:
        sim.stop()
    assert results["pcsc"]["verdict"] == "skip" and 'reader.kind = "twin"' in str(results["pcsc"]["figure"])
    assert results["serial"]["verdict"] == "ok" and status == 0, results
    config.write_text('[reader]\nkind = "none"\n')
    status, results = _diagnose_cli("--config", str(config), "--check", "pcsc", "--check", "serial",
                                    "--check", "card")
    assert {r["verdict"] for r in results.values()} == {"skip"} and status == 0


def test_the_running_service_is_asked_about_the_reader_it_holds(tmp_path: Path, host: HostSimulator) -> None:
    import os

    from tests.product.test_reader_hotplug import Op, _service, _stop, _until

    port = tmp_path / "ttyPOS"
    proc, sock = _service(tmp_path, host.port, f'kind = "twin"\nserial_port = "{port}"\n')
    config = tmp_path / "posguard.toml"
    sim = SimProcess("twin_reader", ["--link", str(tmp_path / "twin"), "--profile", "visa_credit_sig"])
    op = Op(sock)
    try:
        status, missing = _diagnose_cli("--config", str(config), "--check", "serial", "--check", "card")
        assert status == 2 and missing["serial"]["verdict"] == "fail", missing
        assert f"reports the reader waiting for {port}" in str(missing["serial"]["figure"])
        sim.start()
        os.symlink(os.readlink(tmp_path / "twin"), port)
        _until(op, lambda s: s["reader"] == "open", "the Twin was never opened")
        status, held = _diagnose_cli("--config", str(config), "--check", "serial", "--check", "card")
        assert held["serial"]["verdict"] == "ok" and "holds the reader: open" in str(held["serial"]["figure"])
        assert held["card"]["verdict"] == "skip" and status == 0, held
        assert op.ask("sale 1250")["ok"]  # the service still owns a working reader: diagnose never opened it
    finally:
        op.close()
        _stop(proc)
        sim.stop()
    assert proc.returncode == 0


def test_the_pin_pad_check(tmp_path: Path) -> None:
    """Issue 14 item 5: diagnose follows the configuration's PIN pad (issue 12's EPP): found and answering, no
    working key yet (warn), absent (fail), not configured (skip)."""
    from firmware_sim.rig.sims import pin_pad

    assert by_name(run_checks(DiagnoseConfig(), ["pinpad"]))["pinpad"].verdict == "skip"
    with pin_pad() as pad:
        result = by_name(run_checks(DiagnoseConfig(pinpad_port=str(pad.link)), ["pinpad"]))["pinpad"]
        assert result.verdict == "warn" and "POSGUARD-EPP-SIM" in result.figure and "sign on" in result.advice
        code, checks = _diagnose_cli("--check", "pinpad", "--pinpad", str(pad.link))
        assert code == 1 and checks["pinpad"]["verdict"] == "warn"
    gone = by_name(run_checks(DiagnoseConfig(pinpad_port=str(tmp_path / "ttyPin")), ["pinpad"]))["pinpad"]
    assert gone.verdict == "fail" and "pinpad.port" in gone.advice


def test_the_clock_reads_fields_12_13_in_the_terminal_zone() -> None:
    """A CUP acquirer answers 12/13 in the terminal's local time (Asia/Shanghai): a healthy box configured so
    is ok (it was 8 h "off" when 12/13 were read as UTC); read in a wrong zone, the advice names the zone."""
    with HostSimulator(SimConfig(dialect="cup")) as sim:
        shanghai = by_name(run_checks(DiagnoseConfig(host="127.0.0.1", port=sim.port, dialect="cup",
                                                     timezone="Asia/Shanghai"), ["clock"]))["clock"]
        utc = by_name(run_checks(DiagnoseConfig(host="127.0.0.1", port=sim.port, dialect="cup", timezone="UTC"),
                                 ["clock"]))["clock"]
    assert shanghai.verdict == "ok" and abs(float(shanghai.data["drift_s"])) < 5, shanghai
    assert "Asia/Shanghai" in shanghai.figure
    assert utc.verdict == "fail" and "8 h apart" in utc.advice and "terminal.timezone" in utc.advice, utc


@pytest.mark.pcscd
def test_a_mute_card_is_not_read_again_by_the_card_check() -> None:
    """After the pcsc check met a mute card the reader stays blocked (vpcd waits for the card, as a real reader
    with a card that never answers): the card check does not open it again, which hung diagnose for good."""
    with vpcd_card("visa_credit_sig", faults=["mute times=0"]):
        results = by_name(run_checks(cfg_for(None), ["pcsc", "card"]))
    assert results["pcsc"].verdict == "fail" and "CardMute" in results["pcsc"].figure, results
    assert results["card"].verdict == "skip" and "pcsc check failed" in results["card"].figure
    assert exit_status(list(results.values())) == 2


def test_a_port_where_no_twin_answers_is_waited_on_once(tmp_path: Path) -> None:
    """A serial path where nothing answers as a GemPC Twin (a silent pty: another device, or the wrong port):
    the serial check fails and says so; the card check does not open the same silent port again."""
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        results = by_name(run_checks(cfg_for(None, reader=None, serial_port=os.ttyname(slave), serial_timeout=0.3),
                                     ["serial", "card"]))
    finally:
        os.close(master)
        os.close(slave)
    assert results["serial"].verdict == "fail" and "GemPC Twin" in results["serial"].advice, results
    assert results["card"].verdict == "skip" and "serial check failed" in results["card"].figure


def test_an_unplugged_twin_is_named_unplugged(tmp_path: Path) -> None:
    """The Twin's pty closes (the reader unplugged): its path is gone, and the check says so in those words."""
    sim = _twin(tmp_path)
    try:
        sim.command("fault unplug")
        [result] = run_checks(cfg_for(None, reader=None, serial_port=str(tmp_path / "twin")), ["serial"])
    finally:
        sim.stop()
    assert result.verdict == "fail" and "does not exist" in result.figure and "unplugged" in result.figure, result
    assert "serial_port" in result.advice and "SerialException" not in result.figure


@pytest.mark.pcscd
def test_a_configured_reader_that_is_absent_fails_naming_the_readers_there() -> None:
    """reader.name names a reader pcscd does not list (another model plugged in): a failure naming both, not
    "no card" (the driver would wait for the named reader to appear)."""
    with vpcd_card("visa_credit_sig"):
        [result] = run_checks(cfg_for(None, reader="Gemalto PC Twin"), ["pcsc"])
    assert result.verdict == "fail" and "'Gemalto PC Twin' not among" in result.figure, result
    assert "Virtual PCD 00 00" in result.figure and "reader.name" in result.advice


def test_a_bad_host_argument_is_an_argparse_error_not_a_traceback() -> None:
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--check", "host", "--host",
                          "127.0.0.1:abc"], capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "argument --host" in res.stderr, res.stderr
    status, checks = _diagnose_cli("--check", "host", "--host", "127.0.0.1")
    assert status == 2 and checks["host"]["verdict"] == "fail" and "has no port" in str(checks["host"]["figure"])


def test_a_host_that_answers_wrongly_is_told_apart() -> None:
    """A host answering garbage, and one speaking another framing (it drops the connection), each with what to
    check; an echo moves no money, so the link's "the outcome is unknown: reverse" is not repeated to the
    technician."""
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        sim.add_fault("garbage", times=0)
        garbage = by_name(run_checks(DiagnoseConfig(host="127.0.0.1", port=sim.port, dialect="iso87ascii"),
                                     ["host"]))["host"]
    with HostSimulator(SimConfig(dialect="iso87ascii", framing="ascii4")) as sim:
        framing = by_name(run_checks(DiagnoseConfig(host="127.0.0.1", port=sim.port, dialect="iso87ascii",
                                                    framing="binary2"), ["host"]))["host"]
    assert garbage.verdict == "fail" and "answers in another format" in garbage.figure, garbage
    assert "host.dialect (iso87ascii)" in garbage.advice and "reverse" not in garbage.figure
    assert framing.verdict == "fail" and "closes the connection" in framing.figure, framing
    assert "host.framing (binary2)" in framing.advice and "reverse" not in framing.figure


@pytest.mark.pcscd
def test_a_reader_left_blocked_by_a_mute_card_ends_in_bounded_time() -> None:
    """The next diagnose on a reader a mute card still blocks (pcscd waits for the card in SCardConnect, with no
    timeout of its own): the pcsc check gives up at its deadline and says what is stuck, instead of hanging."""
    with vpcd_card("visa_credit_sig", faults=["mute times=0"]):
        [first] = run_checks(cfg_for(None), ["pcsc"])
        [second] = run_checks(cfg_for(None, check_deadline=0.5), ["pcsc"])
    assert first.verdict == "fail" and "CardMute" in first.figure, first
    assert second.verdict == "fail" and "no answer within 0.5 s" in second.figure and "stuck" in second.figure
    assert "remove the card" in second.advice and second.data == {"deadline_s": 0.5}


def test_a_pin_pad_port_that_answers_wrongly_says_which_way(tmp_path: Path) -> None:
    """pinpad.port naming the card reader's port (nothing answers as a PIN pad) is told apart from a PIN pad
    whose answers arrive garbled (a noisy cable): the first points at the port, the second at the cable."""
    from firmware_sim.rig.sims import pin_pad

    sim = _twin(tmp_path)
    try:
        [wrong] = run_checks(DiagnoseConfig(pinpad_port=str(tmp_path / "twin"), pinpad_timeout=0.5), ["pinpad"])
    finally:
        sim.stop()
    with pin_pad(faults=["noise garbage=0.5 flip=0.3 times=0"]) as pad:
        [noisy] = run_checks(DiagnoseConfig(pinpad_port=str(pad.link), pinpad_timeout=0.5), ["pinpad"])
    assert wrong.verdict == "fail" and "does not answer" in wrong.figure, wrong
    assert "pinpad.port is the PIN pad's port" in wrong.advice and "posguard diagnose" not in wrong.advice
    assert noisy.verdict == "fail" and "garbled" in noisy.figure and "cable" in noisy.advice, noisy
    assert noisy.data["counters"]["errors"]["frame"] >= 1


def test_a_configuration_diagnose_cannot_use_is_said_not_ignored(tmp_path: Path) -> None:
    """--config naming a missing or broken file ran every check on defaults ("no host configured", exit 0); a
    wrong value in a key diagnose reads was dropped in silence. Now: no check on an unreadable file (exit 2),
    and the wrong value is named on stderr (stdout stays one JSON object per check) with at least a warning."""
    missing = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--json", "--check", "host",
                              "--config", str(tmp_path / "posguard.toml")], capture_output=True, text=True,
                             cwd=ROOT, check=False)
    assert missing.returncode == 2 and missing.stdout == "" and "posguard.toml not found" in missing.stderr
    config = tmp_path / "posguard.toml"
    config.write_text('[reader]\nkind = "none"\n[host]\naddress = "127.0.0.1"\nport = "5000"\n')
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--json", "--check", "host",
                          "--config", str(config)], capture_output=True, text=True, cwd=ROOT, check=False)
    assert "host.port: must be int" in res.stderr and res.returncode >= 1, (res.returncode, res.stderr)
    [obj] = [json.loads(line) for line in res.stdout.splitlines()]
    assert obj["check"] == "host"


def test_a_clock_far_from_the_hosts_fails_and_a_near_one_warns() -> None:
    """The acquirer's clock (the simulator's, moved) 1000 s behind this box: a failure that says to set the
    clock; 90 s: a warning to enable NTP. A host that gives no echo leaves the clock skipped, pointing at the
    host check."""
    import time

    from firmware_sim.host.server import OffsetScheduler

    verdicts = {}
    for offset in (1000.0, 90.0):
        with HostSimulator(SimConfig(dialect="iso87ascii"), scheduler=OffsetScheduler(time.time() - offset)) as sim:
            verdicts[offset] = by_name(run_checks(cfg_for(sim), ["clock"]))["clock"]
    far, near = verdicts[1000.0], verdicts[90.0]
    assert far.verdict == "fail" and 995 < float(far.data["drift_s"]) < 1005 and "set the clock" in far.advice, far
    assert near.verdict == "warn" and "NTP" in near.advice, near
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim:
        sim.add_fault("garbage", times=0)
        [skipped] = run_checks(cfg_for(sim), ["clock"])
    assert skipped.verdict == "skip" and "fix what the host check says" in skipped.advice


@pytest.mark.pcscd
def test_json_is_one_object_per_check_with_stable_keys_and_no_card_data() -> None:
    """--json on a box with a card, healthy and then with a card answering a corrupt record: one object per
    check asked, each with the same keys; the card's PAN appears masked only, never in full."""
    from firmware_sim.card.profiles import PROFILES

    pan = PROFILES["visa_credit_sig"]["pan"]
    for faults in ([], ["corrupt_tlv times=0"]):
        with vpcd_card("visa_credit_sig", faults=faults):
            status, checks = _diagnose_cli("--check", "pcsc", "--check", "card", "--reader", "Virtual PCD 00 00")
        assert list(checks) == ["pcsc", "card"] and status == (0 if not faults else 2), checks
        assert all(set(o) == {"check", "verdict", "figure", "next", "data"} for o in checks.values())
        assert pan not in json.dumps(checks)
        if not faults:
            assert f"{pan[:6]}******{pan[-4:]}" in str(checks["card"]["figure"])


def test_the_config_check_says_what_posguard_run_would_refuse(tmp_path: Path) -> None:
    """A technician asked why the service will not start: the config check reads the file as ``posguard run``
    does, key files included, and names every problem (here a token key file that is not there and an unknown
    key); a usable file is ok; no file: skipped, saying how to give one."""
    from posguard.config import load_config
    from tests.product.test_service import write_config

    config = tmp_path / "posguard.toml"
    config.write_text('[reader]\nkind = "none"\n[terminal]\ntoken_key_file = "/nonexistent/token.key"\n'
                      'tidd = "X"\n')
    expected = [str(p) for p in load_config(config)[1]]
    res = subprocess.run([sys.executable, "-m", "posguard.cli", "diagnose", "--json", "--check", "config",
                          "--config", str(config)], capture_output=True, text=True, cwd=ROOT, check=False)
    [obj] = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.returncode == 2 and obj["check"] == "config" and obj["verdict"] == "fail", (res.returncode, obj)
    assert obj["data"]["problems"] == expected and len(expected) >= 2
    assert any(p.startswith("terminal.tidd:") for p in expected) and "terminal.tidd" in obj["figure"]
    assert "token_key_file" in obj["figure"] and "--check-config" in obj["next"]
    [skipped] = run_checks(DiagnoseConfig(), ["config"])
    assert skipped.verdict == "skip" and "--config" in skipped.advice
    (tmp_path / "good").mkdir(mode=0o700)
    good = write_config(tmp_path / "good", 5000)
    [usable] = run_checks(DiagnoseConfig(config_path=str(good)), ["config"])
    assert usable.verdict == "ok" and usable.data["problems"] == [] and "usable by `posguard run`" in usable.figure
