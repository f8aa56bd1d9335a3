"""The card session: selection -> GPO -> READ RECORD (AFL) -> restrictions -> CVM -> GENERATE AC 1.

:func:`read_card` runs the steps top to bottom and returns a :class:`CardSession` holding only masked or
tokenised card identity, the CVM decision (9F34) and field 55 ready for the sale request.
:func:`complete` runs the second GENERATE AC after the host answered. Every failure is a typed error
(:mod:`posguard.emv.errors` or :mod:`posguard.drivers.errors`) raised within the reader's bounded timeouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from posguard.drivers.reader import Reader
from posguard.emv import apdu, cvm
from posguard.emv.afl import afl_records, parse_afl
from posguard.emv.channel import CardChannel, find_card_tag, parse_card_tlv, template_primitives
from posguard.emv.dol import build_dol_data, dol_entries
from posguard.emv.errors import (
    CardDataError,
    CardDeclined,
    CardSessionError,
    CardStatusError,
    NoSupportedApplication,
)
from posguard.emv.issuer import (
    TSI1_ISSUER_AUTH,
    TSI1_SCRIPTS,
    TVR5_ISSUER_AUTH_FAILED,
    TVR5_SCRIPT_FAILED_AFTER,
    TVR5_SCRIPT_FAILED_BEFORE,
    IssuerScript,
    run_scripts,
)
from posguard.emv.online_pin import OnlinePin
from posguard.emv.selection import SelectedApp, Selector
from posguard.emv.terminal import EmvTerminal, Transaction, terminal_data
from posguard.iso8583.tlv import encode_length
from posguard.sensitive import Pan, PinBlock, mask_track2, pan_token

__all__ = [
    "CardSession",
    "SecondGac",
    "Track2Equivalent",
    "read_card",
    "complete",
    "FIELD55_SALE_TAGS",
    "FIELD55_REVERSAL_TAGS",
]

#: Field 55 of a sale request, in this order (pos-flows.md, section B).
FIELD55_SALE_TAGS = ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A",
                     "9F03", "9F33", "9F34", "9F35", "9F1E", "84", "9F09", "9F41")
#: Field 55 of a reversal.
FIELD55_REVERSAL_TAGS = ("95", "9F10", "9F1E", "9F36", "DF31")
#: Card tags that identify the cardholder: never kept in the session context.
SENSITIVE_TAGS = frozenset({"5A", "57", "56", "5F20", "9F0B", "9F1F", "9F20", "9F6B"})
MAX_GPO_ATTEMPTS = 4
SW_OK = 0x9000
SW_CONDITIONS = 0x6985
#: AIP byte 1 bit 3: issuer authentication is supported (EMV Book 3 Annex C1)
AIP1_ISSUER_AUTH = 0x04

CID_TYPES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}

PinEntry = Callable[[], str | None]


class Track2Equivalent:
    """Tag 57 as digits with ``D`` separator; prints masked, ``reveal()`` for field 35 only."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def service_code(self) -> str | None:
        _, sep, rest = self._value.partition("D")
        return rest[4:7] if sep and len(rest) >= 7 else None

    def __str__(self) -> str:
        return mask_track2(self._value)

    def __repr__(self) -> str:
        return f"Track2Equivalent({mask_track2(self._value)!r})"

    def __reduce__(self) -> Any:
        raise TypeError("track data is not picklable")


@dataclass
class _Context:
    """What the second GENERATE AC needs. Holds no cardholder-identifying tag (see SENSITIVE_TAGS)."""

    terminal: dict[str, bytes]
    card: dict[str, bytes]
    cdol2: bytes
    aid: bytes
    first_cid: int
    completed: bool = False


#: Registered application provider IDs (first 5 bytes of the AID) -> scheme name.
SCHEMES = {"A000000003": "visa", "A000000004": "mastercard", "A000000333": "unionpay",
           "A000000025": "amex", "A000000065": "jcb", "A000000152": "discover"}


@dataclass(frozen=True, repr=False)
class CardSession:
    """The result of reading a chip card up to the ARQC. Safe to print and log."""

    masked_pan: str
    pan_token: str
    expiry: str  # YYMM
    aid: str
    label: str
    cvm_required: str  # "signature" | "online_pin" | "offline_pin" | "offline_pin_and_signature" | "none" | "failed"
    cvm_results: bytes  # 9F34
    cryptogram_type: str  # "ARQC"
    atc: int
    tvr: bytes
    tsi: bytes
    field55: bytes
    atr: bytes
    pan_sequence: str | None
    service_code: str | None
    selection_method: str
    apdu_count: int
    cvm_trace: tuple[str, ...] = ()
    pan: Pan = field(repr=False, compare=False, default_factory=lambda: Pan(""))
    track2: Track2Equivalent | None = field(repr=False, compare=False, default=None)
    pin_block: PinBlock | None = field(repr=False, compare=False, default=None)  # online PIN (field 52)
    _ctx: _Context | None = field(repr=False, compare=False, default=None)

    @property
    def signature_required(self) -> bool:
        """9F34 byte 1 & 0x3F is 03, 05 or 1E: the slip must be signed."""
        return self.cvm_results[0] & 0x3F in (0x03, 0x05, 0x1E)

    @property
    def scheme(self) -> str | None:
        return SCHEMES.get(self.aid[:10])

    def __repr__(self) -> str:
        return (f"CardSession(pan={self.masked_pan!r}, aid={self.aid}, label={self.label!r}, "
                f"cvm_required={self.cvm_required!r}, 9F34={self.cvm_results.hex().upper()}, "
                f"{self.cryptogram_type} atc={self.atc}, field55={len(self.field55)} bytes, "
                f"apdus={self.apdu_count})")

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        return {
            "masked_pan": self.masked_pan,
            "pan_token": self.pan_token,
            "expiry": self.expiry,
            "pan_sequence": self.pan_sequence,
            "service_code": self.service_code,
            "aid": self.aid,
            "label": self.label,
            "scheme": self.scheme,
            "selection_method": self.selection_method,
            "cvm_required": self.cvm_required,
            "signature_required": self.signature_required,
            "cvm_results": self.cvm_results.hex().upper(),
            "cryptogram_type": self.cryptogram_type,
            "atc": self.atc,
            "tvr": self.tvr.hex().upper(),
            "tsi": self.tsi.hex().upper(),
            "field55": self.field55.hex().upper(),
            "atr": self.atr.hex().upper(),
            "apdu_count": self.apdu_count,
        }


#: The fields :func:`_new_session` must be given, all of them (tests/emv/test_session_build.py).
CARD_SESSION_FIELDS = frozenset(f.name for f in fields(CardSession))


def _new_session(**values: Any) -> CardSession:
    """``CardSession(**values)`` for :func:`read_card`, which gives every field: built in one step, where the
    frozen dataclass ``__init__`` sets its 22 fields one ``object.__setattr__`` call at a time (half the cost
    of building the session). The same object as the constructor's (tests/emv/test_session_build.py)."""
    session = _object_new(CardSession)
    session.__dict__.update(values)
    return session


_object_new = object.__new__


@dataclass(frozen=True)
class SecondGac:
    """The card's final decision after the host answered."""

    cryptogram_type: str  # "TC" | "AAC"
    approved: bool  # the card accepted (TC)
    declined_by_card: bool  # the host approved but the card answered AAC: reverse the authorisation
    atc: int
    field55: bytes  # sale tag set with the final cryptogram and the script results 9F5B (TC upload)
    script_results: bytes = b""  # 9F5B: 5 bytes per issuer script delivered (emv.issuer)
    tvr: bytes = b""  # 95 after issuer authentication and scripts
    issuer_authenticated: bool | None = None  # None: not performed (no 91, or the AIP does not support it)
    _final: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)  # the card's final data

    @property
    def reversal_field55(self) -> bytes:
        """95, 9F10, 9F1E, 9F36, DF31 of the card's final answer, for a reversal (built when asked: most sales
        are not reversed)."""
        return _field55(FIELD55_REVERSAL_TAGS, self._final)


# -- helpers ------------------------------------------------------------------------------------------------

def _digits_cn(value: bytes) -> str:
    return value.hex().upper().rstrip("F")


def _yymm(value: bytes) -> str:
    return value.hex()[:4]


def _set(tvr: bytearray, byte_no: int, bits: int) -> None:
    tvr[byte_no - 1] |= bits


def _parse_gac(data: bytes, stage: str) -> tuple[int, int, bytes, bytes | None]:
    """(CID, ATC, AC, IAD) from a GENERATE AC answer in format 1 (80) or format 2 (77)."""
    flat = template_primitives(data, 0x77)
    if flat is not None:
        cid_v, atc_v, ac_v = flat.get("9F27"), flat.get("9F36"), flat.get("9F26")
        if (cid_v is not None and atc_v is not None and ac_v is not None and len(cid_v) == 1 and len(atc_v) == 2
                and len(ac_v) == 8):
            return cid_v[0], int.from_bytes(atc_v, "big"), ac_v, flat.get("9F10")
    items = parse_card_tlv(data, path="GAC", stage=stage)  # format 1, or a 77 answer the checks below refuse
    if len(items) != 1:
        raise CardDataError(f"{len(items)} top-level objects, expected one 77 or 80", stage=stage, path="GAC")
    top = items[0]
    if top.tag == "80":
        v = top.value
        if len(v) < 11:
            raise CardDataError(f"format-1 answer of {len(v)} bytes, expected at least 11", stage=stage, path="80")
        return v[0], int.from_bytes(v[1:3], "big"), v[3:11], v[11:] or None
    if top.tag == "77":
        kids = top.children
        cid, atc, ac = find_card_tag(kids, "9F27"), find_card_tag(kids, "9F36"), find_card_tag(kids, "9F26")
        for tag, t in (("9F27", cid), ("9F36", atc), ("9F26", ac)):
            if t is None:
                raise CardDataError(f"mandatory tag {tag} missing", stage=stage, path=f"77.{tag}")
        assert cid is not None and atc is not None and ac is not None
        if len(cid.value) != 1 or len(atc.value) != 2 or len(ac.value) != 8:
            raise CardDataError("9F27/9F36/9F26 have wrong lengths", stage=stage, path="77")
        iad = find_card_tag(kids, "9F10")
        return cid.value[0], int.from_bytes(atc.value, "big"), ac.value, iad.value if iad else None
    raise CardDataError(f"answer template {top.tag}, expected 77 or 80", stage=stage, path=top.tag)


#: Each tag list field 55 is built from -> its (tag name, tag bytes on the wire) pairs, built once.
_FIELD55_PLANS: dict[tuple[str, ...], tuple[tuple[str, bytes], ...]] = {
    tags: tuple((t, bytes.fromhex(t)) for t in tags)
    for tags in (FIELD55_SALE_TAGS, FIELD55_SALE_TAGS + ("9F5B",), FIELD55_REVERSAL_TAGS)
}


def _field55(tags: tuple[str, ...], sources: dict[str, bytes]) -> bytes:
    """BER-TLV of ``tags`` present in ``sources``, in the order given, minimal lengths (as ``build_tlv``)."""
    plan = _FIELD55_PLANS.get(tags)
    if plan is None:
        plan = _FIELD55_PLANS[tags] = tuple((t, bytes.fromhex(t)) for t in tags)
    out = bytearray()
    get = sources.get
    for t, tag_bytes in plan:
        value = get(t)
        if value is None:
            continue
        n = len(value)
        out += tag_bytes
        if n < 0x80:
            out.append(n)
        else:
            out += encode_length(n)
        out += value
    return bytes(out)


def _require(sw: int, stage: str) -> None:
    if sw != SW_OK:
        raise CardStatusError(sw, stage=stage)


# -- steps --------------------------------------------------------------------------------------------------

def _gpo(ch: CardChannel, sel: Selector, sources: dict[str, bytes]) -> tuple[SelectedApp, bytes, bytes]:
    """Select the best application and initiate it; (app, AIP, AFL). 6985 drops the app and retries."""
    for _ in range(MAX_GPO_ATTEMPTS):
        app = sel.next_app()
        pdol_bytes = app.pdol
        pdol = dol_entries(pdol_bytes, "PDOL 9F38") if pdol_bytes else ()
        data = build_dol_data(pdol, {**sources, "9F09": app.config.app_version_bytes})
        stage = f"GET PROCESSING OPTIONS {app.aid.hex().upper()}"
        r = ch.send(apdu.get_processing_options(data), stage)
        if r.sw == SW_CONDITIONS:
            continue  # EMV: this application may not be used for this transaction, try the next one
        _require(r.sw, stage)
        flat = template_primitives(r.data, 0x77)
        if flat is not None and "82" in flat and "94" in flat:
            return app, flat["82"], flat["94"]
        items = parse_card_tlv(r.data, path="GPO", stage=stage)
        if len(items) != 1:
            raise CardDataError(f"{len(items)} top-level objects, expected one 77 or 80", stage=stage, path="GPO")
        top = items[0]
        if top.tag == "80":
            if len(top.value) < 6:
                raise CardDataError("format-1 answer too short for AIP and AFL", stage=stage, path="80")
            return app, top.value[:2], top.value[2:]
        if top.tag == "77":
            aip, afl = find_card_tag(top.children, "82"), find_card_tag(top.children, "94")
            if aip is None or afl is None:
                raise CardDataError("AIP (82) or AFL (94) missing", stage=stage, path="77")
            return app, aip.value, afl.value
        raise CardDataError(f"answer template {top.tag}, expected 77 or 80", stage=stage, path=top.tag)
    raise NoSupportedApplication("every application refused GET PROCESSING OPTIONS", stage="GPO")


def _read_records(ch: CardChannel, afl: bytes) -> dict[str, bytes]:
    """The AFL's records, read first and parsed after (READ RECORD changes nothing on the card): one parsing
    pass after the last exchange instead of one between every two (less time in the terminal's Python between
    card exchanges). A status word other than 9000 stops the reading at once."""
    answers: list[tuple[int, int, str, bytes]] = []
    for sfi, rec in afl_records(parse_afl(afl)):
        stage = f"READ RECORD SFI {sfi} record {rec}"
        r = ch.send(apdu.read_record(sfi, rec), stage)
        _require(r.sw, stage)
        answers.append((sfi, rec, stage, r.data))
    card: dict[str, bytes] = {}
    for sfi, rec, stage, data in answers:
        flat = template_primitives(data, 0x70)
        if flat is not None and card.keys().isdisjoint(flat):
            card.update(flat)
            continue
        path = f"SFI{sfi}.R{rec}"
        items = parse_card_tlv(data, path=path, stage=stage)
        if sfi <= 10 and (len(items) != 1 or items[0].tag != "70"):
            raise CardDataError("record is not one 70 template", stage=stage, path=path)
        for item in items[0].children if items and items[0].tag == "70" else items:
            if item.tag in card:
                raise CardDataError(f"tag {item.tag} appears twice in the records", stage=stage,
                                    path=f"{path}.70.{item.tag}", offset=item.offset)
            card[item.tag] = item.value
    return card


def _card_identity(card: dict[str, bytes]) -> tuple[Pan, Track2Equivalent | None]:
    stage = "card data"
    t2 = Track2Equivalent(_digits_cn(card["57"])) if "57" in card else None
    if "5A" in card:
        pan = _digits_cn(card["5A"])
    elif t2 is not None:
        pan = t2.reveal().partition("D")[0]
    else:
        raise CardDataError("application PAN (5A) missing", stage=stage, path="5A")
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise CardDataError(f"PAN has {len(pan)} characters, expected 12-19 digits", stage=stage, path="5A")
    if t2 is not None and t2.reveal().partition("D")[0] != pan:
        raise CardDataError("PAN in track 2 equivalent (57) differs from 5A", stage=stage, path="57")
    return Pan(pan), t2


@dataclass
class _Initiated:
    """A card selected, initiated (GPO) and read (AFL records): what a read and an inspection share."""

    atr: bytes
    channel: CardChannel
    selector: Selector
    app: SelectedApp
    aip: bytes
    terminal: dict[str, bytes]  # the terminal's data for this transaction, with 9F09/84/4F/82 of the application
    card: dict[str, bytes]  # the records' tags (5F24 present)


def _initiate(reader: Reader, terminal: EmvTerminal, txn: Transaction, atr: bytes | None) -> _Initiated:
    """Selection, GPO with this transaction's PDOL data, READ RECORD per the AFL (EMV Book 3 sections 10.1-10.2).
    Powers the card on unless ``atr`` is given."""
    if not terminal.pan_token_key:
        raise ValueError("EmvTerminal.pan_token_key is empty: configure the tokenisation key")
    if atr is None:
        atr = reader.power_on()
    ch = CardChannel(reader)
    sel = Selector(ch, terminal)
    sel.build()
    term = terminal_data(terminal, txn)
    app, aip, afl = _gpo(ch, sel, term)
    term.update({"9F09": app.config.app_version_bytes, "84": app.aid, "4F": app.aid, "82": aip})
    card = _read_records(ch, afl)
    if "5F24" not in card:
        raise CardDataError("mandatory tag 5F24 missing from the records", stage="READ RECORD", path="5F24")
    return _Initiated(atr, ch, sel, app, aip, term, card)


def read_card(reader: Reader, terminal: EmvTerminal, txn: Transaction, *,
              pin_entry: PinEntry | None = None, atr: bytes | None = None,
              online_pin: OnlinePin | None = None) -> CardSession:
    """Run the EMV contact flow up to the ARQC on a present card.

    Powers the card on unless ``atr`` (from an earlier ``power_on``) is given. ``pin_entry`` returns the
    digits for an offline PIN CVM; without it offline PIN counts as "PIN pad not present". ``online_pin``
    (the PIN pad, :mod:`posguard.emv.online_pin`) enciphers the PIN when the card asks for online PIN.
    """
    started = _initiate(reader, terminal, txn, atr)
    atr, ch, sel, app, term, card = (started.atr, started.channel, started.selector, started.app, started.terminal,
                                     started.card)
    for tag in ("8C", "8D"):
        if tag not in card:
            raise CardDataError(f"mandatory tag {tag} missing from the records", stage="READ RECORD", path=tag)
    pan, track2 = _card_identity(card)
    tvr = bytearray(5)
    tsi = bytearray(2)
    _set(tvr, 1, 0x80)  # offline data authentication was not performed (not implemented here)
    today = term["9A"].hex()  # the transaction date (YYMMDD) the card is sent in 9A
    if card["5F24"].hex() < today:
        _set(tvr, 2, 0x40)  # expired application
    if "5F25" in card and card["5F25"].hex() > today:
        _set(tvr, 2, 0x20)  # application not yet effective
    if "9F08" in card and card["9F08"] != term["9F09"]:
        _set(tvr, 2, 0x80)  # ICC and terminal have different application versions
    if txn.amount >= terminal.floor_limit:
        _set(tvr, 4, 0x80)  # transaction exceeds floor limit
    tsi[0] |= 0x08  # terminal risk management was performed

    outcome = _cardholder_verification(ch, card, terminal, txn, pin_entry,
                                       (lambda rule: online_pin.perform(pan, rule)) if online_pin else None)
    tvr[0] |= outcome.tvr1
    tvr[2] |= outcome.tvr3
    if outcome.performed:
        tsi[0] |= 0x40
    term["95"], term["9B"], term["9F34"] = bytes(tvr), bytes(tsi), outcome.results

    stage = "GENERATE AC 1"
    public_card = {k: v for k, v in card.items() if k not in SENSITIVE_TAGS}
    cdol1 = dol_entries(card["8C"], "CDOL1 8C")
    r = ch.send(apdu.generate_ac(apdu.AC_ARQC, build_dol_data(cdol1, {**public_card, **term})), stage)
    _require(r.sw, stage)
    cid, atc, ac, iad = _parse_gac(r.data, stage)
    kind = CID_TYPES.get(cid & 0xC0, "RFU")
    if kind == "AAC":
        raise CardDeclined("the card declined offline (AAC) at GENERATE AC 1", stage=stage)
    if kind != "ARQC":
        raise CardSessionError(f"card answered {kind} to an ARQC request", stage=stage)
    tsi[0] |= 0x20  # card risk management was performed
    term["9B"] = bytes(tsi)
    values = {**term, "9F26": ac, "9F27": bytes((cid,)), "9F36": atc.to_bytes(2, "big")}
    if iad is not None:
        values["9F10"] = iad
    ctx = _Context(terminal=values, card=public_card, cdol2=card["8D"], aid=app.aid, first_cid=cid)
    return _new_session(
        masked_pan=pan.masked,
        pan_token=pan_token(pan.reveal(), terminal.pan_token_key),
        expiry=_yymm(card["5F24"]),
        aid=app.aid.hex().upper(),
        label=app.label,
        cvm_required=outcome.method,
        cvm_results=outcome.results,
        cryptogram_type=kind,
        atc=atc,
        tvr=bytes(tvr),
        tsi=bytes(tsi),
        field55=_field55(FIELD55_SALE_TAGS, values),
        atr=atr,
        pan_sequence=card["5F34"].hex() if "5F34" in card else None,
        service_code=track2.service_code if track2 else None,
        selection_method=sel.method,
        apdu_count=ch.commands,
        cvm_trace=outcome.trace,
        pan=pan,
        track2=track2,
        pin_block=online_pin.block if online_pin and outcome.method == "online_pin" else None,
        _ctx=ctx,
    )


def _cardholder_verification(ch: CardChannel, card: dict[str, bytes], terminal: EmvTerminal, txn: Transaction,
                             pin_entry: PinEntry | None, online_pin: cvm.PinPerformer | None = None
                             ) -> cvm.CvmOutcome:
    ctx = cvm.CvmContext(
        amount=txn.amount,
        transaction_currency=terminal.currency_code,
        application_currency=card["9F42"].hex() if "9F42" in card else None,
        transaction_type=txn.type,
        unattended=terminal.unattended,
        capabilities=terminal.capabilities,
    )
    performer = None
    if pin_entry is not None:
        entry = pin_entry

        def performer(rule: cvm.CvmRule) -> tuple[bool, int]:
            pin = entry()
            if pin is None:
                return False, cvm.TVR3_PIN_NOT_ENTERED
            r = ch.send(apdu.verify_plain_pin(pin), "VERIFY (offline PIN)")
            if r.sw == SW_OK:
                return True, 0
            if r.sw == 0x6983 or r.sw == 0x63C0:
                return False, cvm.TVR3_PIN_LIMIT_EXCEEDED
            return False, 0

    return cvm.evaluate(card.get("8E"), ctx, performer, online_pin)


def complete(reader: Reader, session: CardSession, *, host_approved: bool, response_code: str = "00",
             issuer_auth_data: bytes | None = None, scripts: Sequence[IssuerScript] = ()) -> SecondGac:
    """Second GENERATE AC: ask for a TC when the host approved, else an AAC; report a card decline.

    ``response_code`` is the host's field 39 (two characters, becomes 8A); use ``"Z3"`` when the host
    could not be reached. ``issuer_auth_data`` (91) goes to the card in CDOL2 when CDOL2 asks for it, else
    by EXTERNAL AUTHENTICATE when the AIP says issuer authentication is supported (EMV Book 3 §10.9).
    ``scripts`` (:func:`posguard.emv.issuer.parse_issuer_data`): 71 are delivered before the second
    GENERATE AC, 72 after (Book 3 §10.10); their results are :attr:`SecondGac.script_results` (9F5B).
    """
    ctx = session._ctx
    if ctx is None or ctx.completed:
        raise CardSessionError("this card session has no pending GENERATE AC 2", stage="GENERATE AC 2",
                               hint="read the card again")
    if len(response_code) != 2:
        raise ValueError("response_code must be 2 characters (field 39)")
    sources = {**ctx.card, **ctx.terminal, "8A": response_code.encode("ascii")}
    ch = CardChannel(reader)
    cdol2 = dol_entries(ctx.cdol2, "CDOL2 8D")
    tvr, tsi = bytearray(sources.get("95", bytes(5))), bytearray(sources.get("9B", bytes(2)))
    authenticated: bool | None = None
    if issuer_auth_data is not None:
        sources["91"] = issuer_auth_data
        in_cdol2 = any(entry.tag == "91" for entry in cdol2)
        aip = sources.get("82", b"\x00")
        if not in_cdol2 and aip[0] & AIP1_ISSUER_AUTH:
            r = ch.send(apdu.external_authenticate(issuer_auth_data), "EXTERNAL AUTHENTICATE")
            authenticated = r.sw == SW_OK
            tsi[0] |= TSI1_ISSUER_AUTH
            if not authenticated:
                tvr[4] |= TVR5_ISSUER_AUTH_FAILED
    results = b""
    before = [s for s in scripts if s.template == "71"]
    if before:
        results, failed = run_scripts(ch, before)
        tsi[0] |= TSI1_SCRIPTS
        if failed:
            tvr[4] |= TVR5_SCRIPT_FAILED_BEFORE
    sources["95"], sources["9B"] = bytes(tvr), bytes(tsi)
    stage = "GENERATE AC 2"
    p1 = apdu.AC_TC if host_approved else apdu.AC_AAC
    r = ch.send(apdu.generate_ac(p1, build_dol_data(cdol2, sources)), stage)
    _require(r.sw, stage)
    cid, atc, ac, iad = _parse_gac(r.data, stage)
    ctx.completed = True
    kind = CID_TYPES.get(cid & 0xC0, "RFU")
    if kind not in ("TC", "AAC") or (kind == "TC" and not host_approved):
        raise CardSessionError(f"card answered {kind} to a {'TC' if host_approved else 'AAC'} request",
                               stage=stage)
    after = [s for s in scripts if s.template == "72"]
    if after:
        more, failed = run_scripts(ch, after)
        results += more
        tsi[0] |= TSI1_SCRIPTS
        if failed:
            tvr[4] |= TVR5_SCRIPT_FAILED_AFTER
    values = {**sources, "9F26": ac, "9F27": bytes((cid,)), "9F36": atc.to_bytes(2, "big"),
              "95": bytes(tvr), "9B": bytes(tsi)}
    if iad is not None:
        values["9F10"] = iad
    if results:
        values["9F5B"] = values["DF31"] = results
    approved = kind == "TC"
    return SecondGac(
        cryptogram_type=kind,
        approved=approved,
        declined_by_card=host_approved and not approved,
        atc=atc,
        field55=_field55(FIELD55_SALE_TAGS + ("9F5B",), values),
        script_results=results,
        tvr=bytes(tvr),
        issuer_authenticated=authenticated,
        _final=values,
    )


