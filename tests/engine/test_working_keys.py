"""Issue 12 (part): the terminal master key file, and the working keys of a CUP sign-on verified against their
check values before the terminal is signed on; kept sealed in the journal, never in clear."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TerminalConfig, TransactionEngine
from posguard.engine.errors import SignOnFailed
from posguard.engine.journal import Journal
from posguard.engine.keys import KeyCheckMismatch, KeyFileError, kcv4, load_tmk, parse_cup_keys
from tests.engine.conftest import card
from tests.host_sim.harness import linked

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PIN_KEY = bytes.fromhex("2315208C9110AD402315208C9110AD40")
MAC_KEY = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")


def _ecb(key: bytes, data: bytes) -> bytes:  # independent of posguard's own TDES
    enc = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def field62(pin: bytes = PIN_KEY, mac: bytes = MAC_KEY, *, spoil: str = "") -> bytes:
    def part(key: bytes, name: str) -> bytes:
        check = _ecb(key, bytes(8))[:4]
        return _ecb(TMK, key) + (bytes(4) if spoil == name else check)
    return part(pin, "pin") + part(mac, "mac")


def tmk_file(tmp_path: Path, text: str = TMK.hex().upper() + "\n", mode: int = 0o600) -> Path:
    p = tmp_path / "tmk.key"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_check_value_known_answer() -> None:
    assert kcv4(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")).hex().upper() == "08D7B4FB"


def test_the_tmk_file(tmp_path: Path) -> None:
    tmk = load_tmk(tmk_file(tmp_path))
    assert repr(tmk) == "TerminalMasterKey(len=16, kcv=08D7B4)" and TMK.hex() not in repr(tmk).lower()
    with pytest.raises(KeyFileError, match="readable by others"):
        load_tmk(tmk_file(tmp_path, mode=0o644))
    with pytest.raises(KeyFileError, match="32 hex digits"):
        load_tmk(tmk_file(tmp_path, "0123"))
    with pytest.raises(KeyFileError, match="posguard keygen"):
        load_tmk(tmp_path / "none.key")


def test_field_62_is_verified_key_by_key(tmp_path: Path) -> None:
    tmk = load_tmk(tmk_file(tmp_path))
    keys = parse_cup_keys(field62(), tmk)
    assert keys.mac.reveal() == MAC_KEY and keys.pin_under_tmk == _ecb(TMK, PIN_KEY)
    assert PIN_KEY.hex() not in repr(keys).lower() and MAC_KEY.hex() not in repr(keys).lower()
    for name in ("pin", "mac"):
        with pytest.raises(KeyCheckMismatch) as err:
            parse_cup_keys(field62(spoil=name), tmk)
        assert err.value.which == name.upper()


def test_cup_003_carries_a_single_length_mac_key_as_openpos_and_cash2one_read_it(tmp_path: Path) -> None:
    """60.3 = 003: PIN key (16) ‖ KCV ‖ MAC key (8) ‖ 8 zero bytes ‖ KCV of single DES (openpos util.c
    UTIL_Double_StoreNewKey; cash2one unionpaypos.cpp CheckKey reads the MAC at byte 20, its KCV at 36)."""
    tmk = load_tmk(tmk_file(tmp_path))
    mac8 = MAC_KEY[:8]
    single_des_kcv = Cipher(TripleDES(mac8 * 3), modes.ECB()).encryptor().update(bytes(8))[:4]
    block = field62()[:20] + _ecb(TMK, mac8) + bytes(8) + single_des_kcv
    assert len(block) == 40
    keys = parse_cup_keys(block, tmk)
    assert keys.mac.reveal() == mac8 and keys.pin_under_tmk == _ecb(TMK, PIN_KEY)
    with pytest.raises(KeyCheckMismatch) as err:
        parse_cup_keys(block[:36] + bytes(4), tmk)
    assert err.value.which == "MAC"


def _engine(tmp_path: Path, clock: VirtualClock, link: object) -> TransactionEngine:
    terminal = TerminalConfig("TERM0001", "123456789012345", b"T" * 32, bytes(range(32)),
                              tmk=load_tmk(tmk_file(tmp_path)))
    return TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, "cup", terminal,  # type: ignore[arg-type]
                             clock, Detectors.default(clock))


def test_a_sign_on_with_good_keys(tmp_path: Path) -> None:
    with linked(sim_config={"working_keys_62": field62().hex()}) as (_sim, link, clock, _events):
        engine = _engine(tmp_path, clock, link)
        engine.sign_on(reason="start")
        assert engine.working_keys is not None and engine.working_keys.mac.reveal() == MAC_KEY
        [ev] = [r for r in engine.journal.query("SELECT detail FROM events WHERE kind = 'working_keys'")]
        assert '"mac_kcv"' in ev["detail"] and '"sealed"' in ev["detail"]
        engine.journal.close()
    written = b"".join(f.read_bytes() for f in tmp_path.glob("journal.db*"))
    for key in (PIN_KEY, MAC_KEY):
        assert key not in written and key.hex().encode() not in written.lower()
        assert key.hex().upper().encode() not in written


def test_a_sign_on_whose_keys_do_not_check_leaves_the_terminal_not_signed_on(tmp_path: Path) -> None:
    with linked(sim_config={"working_keys_62": field62(spoil="mac").hex()}) as (sim, link, clock, _events):
        engine = _engine(tmp_path, clock, link)
        with pytest.raises(SignOnFailed, match="MAC key .* check value"):
            engine.sign_on(reason="start")
        assert engine.working_keys is None and engine.journal.sign_on_required()
        assert engine.journal.incidents("key_check_failed")
        with pytest.raises(SignOnFailed):  # no transaction until a good sign-on
            engine.sale(card(), 1000)
        assert [r.get("t") for r in sim.received if r.get("t") == "0200"] == []
        engine.journal.close()
