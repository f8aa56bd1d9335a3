"""``terminal.key_max_age`` (issue 12): read from the configuration, checked, and handed to the engine."""

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
