"""``card read`` and ``readers``: in process through main(), and once as ``python -m posguard.cli.card``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from firmware_sim.rig.pcscd import pcsc_env
from firmware_sim.rig.sims import ROOT, VpcdCard
from posguard.cli.card import main
from tests.drivers.twin_sim import TOKEN_KEY, TwinSim

pytestmark = pytest.mark.pcscd
VISA_PAN = "4761739001010119"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_card_read_pcsc_json_is_masked(visa_card: VpcdCard, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSGUARD_PAN_TOKEN_KEY", TOKEN_KEY.hex())
    code, out, _ = run(capsys, "card", "read", "--reader", "Virtual PCD", "--json", "--timeout", "5")
    assert code == 0
    data = json.loads(out)
    assert data["masked_pan"] == "476173******0119" and data["cvm_required"] == "signature"
    assert data["cvm_results"] == "1E0000" and data["signature_required"] is True
    assert data["pan_token_stable"] is True and data["scheme"] == "visa"
    assert VISA_PAN not in out


def test_card_read_serial_text(twin_sim: Callable[..., TwinSim], capsys: pytest.CaptureFixture[str]) -> None:
    sim = twin_sim("mastercard_nocvm")
    code, out, err = run(capsys, "card", "read", "--serial", str(sim.link), "--timeout", "2")
    assert code == 0
    assert "541333******0434" in out and "cvm_required" in out and "5413330089010434" not in out + err


def test_card_read_without_card_is_a_reader_error(card_factory: Callable[..., VpcdCard],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    card_factory("visa_credit_sig", inserted=False)
    code, out, _ = run(capsys, "card", "read", "--reader", "Virtual PCD 00 00", "--json", "--timeout", "0.3")
    assert code == 3
    assert json.loads(out)["error"] == "NoCard"


def test_card_read_card_error_exit_code(card_factory: Callable[..., VpcdCard],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    card_factory("visa_credit_sig", first_gac="aac")
    code, _, err = run(capsys, "card", "read", "--timeout", "5")
    assert code == 2 and "CardDeclined" in err


def test_readers_lists_pcsc_and_twin(visa_card: VpcdCard, twin_sim: Callable[..., TwinSim],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    sim = twin_sim("unionpay_debit_pin")
    code, out, _ = run(capsys, "readers", "--json", "--no-scan", "--serial", str(sim.link))
    assert code == 0
    lines: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines()]  # JSON Lines
    readers = [r for r in lines if "problem" not in r]
    by_name = {r["name"]: r for r in readers}
    assert by_name["Virtual PCD 00 00"]["card_present"] is True
    assert by_name["Virtual PCD 00 00"]["atr"] == visa_card.atr.hex().upper()
    twin = [r for r in readers if r["transport"] == "twin-serial"]
    assert len(twin) == 1 and twin[0]["card_present"] and twin[0]["atr"].startswith("3B")


def test_standalone_module(visa_card: VpcdCard) -> None:
    proc = subprocess.run([sys.executable, "-m", "posguard.cli.card", "readers", "--no-scan"], cwd=ROOT,
                          env=pcsc_env(), capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Virtual PCD 00 00: card present, ATR " + visa_card.atr.hex().upper() in proc.stdout


def test_card_read_trace_is_masked_like_a_capture(visa_card: VpcdCard, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "card", "read", "--reader", "Virtual PCD 00 00", "--json", "--trace",
                         "--timeout", "5")
    assert code == 0 and json.loads(out)["masked_pan"] == "476173******0119"
    trace = [line for line in err.splitlines() if line.startswith("trace ")]
    assert trace[0].startswith("trace atr 3B") and trace[1].startswith("trace > 00A40400")
    assert sum(line.startswith("trace < ") for line in trace) > 5
    assert any(line.startswith("trace > 80AE") for line in trace)  # GENERATE AC
    assert VISA_PAN not in out + err and VISA_PAN.encode().hex() not in err.lower()


def test_card_read_waiting_shows_progress(card_factory: Callable[..., VpcdCard],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    card_factory("visa_credit_sig", inserted=False)
    code, _, err = run(capsys, "card", "read", "--reader", "Virtual PCD 00 00", "--timeout", "1.5", "--trace")
    assert code == 3 and "NoCard" in err
    assert "waiting for a card: 1 s of 1.5" in err


def test_a_failed_card_read_still_prints_its_trace(card_factory: Callable[..., VpcdCard],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    card_factory("visa_credit_sig", first_gac="aac")
    code, _, err = run(capsys, "card", "read", "--reader", "Virtual PCD 00 00", "--timeout", "5", "--trace")
    assert code == 2 and "CardDeclined" in err
    assert "trace > 80AE" in err and VISA_PAN not in err
