"""``posguard keygen``: 0600 key files in the documented format that the service's config accepts, the TMK with
odd parity and its KCV printed (never the key), refusals (existing files, a world-writable directory)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from posguard.cli.keygen import kcv, make_tmk, odd_parity
from posguard.config import ConfigProblem, _read_key
from tests.product.conftest import ROOT


def _keygen(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posguard", "keygen", *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)


def _keydir(tmp_path: Path) -> Path:
    d = tmp_path / "etc-posguard"
    d.mkdir(mode=0o750)
    return d


def test_keygen_writes_the_documented_formats(tmp_path: Path) -> None:
    d = _keydir(tmp_path)
    old = os.umask(0o000)  # even under a careless umask the files are 0600
    try:
        res = _keygen(str(d))
    finally:
        os.umask(old)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in d.iterdir()) == ["data.key", "tmk.key", "token.key"]  # no temporary left
    for p in d.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for name in ("token.key", "data.key"):
        text = (d / name).read_text()
        assert len(text) == 65 and text.endswith("\n") and bytes.fromhex(text[:64])
        problems: list[ConfigProblem] = []
        assert len(_read_key(str(d / name), "k", problems)) == 32 and not problems
    tmk_text = (d / "tmk.key").read_text()
    assert len(tmk_text) == 33 and tmk_text.endswith("\n")
    tmk = bytes.fromhex(tmk_text[:32])
    assert odd_parity(tmk) == tmk and tmk[:8] != tmk[8:]
    assert f"KCV {kcv(tmk)}" in res.stdout
    out = res.stdout + res.stderr
    for secret in (tmk_text[:32], (d / "token.key").read_text()[:64], (d / "data.key").read_text()[:64]):
        assert secret.lower() not in out.lower()


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    d = _keydir(tmp_path)
    assert _keygen(str(d), "--only", "token").returncode == 0
    before = (d / "token.key").read_text()
    res = _keygen(str(d))
    assert res.returncode == 2 and "token.key" in res.stderr and "--force" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (d / "data.key").exists(), "nothing is written when one file is refused"
    assert (d / "token.key").read_text() == before
    assert _keygen(str(d), "--force").returncode == 0
    assert (d / "token.key").read_text() != before and (d / "tmk.key").exists()


def test_keygen_refuses_a_directory_everyone_may_write(tmp_path: Path) -> None:
    d = _keydir(tmp_path)
    d.chmod(0o777)
    res = _keygen(str(d))
    assert res.returncode == 2 and "writable by every user" in res.stderr and "chmod o-w" in res.stderr
    assert list(d.iterdir()) == []
    res = _keygen(str(tmp_path / "missing"))
    assert res.returncode == 2 and "cannot be used" in res.stderr
    d.chmod(0o750)
    res = _keygen(str(d), "--owner", "no-such-user-posguard")
    assert res.returncode == 2 and "no such user" in res.stderr


def test_odd_parity_and_kcv_known_values() -> None:
    assert odd_parity(bytes([0x00, 0x01, 0x02, 0xFF, 0xFE])) == bytes([0x01, 0x01, 0x02, 0xFE, 0xFE])
    assert kcv(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")) == "08D7B4"
    assert all(odd_parity(k) == k for k in (make_tmk() for _ in range(20)))
