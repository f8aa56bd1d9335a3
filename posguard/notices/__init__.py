"""Customer notices and slips, in Simplified Chinese and English, per incident kind.

A notice says sorry, what happened, what was done, the evidence (masked PAN, RRN, auth code, amounts, times)
and when the money will show. Templates are data (:data:`TEMPLATES`); :func:`notice_for` fills them from the
journal. Slips for 32/42/48-column printers come from :mod:`posguard.notices.slip`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from posguard.notices.slip import render_slip
from posguard.sensitive import mask_contact, scrub

if TYPE_CHECKING:
    from posguard.engine.journal import TxnRecord
    from posguard.flows.base import FlowContext, FlowOutcome, FlowRequest

__all__ = ["Notice", "Evidence", "FINDING_NOTICES", "finding_notice", "TEMPLATES", "POSTING", "CURRENCIES", "ROLES", "notice_for", "reversal_notice", "render_notice",
           "money", "local_time", "terminal_zone"]

#: when the money shows, per correction that was done
POSTING: Final[dict[str, dict[str, str]]] = {
    "void": {"zh": "撤销款项通常当天或下一个清算日退回您的账户。",
             "en": "A void posts the same or the next clearing day."},
    "refund": {"zh": "退货款项通常在1至10个清算日内退回您的账户。",
               "en": "A refund takes 1 to 10 clearing days to show on your account."},
    "reversal": {"zh": "冲正后的预留金额由发卡行释放，通常需要几天。",
                 "en": "The hold from a reversed charge is released by your card issuer, usually within days."},
    "none": {"zh": "本次无需退款。", "en": "No money needs to be returned."},
    "sale": {"zh": "新交易按正常清算周期入账。", "en": "The new charge posts in the normal clearing cycle."},
    "acquirer": {"zh": "收单机构核查后按其清算周期处理，通常需要1至10个清算日。",
                 "en": "The acquirer corrects it in its settlement cycle, usually within 1 to 10 clearing days."},
}

#: (title, what happened) per incident kind
TEMPLATES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "duplicate_charge": {
        "zh": ("重复扣款处理通知", "您的卡被重复扣款。我们保留了第一笔交易，并撤销了多扣的一笔。"),
        "en": ("Duplicate charge", "Your card was charged twice. We kept the first charge and cancelled the extra one."),
    },
    "wrong_card": {
        "zh": ("刷错卡处理通知", "交易误用了另一张卡。我们已退回该卡的款项，并在正确的卡上重新收款。"),
        "en": ("Wrong card charged", "The payment was taken from the wrong card. We returned it and charged the "
                                     "card you intended."),
    },
    "wrong_amount": {
        "zh": ("金额错误处理通知", "交易金额有误。我们已更正为正确的金额。"),
        "en": ("Wrong amount", "The amount charged was wrong. We corrected it to the right amount."),
    },
    "void_mismatch": {
        "zh": ("撤销交易查询结果", "您询问撤销的款项是否已退回。以下是我们的核查结果。"),
        "en": ("Void enquiry", "You asked whether a cancelled payment was returned. Here is what we found."),
    },
    "unsettled": {
        "zh": ("交易结算处理通知", "部分交易未能及时结算。我们已重新上送并完成结算。"),
        "en": ("Settlement follow-up", "Some payments had not reached the bank. We sent them again and closed the "
                                       "batch."),
    },
    # unsettled, one notice per customer concerned (pos-flows.md §A "Not arrived": contact only them)
    "unsettled_charged": {
        "zh": ("交易入账核查通知", "终端显示未成功的一笔交易已被银行入账。我们已请收单机构核查并撤销；如您已被扣款，款项将退回您的账户。"),
        "en": ("Payment booked in error", "The bank booked a payment the terminal showed as not completed. We have "
                                          "asked the acquirer to cancel it; if you were charged, the money is "
                                          "returned to your account."),
    },
    "unsettled_missing": {
        "zh": ("交易未入账通知", "您的一笔付款尚未到达银行。我们正在与收单机构核实，该笔款项可能稍后才出现在您的账户中。"),
        "en": ("Payment not yet booked", "Your payment has not reached the bank yet. We are checking it with the "
                                         "acquirer; it may show on your account later."),
    },
    "reversal": {
        "zh": ("交易冲正通知", "交易未能完成，本次扣款已取消；如有预留金额，将由您的发卡银行释放。"),
        "en": ("Payment reversed", "The payment did not complete: the charge was cancelled; any hold is released by "
                                   "your bank."),
    },
    "unsigned": {
        "zh": ("签名补录通知", "交易需要您的签名。"),
        "en": ("Signature", "This payment needs your signature."),
    },
}
_COLON = {"zh": "：", "en": ": "}
_SORRY = {"zh": "非常抱歉给您带来不便。", "en": "We are sorry for the inconvenience."}
_LABELS = {
    "zh": {"card": "卡号", "rrn": "参考号", "auth": "授权码", "amount": "金额", "time": "时间", "done": "处理结果",
           "when": "到账时间"},
    "en": {"card": "Card", "rrn": "RRN", "auth": "Auth code", "amount": "Amount", "time": "Time", "done": "Done",
           "when": "When"},
}


#: ISO 4217: numeric code -> (alphabetic code, minor-unit digits, the symbol a local customer reads)
CURRENCIES: Final[dict[str, tuple[str, int, str | None]]] = {
    "156": ("CNY", 2, "¥"), "344": ("HKD", 2, "HK$"), "446": ("MOP", 2, "MOP$"), "901": ("TWD", 2, "NT$"),
    "392": ("JPY", 0, "JP¥"), "410": ("KRW", 0, "₩"), "702": ("SGD", 2, "S$"), "840": ("USD", 2, "US$"),
    "978": ("EUR", 2, "€"), "826": ("GBP", 2, "£"), "036": ("AUD", 2, "A$"), "124": ("CAD", 2, "C$"),
    "048": ("BHD", 3, None), "414": ("KWD", 3, None),
}
_BY_ALPHA: Final = {alpha: num for num, (alpha, _d, _s) in CURRENCIES.items()}

#: what each leg is called on a notice
ROLES: Final[dict[str, dict[str, str]]] = {
    "original": {"zh": "原交易", "en": "original"},
    "sale": {"zh": "消费", "en": "sale"},
    "void": {"zh": "撤销", "en": "void"},
    "refund": {"zh": "退货", "en": "refund"},
    "reversal": {"zh": "冲正", "en": "reversal"},
    "preauth": {"zh": "预授权", "en": "pre-authorisation"},
    "completion": {"zh": "预授权完成", "en": "completion"},
}


def money(minor: int, currency: str = "156", lang: str = "en") -> str:
    """An amount as a customer reads it: ISO 4217 decimals; the symbol in Chinese, the code in English.

    >>> money(4200, "156", "zh"), money(4200, "CNY"), money(1200, "392", "zh"), money(1234, "048")
    ('¥42.00', 'CNY 42.00', 'JP¥1200', 'BHD 1.234')
    """
    num = currency if currency in CURRENCIES else _BY_ALPHA.get(currency)
    alpha, digits, symbol = CURRENCIES[num] if num is not None else (currency, 2, None)
    sign, minor = ("-", -minor) if minor < 0 else ("", minor)
    value = f"{minor // 10 ** digits}.{minor % 10 ** digits:0{digits}d}" if digits else str(minor)
    if lang == "zh" and symbol is not None:
        return f"{sign}{symbol}{value}"
    return f"{sign}{alpha} {value}"


def terminal_zone(name: str | None) -> tzinfo | None:
    """The terminal's time zone (``terminal.timezone``, an IANA name); None means the box's local zone.

    >>> terminal_zone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    ValueError: terminal.timezone: 'Mars/Olympus' is not an IANA time zone name (e.g. "Asia/Shanghai")
    """
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"terminal.timezone: {name!r} is not an IANA time zone name (e.g. \"Asia/Shanghai\")"
                         ) from None


def local_time(at: float | None, zone: tzinfo | None = None) -> str:
    """A journal time (UTC seconds) in the terminal's zone, with its offset so it is never ambiguous.

    >>> local_time(1_700_000_000.0, terminal_zone("Asia/Shanghai"))
    '2023-11-15 06:13:20 +0800'
    """
    if not at:
        return "-"
    when = datetime.fromtimestamp(at, UTC)
    return (when.astimezone(zone) if zone is not None else when.astimezone()).strftime("%Y-%m-%d %H:%M:%S %z")


def _time(at: float | None, zone: tzinfo | None = None) -> str:
    return local_time(at, zone)


def _utc(at: float | None) -> str:
    """What the journal keeps: UTC, as before."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


@dataclass(frozen=True)
class Evidence:
    """One transaction as a customer may see it: never more than the masked PAN."""

    role: str  # original | void | refund | sale | reversal
    txn_id: str
    pan_masked: str | None
    rrn: str | None
    auth_code: str | None
    amount_minor: int
    currency: str
    at: float | None
    response_code: str | None

    @classmethod
    def of(cls, role: str, txn: TxnRecord) -> Evidence:
        return cls(role, txn.id, txn.pan_masked, txn.rrn, txn.auth_code, txn.amount_minor, txn.currency,
                   txn.approved_at or txn.created_at, txn.response_code)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "txn_id": self.txn_id, "pan_masked": self.pan_masked, "rrn": self.rrn,
                "auth_code": self.auth_code, "amount_minor": self.amount_minor, "currency": self.currency,
                "time": _utc(self.at), "response_code": self.response_code}


@dataclass
class Notice:
    kind: str
    outcome: str
    posting: str  # key of POSTING
    evidence: list[Evidence] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # language -> full notice text
    slips: dict[str, str] = field(default_factory=dict)  # language -> slip text
    contact_masked: str | None = None
    done_text: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "outcome": self.outcome, "posting": self.posting,
                "evidence": [e.to_dict() for e in self.evidence], "texts": dict(self.texts),
                "slips": dict(self.slips), "contact": self.contact_masked}


def _role(role: str, lang: str) -> str:
    return ROLES.get(role, {}).get(lang, role)


def render_notice(kind: str, lang: str, evidence: list[Evidence], done: str, posting: str,
                  zone: tzinfo | None = None) -> str:
    title, happened = TEMPLATES[kind][lang]
    lab = _LABELS[lang]
    c = _COLON.get(lang, ": ")
    lines = [title, "", _SORRY[lang], happened, "", f"{lab['done']}{c}{done}", ""]
    for e in evidence:
        lines.append(f"[{_role(e.role, lang)}] {lab['card']} {e.pan_masked or '-'}  {lab['amount']} "
                     f"{money(e.amount_minor, e.currency, lang)}  {lab['rrn']} {e.rrn or '-'}  {lab['auth']} "
                     f"{e.auth_code or '-'}  {lab['time']} {_time(e.at, zone)}")
    lines += ["", f"{lab['when']}{c}{POSTING[posting][lang]}"]
    return scrub("\n".join(lines)) + "\n"


def render_evidence_slip(kind: str, lang: str, evidence: list[Evidence], done: str, posting: str,
                         columns: int, zone: tzinfo | None = None) -> str:
    title, _ = TEMPLATES[kind][lang]
    lab = _LABELS[lang]
    rows: list[tuple[str, str]] = []
    for e in evidence:
        rows += [(f"[{_role(e.role, lang)}]", e.txn_id), (lab["card"], e.pan_masked or "-"),
                 (lab["amount"], money(e.amount_minor, e.currency, lang)), (lab["rrn"], e.rrn or "-"),
                 (lab["auth"], e.auth_code or "-"), (lab["time"], _time(e.at, zone))]
    return scrub(render_slip(title, rows, [f"{lab['done']}{_COLON.get(lang, ': ')}{done}", POSTING[posting][lang]],
                                           columns))


_DONE: Final[dict[str, dict[str, str]]] = {
    "voided": {"zh": "已撤销", "en": "voided"},
    "refunded": {"zh": "已退货", "en": "refunded"},
    "corrected": {"zh": "已更正", "en": "corrected"},
    "reversed": {"zh": "已冲正", "en": "reversed"},
    "reversal_pending": {"zh": "冲正处理中：终端将持续发送冲正，直至银行确认", "en": "being reversed: the terminal "
                         "keeps sending the cancellation until the bank confirms it"},
    "void_stands": {"zh": "撤销有效，无需再处理", "en": "the void stands; nothing more to do"},
    "settled": {"zh": "已结算", "en": "settled"},
    "signed": {"zh": "已签名", "en": "signed"},
    "signed_later": {"zh": "已补签", "en": "signed afterwards"},
    "follow_up": {"zh": "请您补签：请回到商户签名，或回复商户的联系", "en": "please sign: come back to the merchant, or "
                  "answer the merchant's call or e-mail"},
    "settled_after_upload": {"zh": "已补传明细并结算", "en": "details uploaded and settled"},
    "nothing_to_do": {"zh": "无需处理", "en": "nothing to do"},
    "acquirer_contact_needed": {"zh": "已提交收单机构核查", "en": "reported to the acquirer for checking"},
}

#: unsettled finding rule -> the notice its customer gets (None: no customer to tell)
FINDING_NOTICES: Final[dict[str, str]] = {
    "host_booked_not_approved": "unsettled_charged",
    "host_booked_unknown": "unsettled_charged",
    "amount_differs": "unsettled_charged",
    "card_differs": "unsettled_charged",
    "approval_missing_at_host": "unsettled_missing",
}


def notice_for(ctx: FlowContext, outcome: FlowOutcome, request: FlowRequest) -> Notice | None:
    """The customer notice for a finished flow, or None when there is nothing to tell the customer."""
    if outcome.outcome in ("refused", "awaiting_confirmation", "pending", "kept_at_merchant_risk"):
        return None
    if outcome.kind == "unsettled":  # one notice per customer concerned, written by the flow (finding_notice)
        return None
    evidence: list[Evidence] = []
    seen: set[str] = set()
    for tid in list(request.txn_ids) + [s.txn_id for s in outcome.steps if s.txn_id]:
        if tid is None or tid in seen:
            continue
        seen.add(tid)
        try:
            txn = ctx.journal.get_txn(tid)
        except Exception:  # noqa: BLE001 - a missing row leaves the evidence out, not the notice
            continue
        role = "original" if tid in request.txn_ids else txn.kind
        evidence.append(Evidence.of(role, txn))
    kinds = {e.role for e in evidence}
    posting = ("refund" if "refund" in kinds else "void" if "void" in kinds or outcome.outcome == "void_stands"
               else "reversal" if outcome.kind == "reversal" else "sale" if "sale" in kinds else "none")
    done_key = outcome.outcome if outcome.outcome in _DONE else "corrected"
    notice = Notice(outcome.kind, outcome.outcome, posting, evidence,
                    contact_masked=mask_contact(request.contact) if request.contact else None)
    _fill(notice, done_key, ctx.policies.languages, ctx.policies.printer_columns,
          terminal_zone(ctx.policies.timezone))
    return notice


def _fill(notice: Notice, done_key: str, languages: tuple[str, ...], columns: int, zone: tzinfo | None) -> None:
    for lang in languages:
        done = _DONE[done_key][lang]
        notice.texts[lang] = render_notice(notice.kind, lang, notice.evidence, done, notice.posting, zone)
        notice.slips[lang] = render_evidence_slip(notice.kind, lang, notice.evidence, done, notice.posting,
                                                  columns, zone)


def reversal_notice(txn: TxnRecord, *, languages: tuple[str, ...] = ("zh", "en"), columns: int = 32,
                    timezone_name: str | None = None, pending: bool = False) -> Notice:
    """The notice for a sale the engine reversed on its own (no valid answer in time, or the card declined
    at the 2nd GENERATE AC): the charge was cancelled; any hold is released by the customer's bank. ``pending``:
    the host has not acknowledged the reversal yet (it is queued and sent again, pos-flows.md "Reversal
    mechanics"), so the notice says the charge is being cancelled."""
    outcome = "reversal_pending" if pending else "reversed"
    notice = Notice("reversal", outcome, "reversal", [Evidence.of("original", txn)])
    _fill(notice, outcome, languages, columns, terminal_zone(timezone_name))
    return notice


def finding_notice(rule: str, evidence: Evidence, *, languages: tuple[str, ...] = ("zh", "en"), columns: int = 32,
                   timezone_name: str | None = None) -> Notice | None:
    """The notice for the one customer an unsettled finding concerns (:data:`FINDING_NOTICES`), or None."""
    kind = FINDING_NOTICES.get(rule)
    if kind is None:
        return None
    notice = Notice(kind, "acquirer_contact_needed", "acquirer", [evidence])
    _fill(notice, "acquirer_contact_needed", languages, columns, terminal_zone(timezone_name))
    return notice
