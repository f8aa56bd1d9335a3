"""The terminal's own data: configuration (capabilities, country, AIDs...) and the transaction.

:func:`terminal_data` turns both into the tag -> value map that PDOL/CDOL data and field 55 are built from.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from posguard.notices import terminal_zone


@dataclass(frozen=True, slots=True)
class AidConfig:
    """A terminal-supported application. ``partial``: the Application Selection Indicator (a card AID
    that starts with ``aid`` matches). ``app_version`` is the terminal's 9F09 for it."""

    aid: str
    label: str = ""
    partial: bool = True
    app_version: str = "008C"

    @property
    def aid_bytes(self) -> bytes:
        return _hex_bytes(self.aid)

    @property
    def app_version_bytes(self) -> bytes:
        """The terminal's application version number (9F09) for this application, as sent."""
        return _hex_bytes(self.app_version)


@lru_cache(maxsize=256)
def _hex_bytes(text: str) -> bytes:
    """``bytes.fromhex`` of a configured hex string (AIDs, versions), decoded once per process."""
    return bytes.fromhex(text)


DEFAULT_AIDS: tuple[AidConfig, ...] = (
    AidConfig("A000000333010101", "UnionPay Debit", app_version="0030"),
    AidConfig("A000000333010102", "UnionPay Credit", app_version="0030"),
    AidConfig("A000000333010103", "UnionPay Quasi Credit", app_version="0030"),
    AidConfig("A0000000031010", "Visa", app_version="0096"),
    AidConfig("A0000000032010", "Visa Electron", app_version="0096"),
    AidConfig("A0000000041010", "Mastercard", app_version="0002"),
    AidConfig("A0000000043060", "Maestro", app_version="0002"),
    AidConfig("A0000000651010", "JCB", app_version="0200"),
    AidConfig("A00000002501", "American Express", app_version="0001"),
)


#: 9F33 (EMV Book 4 Annex A2): byte 1 E0 = manual key entry, magnetic stripe, IC with contacts; byte 2 CVM
#: capability: 80 plaintext PIN for ICC verification, 40 enciphered PIN for online verification, 20 signature,
#: 10 enciphered PIN for offline verification, 08 no CVM required; byte 3 00 = no offline data authentication.
CAPABILITIES_WITH_PIN_PAD = bytes.fromhex("E06800")  # online PIN (the pad), signature, no CVM
CAPABILITIES_WITHOUT_PIN_PAD = bytes.fromhex("E02800")  # signature, no CVM: no PIN of any kind announced


def terminal_capabilities(*, pin_pad: bool) -> bytes:
    """9F33 for a terminal with or without an encrypting PIN pad configured (``pinpad.port``).

    Without a pad the terminal must announce neither online nor offline enciphered PIN, so the card's CVM list
    falls through to what it allows without a PIN (signature); with the pad, online PIN. Offline plaintext PIN
    is not announced: a PCI PIN pad would send VERIFY to the card itself, which this pad does not.
    """
    return CAPABILITIES_WITH_PIN_PAD if pin_pad else CAPABILITIES_WITHOUT_PIN_PAD


@dataclass(frozen=True)
class EmvTerminal:
    """The terminal as the EMV card session sees it: its static EMV parameters (not the engine's
    :class:`posguard.engine.engine.TerminalConfig`). Codes are ISO 4217/3166 numeric, 4 digits (``"0156"``).

    ``capabilities`` (9F33) default E0 68 00: IC/magstripe/manual entry; online PIN, signature, no CVM
    (no offline PIN); no offline data authentication. A terminal built from its configuration uses
    :func:`terminal_capabilities` (online PIN only with a PIN pad) and passes the pad as ``read_card``'s
    ``online_pin``; with this default and no pad, online PIN is chosen with no PIN block (the host refuses it).
    ``pan_token_key`` keys :func:`posguard.sensitive.pan_token` and must be set.
    """

    pan_token_key: bytes = field(repr=False)
    country_code: str = "0156"
    currency_code: str = "0156"
    currency_exponent: int = 2
    terminal_type: int = 0x22
    capabilities: bytes = bytes.fromhex("E06800")
    additional_capabilities: bytes = bytes.fromhex("6000F0A001")
    ifd_serial: str = "POSGRD01"
    terminal_id: str = "POSGRD01"
    merchant_id: str = "000000000000000"
    merchant_category: str = "5999"
    merchant_name_location: str = "POSGUARD TEST SHOP"
    acquirer_id: str = "000000"
    floor_limit: int = 0
    aids: tuple[AidConfig, ...] = DEFAULT_AIDS
    #: terminal.timezone (IANA): 9A and 9F21 are the terminal's local date and time (emv-keys.md §F)
    timezone: str = ""

    @property
    def unattended(self) -> bool:
        return self.terminal_type & 0x0F in (4, 5, 6)

    def aid_config(self, aid: bytes) -> AidConfig | None:
        """The configured AID matching a card AID (exact, or prefix when partial selection is allowed)."""
        best: AidConfig | None = None
        for cfg in self.aids:
            a = cfg.aid_bytes
            if aid == a:
                return cfg
            if cfg.partial and aid.startswith(a) and (best is None or len(a) > len(best.aid_bytes)):
                best = cfg
        return best


@dataclass(frozen=True)
class Transaction:
    """One card transaction. ``amount`` and ``other_amount`` are minor units; ``type`` is 9C."""

    amount: int
    other_amount: int = 0
    type: int = 0x00
    when: datetime | None = None
    unpredictable_number: bytes | None = field(default=None, repr=False)
    sequence_counter: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= 999_999_999_999:
            raise ValueError(f"amount {self.amount} outside n12")
        if self.unpredictable_number is not None and len(self.unpredictable_number) != 4:
            raise ValueError("unpredictable number must be 4 bytes")


def bcd(value: int | str, nbytes: int) -> bytes:
    """Packed BCD, right-justified in ``nbytes`` (n format)."""
    digits = str(value)
    if not digits.isdigit() or len(digits) > nbytes * 2:
        raise ValueError(f"{digits!r} does not fit n{nbytes * 2}")
    return bytes.fromhex(digits.rjust(nbytes * 2, "0"))


def local_when(cfg: EmvTerminal, txn: Transaction) -> datetime:
    """The transaction's time on the terminal's clock face: an aware ``txn.when`` is converted to
    ``cfg.timezone`` (a naive one is taken as already local); none: now in that zone."""
    zone = terminal_zone(cfg.timezone)  # terminal.timezone as the notices read it
    if txn.when is None:
        return datetime.now(zone) if zone else datetime.now()
    if txn.when.tzinfo is not None:
        return txn.when.astimezone(zone) if zone else txn.when.astimezone()
    return txn.when


def _bcd2(n: int) -> int:
    """Two decimal digits 0-99 as one packed BCD byte."""
    return (n // 10) << 4 | n % 10


def _static_data(cfg: EmvTerminal) -> tuple[bytes, ...]:
    """The values of :func:`terminal_data` that depend on the configuration only: 9F1A 5F2A 5F36 9F35 9F1E
    9F1C 9F16 9F15 9F4E 9F01; computed once for the configuration last used (a frozen dataclass: the same
    object has the same values; recognised by identity, which costs less than hashing its fields)."""
    global _LAST_STATIC
    last_cfg, values = _LAST_STATIC
    if last_cfg is not cfg:
        values = _compute_static_data(cfg)
        _LAST_STATIC = (cfg, values)
    return values


def _compute_static_data(cfg: EmvTerminal) -> tuple[bytes, ...]:
    return (
        bcd(cfg.country_code, 2),
        bcd(cfg.currency_code, 2),
        bcd(cfg.currency_exponent, 1),
        bytes((cfg.terminal_type,)),
        cfg.ifd_serial.encode("ascii")[:8].ljust(8, b" "),
        cfg.terminal_id.encode("ascii")[:8].ljust(8, b" "),
        cfg.merchant_id.encode("ascii")[:15].ljust(15, b" "),
        bcd(cfg.merchant_category, 2),
        cfg.merchant_name_location.encode("ascii"),
        bcd(cfg.acquirer_id, 6),
    )


_LAST_STATIC: tuple[EmvTerminal | None, tuple[bytes, ...]] = (None, ())
_DEFAULT_9F09 = bytes.fromhex("008C")
_TVR_ZERO = bytes(5)
_TSI_ZERO = bytes(2)
_CVM_RESULTS_UNKNOWN = bytes.fromhex("3F0000")


def terminal_data(cfg: EmvTerminal, txn: Transaction, aid: AidConfig | None = None) -> dict[str, bytes]:
    """Tag -> value of everything the terminal itself knows (TVR/TSI start at zero)."""
    when = local_when(cfg, txn)
    un = txn.unpredictable_number or secrets.token_bytes(4)
    country, currency, exponent, term_type, ifd, tid, mid, mcc, name_location, acquirer = _static_data(cfg)
    return {
        "9F02": bcd(txn.amount, 6),
        "9F03": bcd(txn.other_amount, 6),
        "9F1A": country,
        "5F2A": currency,
        "5F36": exponent,
        "9A": bytes((_bcd2(when.year % 100), _bcd2(when.month), _bcd2(when.day))),  # YYMMDD (n6)
        "9F21": bytes((_bcd2(when.hour), _bcd2(when.minute), _bcd2(when.second))),  # HHMMSS (n6)
        "9C": bytes((txn.type,)),
        "9F37": un,
        "9F35": term_type,
        "9F33": cfg.capabilities,
        "9F40": cfg.additional_capabilities,
        "9F1E": ifd,
        "9F1C": tid,
        "9F16": mid,
        "9F15": mcc,
        "9F4E": name_location,
        "9F01": acquirer,
        "9F09": aid.app_version_bytes if aid else _DEFAULT_9F09,
        "9F41": bcd(txn.sequence_counter, 4),
        "9F7A": b"\x00",  # VLP terminal support indicator: no electronic cash
        "95": _TVR_ZERO,
        "9B": _TSI_ZERO,
        "9F34": _CVM_RESULTS_UNKNOWN,
    }
