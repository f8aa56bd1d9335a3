"""Card profiles declared as data, and the card data elements derived from them.

A profile is a plain JSON-able dict: print it with ``python -m firmware_sim.card show NAME``.
Only test PANs (public test BINs) appear here.

``master_key`` is the card's ICC master key as personalisation wrote it: derived with EMV Option A
(EMV Book 2 A1.4.1; PAN and PAN sequence number ``01``) from the test issuer master key of the scheme in
the issuer's card file ``firmware_sim/host/cardfile.json`` (the issuer derives it again; a test checks
both agree). ``issuer_auth_failure`` / ``issuer_auth_missing`` are the card's rule at the second GENERATE
AC when the ARPC fails / was never presented (see :mod:`firmware_sim.card.applet`). ``get_profile(name, **overrides)`` returns a
validated deep copy, so a test can ask for ``get_profile("visa_credit_sig", second_gac="decline")``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from firmware_sim.card import tlv

Profile = dict[str, Any]

_COMMON: Profile = {
    "protocol": "T=0",
    "t0_get_response": True,
    "language": "en",
    "pan_sequence": "01",
    "effective": "220101",
    "expiry": "281231",
    "service_code": "201",
    "track_discretionary": "1000000000000",
    "pin": "1234",
    "pin_tries": 3,
    "atc": 16,
    "first_gac": "arqc",
    "second_gac": "approve",
    # what the card does at the second GENERATE AC when the issuer's ARPC does not verify / is absent
    "issuer_auth_failure": "decline",
    "issuer_auth_missing": "approve",
    "auc": "FF00",
    "iac_default": "0000000000",
    "iac_denial": "0000000000",
    "iac_online": "0000000000",
    "log_format": "9F27019F02065F2A029A039F3602",
    "cdol2": [["8A", 2], ["9F02", 6], ["9F03", 6], ["9F1A", 2], ["95", 5], ["5F2A", 2],
              ["9A", 3], ["9C", 1], ["9F37", 4]],
    "records": [
        {"sfi": 1, "record": 1, "tags": ["57", "5F20", "9F1F"]},
        {"sfi": 2, "record": 1, "tags": ["5A", "5F24", "5F25", "5F34", "5F28", "9F07", "9F08", "9F42",
                                         "9F0D", "9F0E", "9F0F"]},
        {"sfi": 2, "record": 2, "tags": ["8C", "8D", "8E"]},
    ],
}

PROFILES: dict[str, Profile] = {
    "visa_credit_sig": {
        **_COMMON,
        "description": "Visa credit; CVM list: signature (always), then no CVM if unsupported",
        "scheme": "visa",
        "historical": "504F534755415244",  # "POSGUARD"
        "pan": "4761739001010119",
        "cardholder_name": "VISA TEST/CARDHOLDER",
        "issuer_country": "0840",
        "currency": "0840",
        "app_version": "0096",
        "aip": "1C00",
        "master_key": "80A89B585BBF64C2F12915BF578FABE0",
        "applications": [{"aid": "A0000000031010", "label": "VISA CREDIT", "priority": 1}],
        "pdol": [["9F02", 6], ["9F1A", 2], ["5F2A", 2], ["9F37", 4]],
        "cdol1": [["9F02", 6], ["9F03", 6], ["9F1A", 2], ["95", 5], ["5F2A", 2], ["9A", 3],
                  ["9C", 1], ["9F37", 4]],
        "cvm_list": {"x": 0, "y": 0, "rules": [["1E", "00"], ["1F", "03"]]},
        "iad_prefix": "06010A03",
    },
    "unionpay_debit_pin": {
        **_COMMON,
        "description": "UnionPay debit (two AIDs in the PSE); CVM list: online PIN first",
        "scheme": "unionpay",
        "historical": "504F534755415244",
        "pan": "6250947000000014",
        "cardholder_name": "UNIONPAY TEST/CARD",
        "issuer_country": "0156",
        "currency": "0156",
        "app_version": "0030",
        "aip": "1C00",
        "master_key": "E3B60B9867CE9DB957839DE640451034",
        "applications": [
            {"aid": "A000000333010101", "label": "UnionPay Debit", "priority": 1},
            {"aid": "A000000333010102", "label": "UnionPay Credit", "priority": 2},
        ],
        "pdol": [["9F7A", 1], ["9F02", 6], ["5F2A", 2]],
        "cdol1": [["9F02", 6], ["9F03", 6], ["9F1A", 2], ["95", 5], ["5F2A", 2], ["9A", 3],
                  ["9C", 1], ["9F37", 4], ["9F21", 3], ["9F4E", 20]],
        "cvm_list": {"x": 0, "y": 0, "rules": [["42", "03"], ["1E", "03"], ["1F", "03"]]},
        "iad_prefix": "07010103",
        # PBOC style: the issuer authentication data (91: ARPC || ARC) travels inside the CDOL2 data
        "cdol2": [["91", 10], *_COMMON["cdol2"]],
    },
    "mastercard_nocvm": {
        **_COMMON,
        "description": "Mastercard; CVM list: no CVM required (always); T=1-style direct responses",
        "scheme": "mastercard",
        "protocol": "T=1",
        "t0_get_response": False,
        "historical": "504F534755415244",
        "pan": "5413330089010434",
        "cardholder_name": "MASTERCARD TEST/CARD",
        "issuer_country": "0826",
        "currency": "0826",
        "app_version": "0002",
        "aip": "1800",
        "master_key": "FE4961328F8C38A4D089089E04574C3E",
        "applications": [{"aid": "A0000000041010", "label": "MASTERCARD", "priority": 1}],
        "pdol": [["9F35", 1], ["9F1A", 2]],
        "cdol1": [["9F02", 6], ["9F03", 6], ["9F1A", 2], ["95", 5], ["5F2A", 2], ["9A", 3],
                  ["9C", 1], ["9F37", 4], ["9F35", 1], ["9F45", 2], ["9F4C", 8], ["9F34", 3]],
        "cvm_list": {"x": 0, "y": 0, "rules": [["1F", "00"]]},
        "iad_prefix": "0110A000",
    },
}

PSE_NAME = b"1PAY.SYS.DDF01"
PSE_SFI = 1


class ProfileError(ValueError):
    """A profile is unknown or inconsistent."""


def luhn_ok(pan: str) -> bool:
    """True when the digits pass the Luhn check."""
    if not pan.isdigit() or len(pan) < 12:
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def profile_names() -> list[str]:
    return sorted(PROFILES)


def get_profile(name_or_path: str, **overrides: Any) -> Profile:
    """A validated copy of a built-in profile (or of a JSON file), with ``overrides`` applied."""
    if name_or_path in PROFILES:
        profile = copy.deepcopy(PROFILES[name_or_path])
        profile["name"] = name_or_path
    elif name_or_path.endswith(".json") and Path(name_or_path).is_file():
        profile = json.loads(Path(name_or_path).read_text())
        profile.setdefault("name", Path(name_or_path).stem)
    else:
        raise ProfileError(f"unknown card profile {name_or_path!r}; known: {', '.join(profile_names())}")
    unknown = set(overrides) - set(profile)
    if unknown:
        raise ProfileError(f"profile {profile['name']} has no field(s) {sorted(unknown)}")
    for key, value in overrides.items():
        profile[key] = _coerce(profile[key], value) if isinstance(value, str) else copy.deepcopy(value)
    validate(profile)
    return profile


def _coerce(current: Any, text: str) -> Any:
    """Text from a command line, as the type of the field it replaces."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ProfileError(f"expected true/false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if isinstance(current, int):
        return int(text, 0)
    if isinstance(current, (list, dict)):
        return json.loads(text)
    return text


def validate(profile: Profile) -> None:
    name = profile.get("name", "?")
    if not luhn_ok(profile["pan"]):
        raise ProfileError(f"profile {name}: PAN fails the Luhn check")
    if profile["protocol"] not in ("T=0", "T=1"):
        raise ProfileError(f"profile {name}: protocol must be T=0 or T=1")
    if profile["first_gac"] not in ("arqc", "aac") or profile["second_gac"] not in ("approve", "decline"):
        raise ProfileError(f"profile {name}: first_gac is arqc|aac, second_gac is approve|decline")
    for rule in ("issuer_auth_failure", "issuer_auth_missing"):
        if profile[rule] not in ("approve", "decline"):
            raise ProfileError(f"profile {name}: {rule} is approve|decline")
    if len(bytes.fromhex(profile["master_key"])) != 16:
        raise ProfileError(f"profile {name}: master_key must be 16 bytes of hex")
    if not profile["applications"]:
        raise ProfileError(f"profile {name}: no application")


def build_atr(protocol: str, historical: bytes) -> bytes:
    """An EMV-style ATR: TB1=00, TC1=00; for T=1 also TD1/TD2 with IFSC 254 and BWI/CWI, plus TCK."""
    if len(historical) > 15:
        raise ProfileError("at most 15 historical bytes")
    if protocol == "T=0":
        return bytes([0x3B, 0x60 | len(historical), 0x00, 0x00]) + historical
    body = bytes([0xE0 | len(historical), 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


def atr(profile: Profile) -> bytes:
    return build_atr(profile["protocol"], bytes.fromhex(profile["historical"]))


def dol_bytes(entries: list[list[Any]]) -> bytes:
    return b"".join(bytes.fromhex(tag) + bytes([length]) for tag, length in entries)


def track2_digits(profile: Profile) -> str:
    """Track 2 content as digits with 'D' separator (no sentinels): PAN D YYMM SVC discretionary."""
    return f"{profile['pan']}D{profile['expiry'][:4]}{profile['service_code']}{profile['track_discretionary']}"


def cvm_list_bytes(profile: Profile) -> bytes:
    cvm = profile["cvm_list"]
    rules = b"".join(bytes.fromhex(code + cond) for code, cond in cvm["rules"])
    return int(cvm["x"]).to_bytes(4, "big") + int(cvm["y"]).to_bytes(4, "big") + rules


def afl(profile: Profile) -> bytes:
    """Application File Locator: one 4-byte entry per SFI (first record, last record, 0 for ODA)."""
    by_sfi: dict[int, list[int]] = {}
    for rec in profile["records"]:
        by_sfi.setdefault(rec["sfi"], []).append(rec["record"])
    return b"".join(bytes([sfi << 3, min(r), max(r), 0]) for sfi, r in sorted(by_sfi.items()))


def data_elements(profile: Profile) -> dict[str, bytes]:
    """Every card data element the records can carry, keyed by tag."""
    t2 = track2_digits(profile)
    if len(t2) % 2:
        t2 += "F"
    pan = profile["pan"] + ("F" if len(profile["pan"]) % 2 else "")
    return {
        "57": bytes.fromhex(t2),
        "5A": bytes.fromhex(pan),
        "5F20": profile["cardholder_name"].encode("ascii"),
        "9F1F": profile["track_discretionary"].encode("ascii"),
        "5F24": bytes.fromhex(profile["expiry"]),
        "5F25": bytes.fromhex(profile["effective"]),
        "5F34": bytes.fromhex(profile["pan_sequence"]),
        "5F28": bytes.fromhex(profile["issuer_country"]),
        "9F07": bytes.fromhex(profile["auc"]),
        "9F08": bytes.fromhex(profile["app_version"]),
        "9F42": bytes.fromhex(profile["currency"]),
        "9F0D": bytes.fromhex(profile["iac_default"]),
        "9F0E": bytes.fromhex(profile["iac_denial"]),
        "9F0F": bytes.fromhex(profile["iac_online"]),
        "8C": dol_bytes(profile["cdol1"]),
        "8D": dol_bytes(profile["cdol2"]),
        "8E": cvm_list_bytes(profile),
    }


def record_bytes(profile: Profile, sfi: int, number: int) -> bytes | None:
    """Record ``number`` of ``sfi`` as a 70 template, or None when the record does not exist."""
    elements = data_elements(profile)
    for rec in profile["records"]:
        if rec["sfi"] == sfi and rec["record"] == number:
            return tlv.tlv("70", tlv.build((tag, elements[tag]) for tag in rec["tags"]))
    return None


def describe(profile: Profile) -> str:
    """The profile as indented JSON, with ATR and AFL added for the reader's convenience."""
    shown = dict(profile)
    shown["_atr"] = atr(profile).hex().upper()
    shown["_afl"] = afl(profile).hex().upper()
    return json.dumps(shown, indent=2)
