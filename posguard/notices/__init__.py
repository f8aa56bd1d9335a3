"""Customer notices and slips, in Simplified Chinese and English, per incident kind.

A notice says sorry, what happened, what was done, the evidence (masked PAN, RRN, auth code, amounts, times)
and when the money will show. Templates are data (:data:`TEMPLATES`); :func:`notice_for` fills them from the
journal. Slips for 32/42/48-column printers come from :mod:`posguard.notices.slip`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from posguard.notices.slip import render_slip
from posguard.sensitive import mask_contact, scrub

if TYPE_CHECKING:
    from posguard.engine.journal import TxnRecord
    from posguard.flows.base import FlowContext, FlowOutcome, FlowRequest

__all__ = ["Notice", "TEMPLATES", "POSTING", "notice_for", "render_notice", "money"]

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
    "reversal": {
        "zh": ("交易冲正通知", "交易未能完成，系统已自动冲正，您的卡不会被扣款。"),
        "en": ("Payment reversed", "The payment did not complete and was reversed; your card will not be charged."),
    },
    "unsigned": {
        "zh": ("签名补录通知", "交易需要您的签名。"),
        "en": ("Signature", "This payment needs your signature."),
    },
}
_SORRY = {"zh": "非常抱歉给您带来不便。", "en": "We are sorry for the inconvenience."}
_LABELS = {
    "zh": {"card": "卡号", "rrn": "参考号", "auth": "授权码", "amount": "金额", "time": "时间", "done": "处理结果",
           "when": "到账时间"},
    "en": {"card": "Card", "rrn": "RRN", "auth": "Auth code", "amount": "Amount", "time": "Time", "done": "Done",
           "when": "When"},
}


def money(minor: int, currency: str = "CNY") -> str:
    return f"{currency} {minor // 100}.{minor % 100:02d}"


def _time(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) if at else "-"


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
                "time": _time(self.at), "response_code": self.response_code}


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


def render_notice(kind: str, lang: str, evidence: list[Evidence], done: str, posting: str) -> str:
    title, happened = TEMPLATES[kind][lang]
    lab = _LABELS[lang]
    lines = [title, "", _SORRY[lang], happened, "", f"{lab['done']}: {done}", ""]
    for e in evidence:
        lines.append(f"[{e.role}] {lab['card']} {e.pan_masked or '-'}  {lab['amount']} "
                     f"{money(e.amount_minor, e.currency)}  {lab['rrn']} {e.rrn or '-'}  {lab['auth']} "
                     f"{e.auth_code or '-'}  {lab['time']} {_time(e.at)}")
    lines += ["", f"{lab['when']}: {POSTING[posting][lang]}"]
    return scrub("\n".join(lines)) + "\n"


def render_evidence_slip(kind: str, lang: str, evidence: list[Evidence], done: str, posting: str,
                         columns: int) -> str:
    title, _ = TEMPLATES[kind][lang]
    lab = _LABELS[lang]
    rows: list[tuple[str, str]] = []
    for e in evidence:
        rows += [(f"[{e.role}]", e.txn_id), (lab["card"], e.pan_masked or "-"),
                 (lab["amount"], money(e.amount_minor, e.currency)), (lab["rrn"], e.rrn or "-"),
                 (lab["auth"], e.auth_code or "-"), (lab["time"], _time(e.at))]
    return scrub(render_slip(title, rows, [f"{lab['done']}: {done}", POSTING[posting][lang]],
                                           columns))


_DONE: Final[dict[str, dict[str, str]]] = {
    "voided": {"zh": "已撤销", "en": "voided"},
    "refunded": {"zh": "已退货", "en": "refunded"},
    "corrected": {"zh": "已更正", "en": "corrected"},
    "reversed": {"zh": "已冲正", "en": "reversed"},
    "void_stands": {"zh": "撤销有效，无需再处理", "en": "the void stands; nothing more to do"},
    "settled": {"zh": "已结算", "en": "settled"},
    "signed": {"zh": "已签名", "en": "signed"},
}


def notice_for(ctx: FlowContext, outcome: FlowOutcome, request: FlowRequest) -> Notice | None:
    """The customer notice for a finished flow, or None when there is nothing to tell the customer."""
    if outcome.outcome in ("refused", "awaiting_confirmation", "pending", "kept_at_merchant_risk"):
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
    for lang in ctx.policies.languages:
        done = _DONE[done_key][lang]
        notice.texts[lang] = render_notice(outcome.kind, lang, evidence, done, posting)
        notice.slips[lang] = render_evidence_slip(outcome.kind, lang, evidence, done, posting,
                                                  ctx.policies.printer_columns)
    return notice
