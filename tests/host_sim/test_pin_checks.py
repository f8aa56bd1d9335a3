"""The host simulator's PIN and local-date checks (firmware_sim.host.pin) on decoded requests: each refusal, its
response code and reason; the try counter; the year wrap of the date check. End to end on the wire with the
real PIN pad: tests/integration/test_online_pin.py."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_sim.host.pin import PinChecker, card_pin_table, check_local_date, terminal_zone
from tests.secret_sweep import register_secret

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import psec.des
    import psec.pinblock

KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
PAN = "6250947000000014"
PIN = "246813"
register_secret(KEY, PIN.encode())


def _block(pin: str, key: bytes = KEY, pan: str = PAN) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(psec.des.encrypt_tdes_ecb(key, psec.pinblock.encode_pinblock_iso_0(pin, pan))).hex().upper()


def _checker(dialect: str = "cup", *, key: bytes | None = KEY, tries: int = 3, require: bool = True) -> PinChecker:
    return PinChecker(dialect, lambda _tid: key, card_pin_table({PAN: PIN}), tries_allowed=tries, require_pin_block=require)


def _sale(**fields: str) -> dict[str, str]:
    return {"t": "0200", "2": PAN, "3": "000000", "4": "000000001000", "22": "052", **fields}


def test_the_right_pin_passes_and_resets_the_counter() -> None:
    c = _checker()
    assert c.check(_sale(**{"52": _block("999999")}), PAN).rc == "55"  # type: ignore[union-attr]
    assert c.check(_sale(**{"52": _block(PIN)}), PAN) is None
    assert c.tries == {}
    assert c.check(_sale(**{"52": _block("999999")}), PAN).reason == "wrong PIN, try 1 of 3"  # type: ignore[union-attr]


def test_the_last_wrong_try_is_75_and_the_card_stays_blocked() -> None:
    c = _checker(tries=2)
    assert [c.check(_sale(**{"52": _block(p)}), PAN).rc for p in ("111111", "222222")] == ["55", "75"]  # type: ignore[union-attr]
    refusal = c.check(_sale(**{"52": _block(PIN)}), PAN)
    assert refusal is not None and refusal.rc == "75" and "exhausted" in refusal.reason


@pytest.mark.parametrize(("dialect", "rc"), [("cup", "99"), ("iso87", "81")])
def test_a_block_under_another_key_or_no_key_is_a_pin_format_error(dialect: str, rc: str) -> None:
    other = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    refusal = _checker(dialect).check(_sale(**{"52": _block(PIN, other)}), PAN)
    assert refusal is not None and refusal.rc == rc and "format-0" in refusal.reason
    refusal = _checker(dialect, key=None).check(_sale(**{"52": _block(PIN)}), PAN)
    assert refusal is not None and refusal.rc == rc and "sign on" in refusal.reason
    for r in (refusal.reason, repr(refusal)):
        assert PIN not in r and KEY.hex() not in r.lower()


def test_a_pin_cvm_without_a_block_is_refused_only_when_required() -> None:
    cup_pin_digit = _sale(**{"22": "051"})
    online_pin_9f34 = _sale(**{"55": "9F3403420300"})
    for req in (cup_pin_digit, online_pin_9f34):
        refusal = _checker().check(req, PAN)
        assert refusal is not None and refusal.rc == "55" and "field 52 is absent" in refusal.reason
        assert _checker(require=False).check(req, PAN) is None
    assert _checker().check(_sale(**{"55": "9F34031E0300"}), PAN) is None  # signature: no PIN expected
    assert _checker("iso87").check(_sale(**{"22": "051"}), PAN) is None  # ISO 22.3 is a capability


SHANGHAI = ZoneInfo("Asia/Shanghai")


def _at(local: datetime) -> dict[str, str]:
    return {"t": "0200", "12": local.strftime("%H%M%S"), "13": local.strftime("%m%d")}


@pytest.mark.parametrize(("delta", "refused"), [(timedelta(hours=23, minutes=59), False),
                                                (timedelta(hours=-23), False),
                                                (timedelta(days=1, minutes=1), True),
                                                (timedelta(days=-3), True)])
def test_the_local_date_window_across_new_year(delta: timedelta, refused: bool) -> None:
    host_now = datetime(2026, 12, 31, 23, 30, tzinfo=SHANGHAI)  # the terminal may already be in 2027
    refusal = check_local_date(_at(host_now + delta), now=host_now.timestamp(), zone=SHANGHAI, dialect="cup")
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.rc == "05" and "more than a day" in refusal.reason


def test_a_date_that_is_no_date_is_refused() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
    refusal = check_local_date({"12": "250000", "13": "1341"}, now=now, zone=SHANGHAI, dialect="iso87")
    assert refusal is not None and refusal.rc == "30" and "not a date" in refusal.reason


def test_the_terminal_zone_defaults() -> None:
    assert str(terminal_zone("cup")) == "Asia/Shanghai" and terminal_zone("iso87") == UTC
    assert str(terminal_zone("iso87", "Europe/Paris")) == "Europe/Paris"


@pytest.mark.parametrize("stray", ["26", "53"])
def test_pin_fields_without_the_block_are_a_format_error(stray: str) -> None:
    from firmware_sim.host.pin import check_pin_fields

    refusal = check_pin_fields(_sale(**{stray: "12" if stray == "26" else "2600000000000000"}))
    assert refusal is not None and refusal.rc == "30" and f"field(s) {stray} without a PIN block" in refusal.reason
    assert check_pin_fields(_sale(**{stray: "12", "52": _block(PIN)})) is None
    assert check_pin_fields(_sale()) is None
