"""Issue 10, "config checks that mean it": every path is checked for what the service will do with it, a
world-writable directory is refused, a config that is not UTF-8 is a one-line problem, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

from posguard.config import load_config
from tests.product.test_service import write_config


def _keys(problems: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {p.key: p.message for p in problems}


def test_a_good_config_has_no_problem(tmp_path: Path) -> None:
    cfg, problems = load_config(write_config(tmp_path, 5000))
    assert problems == [] and cfg.max_amount == 10_000_000 and cfg.allow_uids == []


def test_world_writable_directories_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000)
    os.chmod(tmp_path, 0o777)  # config, keys and journal all live here
    try:
        problems = _keys(load_config(path)[1])
    finally:
        os.chmod(tmp_path, 0o700)
    for key in ("config", "journal.path", "terminal.token_key_file", "terminal.data_key_file"):
        assert "writable by every user" in problems[key] and "chmod o-w" in problems[key]


def test_socket_directory_the_service_cannot_create(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000)
    text = path.read_text().replace('socket = "stdin"', 'socket = "/proc/no/such/dir/operator.sock"')
    path.write_text(text)
    problems = _keys(load_config(path)[1])
    assert "operator.socket" in problems and "cannot be used" in problems["operator.socket"]


def test_not_utf8_is_one_problem_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[terminal]\ntid = "CAFÉ0001"\n'.encode("latin-1"))
    (problem,) = load_config(path)[1]
    assert problem.key == "config" and "not UTF-8" in problem.message and "0xC9" in problem.message


def test_amount_ceiling_uids_and_groups_are_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000)
    text = path.read_text().replace('currency = "156"', 'currency = "156"\nmax_amount = 0')
    text = text.replace('socket = "stdin"', 'socket = "stdin"\nallow_uids = [-1]\nallow_groups = ["no-such-group-x"]')
    path.write_text(text)
    problems = _keys(load_config(path)[1])
    assert "between 1 and" in problems["terminal.max_amount"]
    assert "numeric user ids" in problems["operator.allow_uids"]
    assert "no-such-group-x" in problems["operator.allow_groups"]


def test_the_terminal_master_key_file_is_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000, tmk_file="")
    tmk = tmp_path / "tmk.key"
    tmk.write_text("0123456789ABCDEFFEDCBA9876543210\n")
    os.chmod(tmk, 0o644)
    path.write_text(path.read_text().replace('currency = "156"', f'currency = "156"\ntmk_file = "{tmk}"'))
    assert "readable by others" in _keys(load_config(path)[1])["terminal.tmk_file"]
    os.chmod(tmk, 0o600)
    cfg, problems = load_config(path)
    assert problems == [] and cfg.tmk_file == str(tmk)


def test_terminal_timezone_is_an_iana_name(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000)
    good = path.read_text().replace('currency = "156"', 'currency = "156"\ntimezone = "Asia/Shanghai"')
    path.write_text(good)
    cfg, problems = load_config(path)
    assert problems == [] and cfg.timezone == "Asia/Shanghai"
    path.write_text(good.replace("Asia/Shanghai", "Asia/Atlantis"))
    problems_by_key = _keys(load_config(path)[1])
    assert "'Asia/Atlantis' is not an IANA time zone name" in problems_by_key["terminal.timezone"]
