"""The acquirer checks online PINs and the terminal's local date, as a real host does.

**PIN** (ISO 9564-1, ``../shared/reference/emv-keys.md`` §C): field 52 is decrypted with the host's working PIN
key (TDES ECB, ``psec``) — the key the host issued at sign-on (``processor.working_keys(tid).pin_key`` once the host
generates them) or, until then, the configured test key — and the format-0 block is decoded against the PAN.
The PIN is compared with the card's PIN (:func:`card_pin`; today a table by PAN in the simulator's config, kept
behind that one function so the issuer's card file can answer instead). A try counter per card:

===============================================  =====  ==========================================================
what                                             RC     source
===============================================  =====  ==========================================================
wrong PIN                                        55     ISO 8583:1987 field 39 "incorrect PIN"
wrong PIN, tries exhausted / card PIN-blocked    75     ISO 8583:1987 "allowable number of PIN tries exceeded"
52 not a format-0 block under the key            99/81  CUP response code table "PIN format error" (99);
                                                        Visa BASE I "PIN cryptographic error" (81) for ISO
PIN CVM but no PIN block (22.3 = 1, 9F34 = 02)   55     the PIN the CVM promised is absent: treated as incorrect
no PIN key to verify with                        99/81  as a block that cannot be decrypted
53 or 26 without a PIN block (any request)       30     ISO 8583:1987 "format error": 53 (security control) and
                                                        26 (PIN capture code) describe the block in 52 and go
                                                        with it (openpos ``trans.c`` sets them together and
                                                        takes them all out of the saved reversal)
===============================================  =====  ==========================================================

**Local date** (emv-keys.md §F): fields 13 + 12 are the terminal's local date and time; a request whose local
time is more than a day from the host's own clock in the terminal's zone is refused — CUP response code table,
RC 05 condition 4 ("the switch finds the security information more than 24 hours from the transaction
information"); ISO dialects answer 12, "invalid transaction" (ISO 8583:1987 field 39; pos-flows.md §B "39"): the
request is well formed but the host will not book a transaction dated a day away. Fields 13/12 that are no date
at all are a format error, 30, in both families (ISO 8583:1987 "format error"; CUP's table keeps 30 too).
The host's "now" is its scheduler's clock: the wall clock in the real server (``python -m firmware_sim.host``),
the terminal's own ``VirtualClock`` in tests (``tests/host_sim/harness.linked``), so virtual time stays
consistent on both sides. Both checks are on by default in ``SimConfig`` and the server's CLI.

Every refusal carries a reason (``PinRefusal.reason``) that the simulator keeps with the booking; no reason
holds a PIN, a block or a key.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from firmware_sim.card.tlv import TlvFormatError, iter_tlv

with warnings.catch_warnings():  # psec still reaches TripleDES through cryptography's old name
    warnings.simplefilter("ignore")
    import psec.des
    import psec.pinblock

Doc = dict[str, str]

#: Response codes per check, by dialect family (see the module docstring for the sources).
RC_WRONG_PIN = "55"
RC_TRIES_EXCEEDED = "75"
RC_PIN_MISSING = "55"
RC_PIN_FORMAT = {"cup": "99", "iso": "81"}
RC_DATE = {"cup": "05", "iso": "12"}  # a local date more than a day off
RC_DATE_FORMAT = "30"  # fields 13/12 that are no date and time
RC_PIN_FIELDS_FORMAT = "30"  # 53 or 26 without the PIN block they describe
#: the fields that only describe a PIN block: security control (53), PIN capture code (26)
PIN_BLOCK_COMPANIONS = ("53", "26")
#: Authorising kinds a PIN may travel in; requests whose local date is checked.
PIN_KINDS = frozenset({"sale", "preauth", "balance"})
DATED_KINDS = frozenset({"sale", "preauth", "balance", "void", "refund"})
DEFAULT_ZONE = {"cup": "Asia/Shanghai"}
ONLINE_PIN_CVM = 0x02


def family(dialect: str) -> str:
    return "cup" if dialect == "cup" else "iso"


def terminal_zone(dialect: str, name: str = "") -> tzinfo:
    """The terminal's zone the host assumes: ``name``, else Asia/Shanghai for CUP, else UTC."""
    name = name or DEFAULT_ZONE.get(dialect, "")
    return ZoneInfo(name) if name else UTC


def local_now(now: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(now, UTC).astimezone(zone)


@dataclass(frozen=True)
class Refusal:
    rc: str
    reason: str


def _tdes_decrypt(key: bytes, data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return psec.des.decrypt_tdes_ecb(key, data)


def _hash(pan: str) -> str:
    return hashlib.sha256(pan.encode()).hexdigest()[:32]


def _cvm_results(req: Doc) -> bytes | None:
    icc = req.get("55")
    if not icc:
        return None
    try:
        for tag, value in iter_tlv(bytes.fromhex(icc)):
            if tag == "9F34":
                return value
    except (ValueError, TlvFormatError):
        return None
    return None


@dataclass
class PinChecker:
    """The host's PIN verification with a try counter per card (by PAN hash, never the PAN)."""

    dialect: str
    #: the host's clear working PIN key, or None (then any PIN block is unverifiable)
    pin_key: Callable[[str], bytes | None]  # terminal id -> the PIN key the host shares with it
    #: the card's PIN by PAN (one function: the issuer's card file can answer instead of the config table)
    card_pin: Callable[[str], str | None]
    tries_allowed: int = 3
    #: refuse a PIN CVM with no PIN block (22.3 = 1 in CUP, or 9F34 = online PIN)
    require_pin_block: bool = True
    tries: dict[str, int] = field(default_factory=dict)  # PAN hash -> wrong tries in a row

    def check(self, req: Doc, pan: str | None) -> Refusal | None:
        """None when the request may be authorised as far as the PIN goes, else the refusal."""
        block_hex = req.get("52")
        fam = family(self.dialect)
        if not block_hex:
            if not self.require_pin_block:
                return None
            entry = req.get("22", "")
            if fam == "cup" and len(entry) >= 3 and entry[2] == "1":
                return Refusal(RC_PIN_MISSING, "field 22 says a PIN is included (third digit 1) but field 52 "
                                               "is absent")
            cvm = _cvm_results(req)
            if cvm and cvm[0] & 0x3F == ONLINE_PIN_CVM:
                return Refusal(RC_PIN_MISSING, "9F34 says online PIN but field 52 is absent")
            return None
        if not pan:
            return Refusal(RC_PIN_FORMAT[fam], "field 52 without a PAN to decode it against")
        key = self.pin_key(req.get("41", ""))
        if key is None:
            return Refusal(RC_PIN_FORMAT[fam], "no PIN working key on the host: sign on first")
        who = _hash(pan)
        if self.tries.get(who, 0) >= self.tries_allowed:
            return Refusal(RC_TRIES_EXCEEDED, f"PIN tries exhausted ({self.tries_allowed}) for this card")
        try:
            block = bytes.fromhex(block_hex)
            pin = psec.pinblock.decode_pinblock_iso_0(_tdes_decrypt(key, block), pan)
        except ValueError:
            return Refusal(RC_PIN_FORMAT[fam], "field 52 is not an ISO 9564 format-0 block under the host's "
                                               "PIN key (wrong key, or not format 0)")
        expected = self.card_pin(pan)
        if expected is not None and pin == expected:
            self.tries.pop(who, None)
            return None
        wrong = self.tries.get(who, 0) + 1
        self.tries[who] = wrong
        if wrong >= self.tries_allowed:
            return Refusal(RC_TRIES_EXCEEDED, f"wrong PIN, try {wrong} of {self.tries_allowed}: the card's PIN "
                                              "is now blocked")
        return Refusal(RC_WRONG_PIN, f"wrong PIN, try {wrong} of {self.tries_allowed}")


def check_pin_fields(req: Doc) -> Refusal | None:
    """A request carrying 53 or 26 without field 52 is malformed (RC 30): both describe the PIN block. Checked on
    every request but network management, reversals included (a reversal is the request less its PIN fields)."""
    alone = [f for f in PIN_BLOCK_COMPANIONS if f in req and "52" not in req]
    if not alone:
        return None
    return Refusal(RC_PIN_FIELDS_FORMAT, f"field(s) {', '.join(alone)} without a PIN block (52): format error")


def card_pin_table(table: Mapping[str, str]) -> Callable[[str], str | None]:
    """The card-PIN lookup over a ``{PAN: PIN}`` table (``SimConfig.card_pins``)."""
    return lambda pan: table.get(pan)


def check_local_date(req: Doc, *, now: float, zone: tzinfo, dialect: str,
                     window: timedelta = timedelta(days=1)) -> Refusal | None:
    """Refuse fields 13 (MMDD) + 12 (hhmmss) more than ``window`` from the host's now in the terminal's zone.

    The year is the one that puts the date nearest the host's date (a request on 31 December answered on
    1 January is a day old, not a year)."""
    mmdd, hhmmss = req.get("13"), req.get("12") or "000000"
    if not mmdd:
        return None
    fam = family(dialect)
    host = local_now(now, zone)
    try:
        candidates = [datetime(year, int(mmdd[:2]), int(mmdd[2:4]), int(hhmmss[:2]), int(hhmmss[2:4]),
                               int(hhmmss[4:6]), tzinfo=zone) for year in (host.year - 1, host.year, host.year + 1)
                      if _valid(year, mmdd)]
    except ValueError:
        candidates = []
    if not candidates:
        return Refusal(RC_DATE_FORMAT, f"field 13 {mmdd!r} / field 12 {hhmmss!r} is not a date and time")
    nearest = min(candidates, key=lambda c: abs(c - host))
    if abs(nearest - host) > window:
        return Refusal(RC_DATE[fam], f"the terminal's local time {mmdd} {hhmmss} is more than a day from the "
                                     f"host's {host:%m%d %H%M%S} in {zone}")
    return None


def _valid(year: int, mmdd: str) -> bool:
    try:
        datetime(year, int(mmdd[:2]), int(mmdd[2:4]))
    except ValueError:
        return False
    return True
