"""The deployment kit and the packaging: the hardened unit (``systemd-analyze verify`` and ``security``), the
sysusers/tmpfiles files applied to an empty root, the floors file matching pyproject.toml, ``python -m
posguard``, and every command that needs the pcsc extra naming it when pyscard is missing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "posguard.service"
HINT = "pip install 'posguard[pcsc]'"
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed (Debian: systemd)")


def _floor_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_floors_file_pins_every_declared_dependency_at_its_floor() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + list(project["optional-dependencies"]["pcsc"])
    pins = _floor_pins()
    for spec in declared:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", spec)
        assert m, f"{spec!r} declares no floor"
        assert pins.get(m.group(1).lower()) == m.group(2), f"constraints/floors.txt disagrees with {spec!r}"
    assert len(pins) == len(declared)
    assert project["license"] == {"text": "Apache-2.0"} and (ROOT / "LICENSE").is_file()


def test_python_dash_m_posguard_is_the_command() -> None:
    res = subprocess.run([sys.executable, "-m", "posguard", "--help"], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert res.returncode == 0 and "keygen" in res.stdout and "run" in res.stdout


@needs_analyze
def test_unit_is_notify_and_hardened_below_3() -> None:
    text = UNIT.read_text()
    assert re.search(r"^Type=notify$", text, re.M) and re.search(r"^WatchdogSec=\d+", text, re.M)
    res = subprocess.run([str(analyze), "security", "--offline=true", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, check=False)
    m = re.search(r"Overall exposure level for posguard\.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 3.0, res.stdout
    # what the service needs stays allowed: serial readers, pcscd's and the operators' Unix sockets, TCP
    for needed in ("DeviceAllow=char-ttyUSB rw", "DeviceAllow=char-ttyS rw", "SupplementaryGroups=dialout",
                   "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "ReadWritePaths=/run/posguard"):
        assert needed in text


@needs_analyze
def test_unit_verifies_clean(tmp_path: Path) -> None:
    # the unit names /opt/posguard's venv; point it at this one so that verify also checks the executables
    posguard = Path(sys.executable).with_name("posguard")
    assert posguard.exists()
    unit = tmp_path / "posguard.service"
    unit.write_text(UNIT.read_text().replace("/opt/posguard/.venv/bin/posguard", str(posguard)))
    res = subprocess.run([str(analyze), "verify", str(unit)], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(), res.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
                    reason="systemd-sysusers/systemd-tmpfiles are not installed (Debian: systemd)")
def test_sysusers_and_tmpfiles_make_the_user_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for sub in ("usr/lib/sysusers.d", "usr/lib/tmpfiles.d", "etc"):
        (root / sub).mkdir(parents=True)
    shutil.copy(ROOT / "packaging" / "posguard.sysusers", root / "usr/lib/sysusers.d/posguard.conf")
    shutil.copy(ROOT / "packaging" / "posguard.tmpfiles", root / "usr/lib/tmpfiles.d/posguard.conf")
    for cmd in (["systemd-sysusers", f"--root={root}", "posguard.conf"],
                ["systemd-tmpfiles", f"--root={root}", "--create", "posguard.conf"]):
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        assert "ignoring" not in res.stderr.lower() and "invalid" not in res.stderr.lower(), res.stderr
    users = {f[0]: f for f in (line.split(":") for line in (root / "etc/passwd").read_text().splitlines())}
    groups = {f[0]: f for f in (line.split(":") for line in (root / "etc/group").read_text().splitlines())}
    uid, gid = int(users["posguard"][2]), int(users["posguard"][3])
    assert users["posguard"][6] == "/usr/sbin/nologin" and int(groups["posguard"][2]) == gid
    assert "posguard" in groups["dialout"][3].split(",")
    operators = int(groups["posguard-operators"][2])
    expect = {"etc/posguard": (0o750, 0, gid), "var/lib/posguard": (0o700, uid, gid),
              "run/posguard": (0o2750, uid, operators)}
    for path, (mode, owner, group) in expect.items():
        st = (root / path).stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, owner, group), path


def _without_pyscard(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where ``import smartcard`` fails, as in an install without the pcsc extra."""
    code = ("import sys; sys.modules['smartcard'] = None; sys.modules['smartcard.scard'] = None\n"
            "from posguard.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          check=False)


def test_card_read_without_pyscard_names_the_extra() -> None:
    res = _without_pyscard("card", "read", "--timeout", "1")
    assert res.returncode == 3
    assert res.stderr.strip() == f"error: MissingExtra: pyscard is not installed (PC/SC card readers): {HINT}"


def test_readers_without_pyscard_names_the_extra() -> None:
    res = _without_pyscard("readers", "--json", "--no-scan")  # JSON Lines: readers, then one line per problem
    problems = [line["problem"] for line in map(json.loads, res.stdout.splitlines()) if "problem" in line]
    assert any(HINT in p for p in problems), res.stdout


def test_demo_pcsc_without_pyscard_is_one_line_with_the_extra() -> None:
    res = _without_pyscard("demo", "--reader", "pcsc")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"posguard demo: --reader pcsc: pyscard is not installed "
                                               f"(PC/SC card readers): {HINT}"]
    assert "Traceback" not in res.stderr


def test_demo_auto_without_pyscard_says_so_and_runs_on_the_twin_reader() -> None:
    res = _without_pyscard("demo", "--reader", "auto")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (f"posguard demo: pyscard is not installed (PC/SC card readers): {HINT}; the day uses the serial Twin "
            "reader") in res.stderr
    assert "GemPC Twin on a pty" in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_the_unit_lets_a_stop_finish_the_command_in_progress() -> None:
    """A SIGTERM during a sale with the host silent finishes the sale (the default host.timeout), its reversal
    (at most 15 s) and the sign-off (at most Service.SIGN_OFF_WAIT) before it exits; TimeoutStopSec must cover
    that, or systemd SIGKILLs the service in the middle of its stop (it was 45 s: 30 + 15 + the sign-off)."""
    from posguard.config import Config
    from posguard.engine.hostlink import reversal_timeout_for
    from posguard.service.run import Service

    m = re.search(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.M)
    assert m, "the unit names no TimeoutStopSec"
    host_timeout = Config.timeout
    needed = host_timeout + reversal_timeout_for(host_timeout) + Service.SIGN_OFF_WAIT
    assert int(m.group(1)) >= needed + 5, (m.group(1), needed)
