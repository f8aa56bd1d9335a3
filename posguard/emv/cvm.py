"""Cardholder Verification Method list (8E) evaluation -> CVM Results (9F34) (EMV Book 3 section 10.5).

The list is ``X (4) | Y (4) | rules``; a rule is ``code, condition``. ``code & 0x3F`` is the method, bit
0x40 means "apply the next rule if this one is unsuccessful". CVM Results are ``code, condition, result``
with result 00 unknown (signature, online PIN: verified later), 01 failed, 02 successful.

The decision is declared as data (:data:`METHODS`, :data:`CONDITIONS`) and read by one loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from posguard.emv.errors import CardDataError

RESULT_UNKNOWN = 0x00
RESULT_FAILED = 0x01
RESULT_SUCCESS = 0x02

# CVM codes (b6..b1)
FAIL_CVM = 0x00
PLAIN_PIN_ICC = 0x01
ONLINE_PIN = 0x02
PLAIN_PIN_ICC_SIGNATURE = 0x03
ENC_PIN_ICC = 0x04
ENC_PIN_ICC_SIGNATURE = 0x05
SIGNATURE = 0x1E
NO_CVM = 0x1F
NO_CVM_PERFORMED = 0x3F


@dataclass(frozen=True, slots=True)
class Method:
    name: str  # value of CardSession.cvm_required
    capability_bit: int  # bit of 9F33 byte 2 that says the terminal supports it (0: always supported)
    offline_pin: bool = False
    signature: bool = False


#: Recognised CVM codes. 9F33 byte 2: 80 plaintext PIN (ICC), 40 enciphered PIN online, 20 signature,
#: 10 enciphered PIN (ICC), 08 no CVM required.
METHODS: dict[int, Method] = {
    FAIL_CVM: Method("failed", 0),
    PLAIN_PIN_ICC: Method("offline_pin", 0x80, offline_pin=True),
    ONLINE_PIN: Method("online_pin", 0x40),
    PLAIN_PIN_ICC_SIGNATURE: Method("offline_pin_and_signature", 0x80 | 0x20, offline_pin=True, signature=True),
    ENC_PIN_ICC: Method("offline_pin", 0x10, offline_pin=True),
    ENC_PIN_ICC_SIGNATURE: Method("offline_pin_and_signature", 0x10 | 0x20, offline_pin=True, signature=True),
    SIGNATURE: Method("signature", 0x20, signature=True),
    NO_CVM: Method("none", 0x08),
}

CASH_TYPES = frozenset({0x01, 0x17})
CASHBACK_TYPES = frozenset({0x09})


@dataclass(frozen=True, slots=True)
class CvmContext:
    """What the conditions look at."""

    amount: int  # minor units, transaction currency
    transaction_currency: str  # 4 digits, e.g. "0156"
    application_currency: str | None  # 9F42 as 4 digits, None if the card has none
    transaction_type: int  # 9C
    unattended: bool
    capabilities: bytes  # 9F33 (3 bytes)

    def supports(self, code: int) -> bool:
        m = METHODS.get(code)
        if m is None:
            return False
        bits = m.capability_bit
        return (self.capabilities[1] & bits) == bits if bits else True

    @property
    def cash(self) -> bool:
        return self.transaction_type in CASH_TYPES

    @property
    def cashback(self) -> bool:
        return self.transaction_type in CASHBACK_TYPES


def _in_app_currency(ctx: CvmContext) -> bool:
    return ctx.application_currency is not None and ctx.application_currency == ctx.transaction_currency


#: Condition code -> predicate(ctx, code, X, Y). Unknown condition codes are "not satisfied".
CONDITIONS: dict[int, Callable[[CvmContext, int, int, int], bool]] = {
    0x00: lambda c, code, x, y: True,
    0x01: lambda c, code, x, y: c.unattended and c.cash,
    0x02: lambda c, code, x, y: not c.cash and not c.cashback,
    0x03: lambda c, code, x, y: c.supports(code),
    0x04: lambda c, code, x, y: c.cash and not c.unattended,
    0x05: lambda c, code, x, y: c.cashback,
    0x06: lambda c, code, x, y: _in_app_currency(c) and c.amount < x,
    0x07: lambda c, code, x, y: _in_app_currency(c) and c.amount > x,
    0x08: lambda c, code, x, y: _in_app_currency(c) and c.amount < y,
    0x09: lambda c, code, x, y: _in_app_currency(c) and c.amount > y,
}

# TVR byte 3 bits
TVR3_CV_FAILED = 0x80
TVR3_UNRECOGNISED_CVM = 0x40
TVR3_PIN_LIMIT_EXCEEDED = 0x20
TVR3_NO_PINPAD = 0x10
TVR3_PIN_NOT_ENTERED = 0x08
TVR3_ONLINE_PIN = 0x04
TVR1_ICC_DATA_MISSING = 0x20


@dataclass(frozen=True, slots=True)
class CvmRule:
    code: int  # full first byte, including the 0x40 "apply next" bit
    condition: int

    @property
    def method(self) -> int:
        return self.code & 0x3F

    @property
    def apply_next(self) -> bool:
        return bool(self.code & 0x40)


@dataclass(frozen=True, slots=True)
class CvmList:
    x: int
    y: int
    rules: tuple[CvmRule, ...]


def parse_cvm_list(data: bytes) -> CvmList:
    """The list's amounts X, Y and rules (EMV Book 3 section 10.5); kept per process per list (a card profile's
    8E is the same on every read, and the result is immutable); a malformed list raises every time."""
    return _parse_cvm_list(bytes(data))


@lru_cache(maxsize=128)
def _parse_cvm_list(data: bytes) -> CvmList:
    if len(data) < 8 or (len(data) - 8) % 2:
        raise CardDataError(f"CVM list of {len(data)} bytes is not 8 + 2n", stage="CVM", path="8E")
    rules = tuple(CvmRule(data[i], data[i + 1]) for i in range(8, len(data), 2))
    return CvmList(int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big"), rules)


@dataclass(frozen=True)
class CvmOutcome:
    """Result of the CVM step."""

    method: str  # "signature" | "online_pin" | "offline_pin" | "offline_pin_and_signature" | "none" | "failed"
    results: bytes  # 9F34
    tvr3: int = 0  # bits to set in TVR byte 3
    tvr1: int = 0  # bits to set in TVR byte 1
    performed: bool = True  # False when the card has no CVM list (TSI bit not set)
    trace: tuple[str, ...] = field(default=(), compare=False)  # one line per rule, for diagnostics

    @property
    def signature_required(self) -> bool:
        return self.results[0] & 0x3F in (PLAIN_PIN_ICC_SIGNATURE, ENC_PIN_ICC_SIGNATURE, SIGNATURE)


#: Performs an offline PIN CVM (VERIFY) and says whether it succeeded; also returns TVR byte-3 bits.
PinPerformer = Callable[[CvmRule], tuple[bool, int]]


def evaluate(cvm_list: bytes | None, ctx: CvmContext, perform_offline_pin: PinPerformer | None = None,
             perform_online_pin: PinPerformer | None = None) -> CvmOutcome:
    """Walk the CVM list and decide. Offline PIN counts as supported only with ``perform_offline_pin``.

    ``perform_online_pin`` (the PIN pad, :mod:`posguard.emv.online_pin`) asks for the enciphered PIN when the
    list selects online PIN; it fails on a bypass (TVR byte 3 "PIN not entered"), so the next rule applies
    (EMV Book 3 §10.5.2). Without it, online PIN is decided and left to the caller (as before).
    """
    if not cvm_list:
        return CvmOutcome("none", bytes((NO_CVM_PERFORMED, 0x00, 0x00)), tvr1=TVR1_ICC_DATA_MISSING,
                          performed=False, trace=("no CVM list on the card",))
    parsed = parse_cvm_list(cvm_list)
    tvr3 = 0
    trace: list[str] = []
    last_failed: CvmRule | None = None
    for rule in parsed.rules:
        cond = CONDITIONS.get(rule.condition)
        label = f"rule {rule.code:02X}{rule.condition:02X}"
        if cond is None or not cond(ctx, rule.method, parsed.x, parsed.y):
            trace.append(f"{label}: condition not satisfied")
            continue
        method = METHODS.get(rule.method)
        success = False
        if method is None:
            tvr3 |= TVR3_UNRECOGNISED_CVM
            trace.append(f"{label}: unrecognised CVM")
        elif rule.method == FAIL_CVM:
            trace.append(f"{label}: 'fail CVM processing'")
        elif not ctx.supports(rule.method) or (method.offline_pin and perform_offline_pin is None):
            if method.offline_pin or rule.method == ONLINE_PIN:
                tvr3 |= TVR3_NO_PINPAD
            trace.append(f"{label}: {method.name} not supported by the terminal")
        elif rule.method == ONLINE_PIN and perform_online_pin is not None:
            ok, bits = perform_online_pin(rule)
            tvr3 |= bits
            trace.append(f"{label}: online PIN {'entered' if ok else 'not entered'}")
            if ok:  # verified by the issuer: result "unknown" (EMV Book 3 §10.5)
                return CvmOutcome(method.name, bytes((rule.code, rule.condition, RESULT_UNKNOWN)), tvr3=tvr3,
                                  trace=tuple(trace))
        elif method.offline_pin:
            assert perform_offline_pin is not None
            ok, bits = perform_offline_pin(rule)
            tvr3 |= bits
            trace.append(f"{label}: offline PIN {'verified' if ok else 'failed'}")
            if ok:
                result = RESULT_UNKNOWN if method.signature else RESULT_SUCCESS
                return CvmOutcome(method.name, bytes((rule.code, rule.condition, result)), tvr3=tvr3,
                                  trace=tuple(trace))
        else:
            success = True
        if success:
            assert method is not None
            result = RESULT_SUCCESS if rule.method == NO_CVM else RESULT_UNKNOWN
            trace.append(f"{label}: {method.name}")
            return CvmOutcome(method.name, bytes((rule.code, rule.condition, result)), tvr3=tvr3,
                              trace=tuple(trace))
        last_failed = rule
        if not rule.apply_next:
            break
    tvr3 |= TVR3_CV_FAILED
    if last_failed is None:
        return CvmOutcome("failed", bytes((NO_CVM_PERFORMED, 0x00, RESULT_FAILED)), tvr3=tvr3,
                          trace=(*trace, "no rule applied: cardholder verification failed"))
    return CvmOutcome("failed", bytes((last_failed.code, last_failed.condition, RESULT_FAILED)), tvr3=tvr3,
                      trace=(*trace, "cardholder verification failed"))
