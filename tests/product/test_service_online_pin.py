"""``posguard run`` with an encrypting PIN pad (issue 12 §3): a CUP sale on the UnionPay debit card signs on
(working keys under the TMK), loads the PIN key into the pad as it came, asks the cardholder for the PIN on the
pad (keyed on the pad simulator's control channel) and sends field 52, which the host verifies. Without
``pinpad.port`` the same card is asked for no PIN (9F33) and the sale needs a signature."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.rig.pcscd import pcsc_env
from firmware_sim.rig.sims import PinPadSim, pin_pad, vpcd_card
from tests.product.conftest import ROOT
from tests.product.stdin_service import ask
from tests.product.test_service import write_config
from tests.secret_sweep import register_secret

pytestmark = pytest.mark.pcscd

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6250947000000014"
PIN = "730164"
register_secret(TMK.hex().upper().encode(), PIN.encode())  # the TMK file itself is *.key



def _config(tmp_path: Path, port: int, pinpad: str) -> Path:
    config = write_config(tmp_path, port, tmk_file="")  # this terminal's own TMK file below
    tmk = tmp_path / "tmk.key"
    tmk.write_text(TMK.hex().upper() + "\n")
    tmk.chmod(0o600)
    text = config.read_text().replace('dialect = "iso87ascii"',
                                      f'dialect = "cup"\ntmk_file = "{tmk}"\ntimezone = "Asia/Shanghai"')
    config.write_text(text + f'\n[pinpad]\nport = "{pinpad}"\n')
    return config


def _cardholder(pad: PinPadSim) -> None:
    def run() -> None:
        deadline = time.monotonic() + 30
        while not pad.pad_status()["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        pad.key_pin(PIN)

    threading.Thread(target=run, daemon=True).start()


def _sale(config: Path) -> dict[str, object]:
    proc = subprocess.Popen([sys.executable, "-m", "posguard.cli", "run", "--config", str(config), "--stdin"],
                            cwd=ROOT, env={**pcsc_env(), **{k: v for k, v in os.environ.items() if k == "PATH"}},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        return ask(proc, "sale 8800", timeout=40)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("with_pad", [True, False], ids=["pin-pad", "no-pin-pad"])
def test_service_sale_with_and_without_the_pin_pad(tmp_path: Path, with_pad: bool) -> None:
    # the host issues fresh working keys under this terminal's TMK at its sign-on; the service loads the PIN key
    # into the pad as it came, and the host checks field 52 with the key it issued
    # the PIN CVM without field 52 is refused by the host's default (issue 12 §5), not by configuration
    sim_config = SimConfig(dialect="cup", terminal_keys={"TERM0001": TMK.hex().upper()}, card_pins={PAN: PIN})
    with HostSimulator(sim_config) as host, pin_pad(TMK) as pad, vpcd_card("unionpay_debit_pin"):
        config = _config(tmp_path, host.port, str(pad.link) if with_pad else "")
        if with_pad:
            _cardholder(pad)
        sale = _sale(config)
        assert sale["ok"], sale
        [request] = [m for m in host.received if m["t"] == "0200"]
        [charge] = host.ledger.find(kind="sale")
        assert charge.status == "approved" and charge.rc == "00"
        if with_pad:
            assert sale["state"] == "approved"  # online PIN: no signature
            assert request["52"] == "<16 chars>" and request["53"] == "2600000000000000" and request["22"] == "051"
        else:
            assert sale["state"] == "signature_pending"  # the card fell back to signature
            assert "52" not in request and request["22"] == "052"
            assert not pad.pad_status()["pending"]
