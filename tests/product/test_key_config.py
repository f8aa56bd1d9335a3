"""Key settings of the configuration (issue 12): ``terminal.key_max_age``, ``host.mac_key_file`` and
``host.mac_algorithm``, read and checked."""

from __future__ import annotations

from pathlib import Path

from posguard.config import load_config
from tests.product.test_service import write_config


def test_key_max_age_is_read_and_checked(tmp_path: Path) -> None:
    path = write_config(tmp_path, 5000)
    cfg, problems = load_config(path)
    assert problems == [] and cfg.key_max_age == 86400.0 and cfg.tmk_file
    path.write_text(path.read_text().replace('currency = "156"', 'currency = "156"\nkey_max_age = 3600'))
    cfg, problems = load_config(path)
    assert problems == [] and cfg.key_max_age == 3600.0
    path.write_text(path.read_text().replace("key_max_age = 3600", "key_max_age = 0"))
    _cfg, problems = load_config(path)
    assert [p.key for p in problems] == ["terminal.key_max_age"] and "positive" in problems[0].message


def test_a_static_mac_key_is_checked_and_used_by_the_link(tmp_path: Path) -> None:
    from posguard.service.run import _static_mac

    path = write_config(tmp_path, 5000)
    key = tmp_path / "mac.key"
    key.write_text("89ABCDEF0123456776543210FEDCBA98\n")
    key.chmod(0o644)
    text = path.read_text().replace("timeout = 5", f'timeout = 5\nmac_key_file = "{key}"\nmac_algorithm = "x9"')
    path.write_text(text)
    _cfg, problems = load_config(path)
    assert {p.key for p in problems} == {"host.mac_algorithm", "host.mac_key_file"}
    assert "readable by others" in next(p.message for p in problems if p.key == "host.mac_key_file")
    key.chmod(0o600)
    path.write_text(text.replace('mac_algorithm = "x9"', 'mac_algorithm = "cbc"'))
    cfg, problems = load_config(path)
    assert problems == []
    settings = _static_mac(cfg)
    assert settings["mac_key_source"] == "static" and settings["mac"].algorithm == "cbc"
    assert "89ABCDEF" not in repr(settings).upper()
    path.write_text(text.replace('mac_algorithm = "x9"', 'mac_algorithm = ""'))
    cfg, _ = load_config(path)
    assert _static_mac(cfg)["mac"].algorithm == "x919"  # the iso87ascii dialect's
