"""Host profiles: how each transaction kind is written for a dialect, declared as data.

The engine reads :data:`PROFILES`; it never spells an MTI or processing code itself. Sources: the CUP
transaction table and the international (PAX) table in ``pos-flows.md``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from posguard.engine.mac import MacAlgorithm
from posguard.iso8583.dialects import get_dialect
from posguard.iso8583.spec import Dialect

if TYPE_CHECKING:
    from posguard.card import CardData
    from posguard.engine.journal import TxnRecord
    from posguard.iso8583.message import Message

__all__ = ["KindSpec", "Profile", "PROFILES", "get_profile", "CURRENCY_NUMERIC", "UnknownProfile", "Fields",
           "network_fields", "SIGN_ON_CODE", "SIGN_ON_CODE_DOUBLE_KEYS", "SIGN_OFF_CODE", "ECHO_CODE"]

Fields = dict[str, "str | bytes"]

CURRENCY_NUMERIC: Final[Mapping[str, str]] = {
    "CNY": "156", "EUR": "978", "USD": "840", "GBP": "826", "HKD": "344", "JPY": "392", "SGD": "702",
    "CHF": "756", "AUD": "036", "CAD": "124",
}


@dataclass(frozen=True)
class PinFields:
    """How a dialect carries an online PIN (``../shared/reference/emv-keys.md`` §C), declared as data.

    ``security_control`` is field 53 (n16). CUP (UnionPay POS terminal specification, field 53): 53.1 PIN format
    2 = ISO 9564 format 0 (ANSI X9.8, with the PAN), 53.2 encryption algorithm 6 = double-length TDES working key,
    53.3 fourteen reserved zeros. ISO 8583:1987 leaves 53's layout private; the international profiles use the
    Visa BASE I one: 20 security format (zone encryption), 01 ANSI DES, 01 ISO format 0, 01 key index (the PIN
    pad's slot), then zeros. ``capture_code`` is field 26, the most PIN characters the terminal accepts (ISO
    8583:1987 field 26; CUP sends it with every PIN). CUP field 22's third digit (PIN included 1 / not 2) is
    written with the entry mode by :mod:`posguard.engine.pos_entry`.
    """

    security_control: str
    capture_code: str | None = "12"
    kinds: frozenset[str] = frozenset({"sale", "preauth"})  # the requests a PIN block travels in


class UnknownProfile(KeyError):
    """No host profile of that name."""


@dataclass(frozen=True)
class KindSpec:
    """How one kind of transaction is sent: MTI, processing code (3), condition code (25), CUP 60.1."""

    mti: str
    proc: str
    cond: str = "00"
    type_code: str | None = None  # CUP field 60.1
    reversible: bool = True  # unknown outcome -> 0400 reversal; else the request is repeated as an advice
    references_original: bool = False  # carries 37/38 (+61 in CUP)
    carries_icc: bool = True


@dataclass(frozen=True)
class Profile:
    """Everything dialect-specific the engine needs."""

    name: str
    codec_dialect: str
    kinds: Mapping[str, KindSpec]
    binary_icc: bool
    reversal_keeps_stan: bool  # CUP reuses the original STAN; ISO gives the 0400 its own and uses field 90
    reversal_reason_in_39: bool  # CUP puts the reason (98 timeout, 96, 06) in field 39 of the 0400
    uses_field_60: bool
    settlement_proc: str = "920000"
    settlement_close_proc: str = "960000"  # international: 0500 after the batch upload that followed RC 95
    sign_on_code: str = "001"  # CUP 60.3 (001 single-length keys, 003 double-length); ISO field 70 is 001
    sign_on_rc: str = "77"  # response code that demands a new sign-on
    #: the MAC (64/128) the acquirer wants with the sign-on's MAC key (``emv-keys.md`` §E): ISO X9.19, CUP "ECB"
    mac_algorithm: MacAlgorithm = "x919"
    #: where the sign-on answer carries the working keys: CUP 62 (binary); ISO 48 as hex text (the key exchange
    #: declared in ``firmware_sim/host/keys.py``: ISO 8583:1987 leaves 48 to private agreement)
    keys_field: str = "48"
    reversal_done_codes: frozenset[str] = frozenset({"00", "12", "25"})
    advice_done_codes: frozenset[str] = frozenset({"00"})
    reversal_icc_tags: tuple[str, ...] = ("95", "9F10", "9F1E", "9F36", "DF31")
    #: what the saved reversal (and the advice's repeat copy) leaves out: the tracks and the PIN block with the
    #: fields describing it, 53 and 26 (pos-flows.md (B) "without 35/36/52/53"; openpos ``trans.c`` removes 26
    #: too: a PIN capture code without its block describes nothing)
    reversal_strip: tuple[str, ...] = ("26", "35", "36", "52", "53")
    repeat_mti: Mapping[str, str] = field(
        default_factory=lambda: {"0400": "0401", "0420": "0421", "0220": "0221", "0200": "0201", "0320": "0321"}
    )
    pin: PinFields = PinFields("2001010100000000")

    @property
    def dialect(self) -> Dialect:
        """The codec dialect, which declares (among the rest) which fields are card data."""
        return get_dialect(self.codec_dialect)

    def spec(self, kind: str) -> KindSpec:
        try:
            return self.kinds[kind]
        except KeyError:
            raise UnknownProfile(f"profile {self.name!r} cannot send a {kind!r}; kinds: {sorted(self.kinds)}") from None

    # -- building requests -------------------------------------------------------------------------
    def request_fields(
        self, kind: str, *, card: CardData | None, amount_minor: int, currency: str, stan: int, batch_no: int,
        terminal_id: str, merchant_id: str, now: float, original: TxnRecord | None = None,
        timezone: str | None = None, original_host_date: str | None = None,
    ) -> Fields:
        """The request of ``kind``. 12/13 are local time in ``timezone`` (terminal.timezone; 7 stays GMT);
        ``original_host_date`` (MMDD, the host's date in the original's answer) goes to a CUP refund's 61.3."""
        from posguard.engine.localtime import local_fields, local_time

        spec = self.spec(kind)
        tm = time.gmtime(now)
        f: Fields = {}
        if card is not None:
            f["2"] = card.pan.reveal()
        f["3"] = spec.proc
        f["4"] = f"{amount_minor:012d}"
        if not self.uses_field_60:
            f["7"] = time.strftime("%m%d%H%M%S", tm)
        f["11"] = f"{stan:06d}"
        f["12"], f["13"] = local_fields(now, timezone)
        if card is not None and card.expiry:
            f["14"] = card.expiry
        if card is not None:
            f.update(self.pin_fields(kind, card))  # before card_entry_fields: CUP 22's PIN digit reads 52
        f["25"] = spec.cond
        if spec.references_original and original is not None:
            if original.rrn:
                f["37"] = original.rrn
            if original.auth_code:
                f["38"] = original.auth_code
        f["41"] = terminal_id
        f["42"] = merchant_id
        f["49"] = currency_numeric(currency)
        if spec.carries_icc and card is not None and card.field55:
            f["55"] = card.field55 if self.binary_icc else card.field55.hex().upper()
        if self.uses_field_60:
            f["60"] = f"{spec.type_code or '00'}{batch_no:06d}000"
            if spec.references_original and original is not None:
                mmdd = ""
                if kind == "refund":
                    mmdd = original_host_date or local_time(original.created_at, timezone).strftime("%m%d")
                f["61"] = f"{original.batch_no or 0:06d}{original.stan or 0:06d}{mmdd}"
        if card is not None:
            self.card_entry_fields(f, card)
        return f

    def card_entry_fields(self, f: Fields, card: CardData) -> None:
        """How the card came in, added to the request ``f``: 22 (entry mode; the CUP PIN digit reads whether
        ``f`` already carries a PIN block in 52), 23 (5F34 of a chip read), 35/36 (the swipe's tracks 2/3, ``=``
        as ``D``; the reversal copy strips them) and, for CUP, 60.4/60.5 (read capability, fallback flag).
        See :mod:`posguard.engine.pos_entry` for the codes and their sources."""
        from posguard.engine import pos_entry

        family = pos_entry.family_of(self.uses_field_60)
        if card.entry_mode in pos_entry.ENTRY_MODES:
            f["22"] = pos_entry.pos_entry_mode(family, card.entry_mode, pin_included="52" in f)
        else:
            f["22"] = "000"  # ISO 8583: 00 = PAN entry mode unknown
        psn = pos_entry.card_sequence_number(card.entry_mode, card.pan_sequence)
        if psn is not None:
            f["23"] = psn
        if card.track2 is not None:
            f["35"] = card.track2.field_value()
        if card.track3 is not None:
            f["36"] = card.track3.field_value()
        if self.uses_field_60 and "60" in f and card.entry_mode in pos_entry.ENTRY_MODES:
            f["60"] = _text(f["60"])[:11] + pos_entry.cup_read_flags(card.entry_mode)

    def pin_fields(self, kind: str, card: CardData) -> Fields:
        """52 (the pad's encrypted block), 53 and 26 (CUP 22's PIN digit follows from 52: card_entry_fields)."""
        block = getattr(card, "pin_block", None) if kind in self.pin.kinds else None
        f: Fields = {}  # CUP 22's PIN digit is written by card_entry_fields, which reads whether 52 is here
        if block is not None:
            f["52"] = block.reveal() if self.binary_icc else block.reveal().hex().upper()  # ASCII dialect: hex
            f["53"] = self.pin.security_control
            if self.pin.capture_code:
                f["26"] = self.pin.capture_code
        return f

    def reversal_fields(self, request_mti: str, request: Fields, *, reason: str, stan: int | None) -> Fields:
        """The 0400: a copy of the request without 26/35/36/52/53, field 55 cut to the reversal tags."""
        f: Fields = {k: v for k, v in request.items() if k not in self.reversal_strip}
        if "55" in f:
            f["55"] = self._reversal_icc(f["55"])
            if not f["55"]:
                del f["55"]
        if self.reversal_reason_in_39:
            f["39"] = reason
        if not self.reversal_keeps_stan and stan is not None:
            orig_stan = _text(request.get("11", "000000"))
            orig_time = _text(request.get("7", "0000000000"))
            f["11"] = f"{stan:06d}"
            f["90"] = f"{request_mti}{orig_stan}{orig_time}{'0' * 11}{'0' * 11}"
        return f

    def _reversal_icc(self, value: str | bytes) -> str | bytes:
        from posguard.iso8583.tlv import TLV, build_tlv, parse_tlv

        raw = value if isinstance(value, bytes) else bytes.fromhex(value)
        keep = [t for t in parse_tlv(raw) if t.tag in self.reversal_icc_tags]
        out = build_tlv([TLV(t.tag, t.value) for t in keep])
        return out if isinstance(value, bytes) else out.hex().upper()

    def settlement_fields(
        self, *, stan: int, batch_no: int, terminal_id: str, merchant_id: str, totals: Mapping[str, int],
        currency: str, close_after_upload: bool = False,
    ) -> Fields:
        """The 0500. CUP: totals in 48 (domestic group, then foreign group; amount n12, count n3 for debits then
        credits, flag n1), 60.3 = 201. International: 3 = 920000 (960000 after a batch upload), totals in
        74 (credits number), 76 (debits number), 86 (credits amount), 88 (debits amount)."""
        f: Fields = {"11": f"{stan:06d}", "41": terminal_id, "42": merchant_id}
        if self.uses_field_60:
            f["3"] = self.settlement_proc
            f["48"] = cup_totals_48(totals)
            f["60"] = f"00{batch_no:06d}201"
        else:
            f["3"] = self.settlement_close_proc if close_after_upload else self.settlement_proc
            f["74"] = f"{totals['credit_count']:010d}"
            f["76"] = f"{totals['debit_count']:010d}"
            f["86"] = f"{totals['credit_minor']:016d}"
            f["88"] = f"{totals['debit_minor']:016d}"
        f["49"] = currency_numeric(currency)
        return f

    def settlement_flags(self, response: Message) -> dict[str, str]:
        """CUP: the 0510's field 48 flags per group, ``{"domestic": "1", "foreign": "2"}`` (1 balanced,
        2 unbalanced, 3 error); a group the host did not answer is left out."""
        value = response.get("48")
        text = _text(value) if value is not None else ""
        return {side: text[end - 1] for side, end in (("domestic", 31), ("foreign", 62)) if len(text) >= end}

    def settlement_flag(self, response: Message) -> str | None:
        """CUP: the domestic balance flag of the 0510's field 48 ('1' balanced, '2' unbalanced, '3' error)."""
        value = response.get("48")
        if value is None:
            return None
        text = _text(value)
        return text[30] if len(text) >= 31 else (text[-1:] or None)

    def upload_fields(
        self, *, purpose: str, stan: int, batch_no: int, terminal_id: str, merchant_id: str, txn: TxnRecord,
        pan: str | None = None, pan_sequence: str | None = None, icc: bytes | None = None,
        entry_field: str | None = None,
    ) -> Fields:
        """A 0320 for one transaction. CUP 60.3: 203 TC upload, 205 chip detail, 201 other detail.

        What the acquirer matches the upload on (``emv-keys.md`` A.10): the PAN (2, from the sealed card), the
        entry mode (22), the card sequence number (23, chip) and field 55 with the final cryptogram and the
        script results (``icc``: :meth:`posguard.engine.card_results.CardResult.upload_icc`). ``entry_field`` is
        the authorisation's own 22: the upload repeats it (a CUP online-PIN sale's ``051``, not ``052``)."""
        spec = self.spec("upload")
        original = self.spec(txn.kind) if txn.kind in self.kinds else spec
        # a detail names the original: its processing code (3); CUP: its type (60.1) and batch + trace (61);
        # international: its MTI + STAN (60). A TC upload uses the upload's own processing code.
        f: Fields = {"3": spec.proc if purpose == "tc" else original.proc, "4": f"{txn.amount_minor:012d}",
                     "11": f"{stan:06d}", "41": terminal_id, "42": merchant_id}
        if txn.rrn:
            f["37"] = txn.rrn
        if txn.auth_code:
            f["38"] = txn.auth_code
        self._upload_card_fields(f, txn, pan=pan, pan_sequence=pan_sequence, icc=icc)
        if entry_field and "22" in f:
            f["22"] = entry_field  # as authorised: the acquirer matches 22 to the 0200's
        if self.uses_field_60:
            chip = txn.entry_mode in ("chip", "contactless")
            code = "203" if purpose == "tc" else ("205" if chip else "201")
            type_code = spec.type_code if purpose == "tc" else original.type_code
            f["60"] = f"{type_code or '00'}{batch_no:06d}{code}"
            f["61"] = f"{txn.batch_no or 0:06d}{txn.stan or 0:06d}"
        else:
            f["60"] = f"{original.mti}{txn.stan or 0:06d}"
        return f

    def _upload_card_fields(self, f: Fields, txn: TxnRecord, *, pan: str | None, pan_sequence: str | None,
                            icc: bytes | None) -> None:
        from posguard.engine import pos_entry

        if pan:
            f["2"] = pan
        if txn.entry_mode in pos_entry.ENTRY_MODES:
            f["22"] = pos_entry.pos_entry_mode(pos_entry.family_of(self.uses_field_60), txn.entry_mode)
            psn = pos_entry.card_sequence_number(txn.entry_mode, pan_sequence)
            if psn is not None:
                f["23"] = psn
        if icc:
            f["55"] = icc if self.binary_icc else icc.hex().upper()

    def batch_end_fields(self, *, stan: int, batch_no: int, terminal_id: str, merchant_id: str, count: int,
                         after: str) -> Fields:
        """CUP batch end (0320): 60.3 = 207 after TC uploads (balanced), 202 after detail uploads (unbalanced)."""
        code = "207" if after == "tc" else "202"
        return {"11": f"{stan:06d}", "41": terminal_id, "42": merchant_id, "48": f"{count:04d}",
                "60": f"00{batch_no:06d}{code}"}

    # -- network management ------------------------------------------------------------------------
    def sign_on_fields(self, *, stan: int, batch_no: int, terminal_id: str, merchant_id: str, now: float,
                       operator: str = "001") -> Fields:
        """The 0800 sign-on: ISO field 70 = 001; CUP 60.3 = :attr:`sign_on_code` and the operator in 63."""
        code = self.sign_on_code if self.uses_field_60 else SIGN_ON_CODE
        return network_fields(code, in_field_60=self.uses_field_60, stan=stan, batch_no=batch_no,
                              terminal_id=terminal_id, merchant_id=merchant_id, now=now, operator=operator)

    def sign_off_message(self, *, stan: int, batch_no: int, terminal_id: str, merchant_id: str,
                         now: float) -> tuple[str, Fields]:
        """The sign-off (``pos-flows.md`` §B): CUP 0820 with 60.3 = 002; ISO 0800 with field 70 = 002."""
        fields = network_fields(SIGN_OFF_CODE, in_field_60=self.uses_field_60, stan=stan, batch_no=batch_no,
                                terminal_id=terminal_id, merchant_id=merchant_id, now=now)
        return ("0820" if self.uses_field_60 else "0800"), fields

    def sign_on_demanded(self, response: Message) -> str | None:
        """Why the host wants a new sign-on, or None: RC 77, or (CUP) processing requirement 3 in the header."""
        if response.response_code == self.sign_on_rc:
            return f"rc {self.sign_on_rc}"
        header = response.header
        if self.uses_field_60 and header is not None:
            raw = header if isinstance(header, bytes) else bytes.fromhex(header)
            if len(raw) >= 8 and raw[7] & 0x0F == 3:
                return "header processing requirement 3"
        return None

    def repeat_of(self, mti: str) -> str:
        return self.repeat_mti.get(mti, mti)

    def message(self, mti: str, fields: Fields) -> Message:
        from posguard.iso8583.message import Message

        values: dict[str | int, str | bytes] = dict(fields.items())
        return Message(mti, values, dialect=self.codec_dialect)


#: Network management codes of the 0800 (ISO field 70; CUP-style dialects put them in 60.3).
SIGN_ON_CODE = "001"
SIGN_ON_CODE_DOUBLE_KEYS = "003"  # CUP 60.3: sign-on with double-length working keys
SIGN_OFF_CODE = "002"
ECHO_CODE = "301"


def network_fields(code: str, *, in_field_60: bool, stan: int, batch_no: int, terminal_id: str, merchant_id: str,
                   now: float, operator: str | None = None) -> Fields:
    """The fields of an 0800 network-management request: the one place its layout is written.

    ISO: transmission time in 7 and ``code`` in 70. CUP-style (no field 70): ``code`` in 60.3 after the batch
    number, and the operator (sign-on) in 63.
    """
    f: Fields = {"11": f"{stan:06d}", "41": terminal_id, "42": merchant_id}
    if in_field_60:
        f["60"] = f"00{batch_no:06d}{code}"
        if operator is not None:
            f["63"] = operator
    else:
        f["7"] = time.strftime("%m%d%H%M%S", time.gmtime(now))
        f["70"] = code
    return f


def cup_totals_48(totals: Mapping[str, int]) -> str:
    """CUP 0500 field 48 (pos-flows.md §B): the domestic group (UnionPay cards), then the foreign group (Visa,
    Mastercard, ...), each debit amount n12, debit count n3, credit amount n12, credit count n3, flag n1 (0 in a
    request). ``totals`` holds the whole batch and its ``foreign_*`` part; domestic is the rest.

    >>> cup_totals_48({"debit_count": 3, "debit_minor": 6000, "credit_count": 0, "credit_minor": 0,
    ...                "foreign_debit_count": 1, "foreign_debit_minor": 1000})
    '00000000500000200000000000000000000000010000010000000000000000'
    """
    groups = []
    for prefix in ("", "foreign_"):
        g = {k: int(totals.get(prefix + k, 0)) for k in ("debit_minor", "debit_count", "credit_minor",
                                                         "credit_count")}
        groups.append(g)
    dom, foreign = groups
    dom = {k: dom[k] - foreign[k] for k in dom}
    return "".join(f"{g['debit_minor']:012d}{g['debit_count']:03d}{g['credit_minor']:012d}{g['credit_count']:03d}0"
                   for g in (dom, foreign))


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def currency_numeric(currency: str) -> str:
    if currency.isdigit() and len(currency) == 3:
        return currency
    try:
        return CURRENCY_NUMERIC[currency.upper()]
    except KeyError:
        raise UnknownProfile(
            f"currency {currency!r} has no ISO 4217 numeric code configured; pass the 3-digit code instead"
        ) from None


_INTERNATIONAL = {
    "sale": KindSpec("0200", "000000"),
    "void": KindSpec("0200", "020000", references_original=True, carries_icc=False),
    "refund": KindSpec("0200", "200000", references_original=True, carries_icc=False),
    "preauth": KindSpec("0100", "000000", cond="06"),
    "completion": KindSpec("0220", "000000", cond="06", reversible=False, references_original=True, carries_icc=False),
    "upload": KindSpec("0320", "940000", reversible=False, carries_icc=False),
}
_CUP = {
    "sale": KindSpec("0200", "000000", type_code="22"),
    "void": KindSpec("0200", "200000", type_code="23", references_original=True, carries_icc=False),
    "refund": KindSpec("0220", "200000", type_code="25", reversible=False, references_original=True,
                       carries_icc=False),
    "preauth": KindSpec("0100", "030000", cond="06", type_code="10"),
    "completion": KindSpec("0200", "000000", cond="06", type_code="20", references_original=True, carries_icc=False),
    "upload": KindSpec("0320", "000000", type_code="00", reversible=False, carries_icc=False),
}

PROFILES: Final[Mapping[str, Profile]] = {
    "iso87ascii": Profile("iso87ascii", "iso87ascii", _INTERNATIONAL, binary_icc=False, reversal_keeps_stan=False,
                          reversal_reason_in_39=False, uses_field_60=False),
    "iso87": Profile("iso87", "iso87", _INTERNATIONAL, binary_icc=True, reversal_keeps_stan=False,
                     reversal_reason_in_39=False, uses_field_60=False),
    "cup": Profile("cup", "cup", _CUP, binary_icc=True, reversal_keeps_stan=True, reversal_reason_in_39=True,
                   uses_field_60=True, settlement_proc="000000", sign_on_code="003", mac_algorithm="cup-ecb",
                   keys_field="62", pin=PinFields("2600000000000000")),
}


def get_profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"no host profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None
