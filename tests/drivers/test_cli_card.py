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
    code, _, err = run(capsys, "card", "read", "--timeout", "5", "--amount", "100")  # only --amount generates an AC
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
                         "--timeout", "5", "--amount", "100")  # --amount: the trace shows the GENERATE AC too
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
    code, _, err = run(capsys, "card", "read", "--reader", "Virtual PCD 00 00", "--timeout", "5", "--trace",
                       "--amount", "100")
    assert code == 2 and "CardDeclined" in err
    assert "trace > 80AE" in err and VISA_PAN not in err


# -- a technician's read burns nothing (issue 11) ------------------------------------------------------------
def _atc_by_get_data(reader_name: str = "Virtual PCD") -> int:
    """The card's ATC, asked directly (GET DATA 9F36) on a fresh connection: the independent witness."""
    from posguard.drivers.pcsc import PcscReader

    reader = PcscReader(reader_name)
    try:
        reader.power_on()
        r = reader.transmit(bytes.fromhex("80CA9F3600"))
        assert r.sw == 0x9000, hex(r.sw)
        return int.from_bytes(r.data[-2:], "big")
    finally:
        reader.power_off()
        reader.close()


def test_card_read_without_amount_leaves_the_atc_where_it_was(visa_card: VpcdCard,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    before = _atc_by_get_data()
    for _ in range(2):
        code, out, _ = run(capsys, "card", "read", "--reader", "Virtual PCD", "--json", "--timeout", "5")
        assert code == 0
        data = json.loads(out)
        assert data["generate_ac"] is None and data["atc"] == before
        assert data["cvm_list"]["rules"] and data["masked_pan"] == "476173******0119" and VISA_PAN not in out
    assert _atc_by_get_data() == before


def test_card_read_with_amount_runs_one_generate_ac_at_that_amount(visa_card: VpcdCard,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = _atc_by_get_data()
    code, out, _ = run(capsys, "card", "read", "--reader", "Virtual PCD", "--json", "--timeout", "5",
                       "--amount", "12345")
    assert code == 0
    gac = json.loads(out)["generate_ac"]
    assert gac["cdol1"]["9F02"] == "000000012345" and gac["amount"] == 12345
    assert gac["cryptogram_type"] == "ARQC" and gac["atc"] == before + 1
    assert gac["cvm"] == json.loads(out)["cvm_required"] and len(gac["cvm_results"]) == 6
    assert _atc_by_get_data() == before + 1


def test_card_read_decides_the_cvm_at_the_amount_given(card_factory: Callable[..., VpcdCard],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # "no CVM under 100.00 (condition 06: amount under X, in the application currency), then signature"
    card_factory("unionpay_debit_pin", cvm_list={"x": 10000, "y": 0, "rules": [["1F", "06"], ["1E", "03"]]})
    args = ("card", "read", "--reader", "Virtual PCD", "--json", "--timeout", "5", "--amount")
    small = json.loads(run(capsys, *args, "99")[1])
    large = json.loads(run(capsys, *args, "50000")[1])
    assert small["cvm_list"] == large["cvm_list"] and small["cvm_list"]["x"] == 10000
    assert small["generate_ac"]["cdol1"]["9F02"] == "000000000099" and small["cvm_required"] == "none"
    assert large["generate_ac"]["cdol1"]["9F02"] == "000000050000" and large["cvm_required"] == "signature"
    assert large["signature_required"] is True and large["generate_ac"]["cvm_results"].startswith("1E03")


def test_card_read_refuses_a_negative_amount(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "card", "read", "--amount", "-5")
    assert code == 2 and "--amount -5" in err
