"""The review list: every notice kind's exact text in both languages, as a native reader checks it.

Amounts carry the ISO 4217 symbol (Chinese) or code (English) and the currency's own decimals; every label,
including the leg names, is translated; times are the terminal's zone with the offset, while the journal keeps
UTC. A change to any wording must change this list, where a reviewer sees it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from posguard.flows import FlowPolicies
from posguard.notices import (
    TEMPLATES,
    Evidence,
    money,
    render_notice,
    reversal_notice,
    terminal_zone,
)
from posguard.service.till import Till
from tests.engine.conftest import card
from tests.flows.conftest import desk_for

SHANGHAI = terminal_zone("Asia/Shanghai")
SALE = Evidence("original", "TERM0001-00000001", "476173******0119", "318220000001", "A1B2C3", 4200, "156",
                1_700_000_000.0, "00")
REFUND = Evidence("refund", "TERM0001-00000002", "476173******0119", "318220000002", None, 1250, "156",
                  1_700_000_060.0, "00")

ZH_SALE = "[原交易] 卡号 476173******0119  金额 ¥42.00  参考号 318220000001  授权码 A1B2C3  时间 2023-11-15 06:13:20 +0800"
ZH_REFUND = "[退货] 卡号 476173******0119  金额 ¥12.50  参考号 318220000002  授权码 -  时间 2023-11-15 06:14:20 +0800"
EN_SALE = ("[original] Card 476173******0119  Amount CNY 42.00  RRN 318220000001  Auth code A1B2C3  "
           "Time 2023-11-15 06:13:20 +0800")
EN_REFUND = ("[refund] Card 476173******0119  Amount CNY 12.50  RRN 318220000002  Auth code -  "
             "Time 2023-11-15 06:14:20 +0800")

#: kind -> language -> (what happened, what was done), each line as a native reader signs it off
REVIEWED: dict[str, dict[str, tuple[str, str, str]]] = {
    "duplicate_charge": {
        "zh": ("重复扣款处理通知", "您的卡被重复扣款。我们保留了第一笔交易，并撤销了多扣的一笔。", "已退货"),
        "en": ("Duplicate charge", "Your card was charged twice. We kept the first charge and cancelled the extra one.",
               "refunded"),
    },
    "wrong_card": {
        "zh": ("刷错卡处理通知", "交易误用了另一张卡。我们已退回该卡的款项，并在正确的卡上重新收款。", "已退货"),
        "en": ("Wrong card charged", "The payment was taken from the wrong card. We returned it and charged the card "
               "you intended.", "refunded"),
    },
    "wrong_amount": {
        "zh": ("金额错误处理通知", "交易金额有误。我们已更正为正确的金额。", "已退货"),
        "en": ("Wrong amount", "The amount charged was wrong. We corrected it to the right amount.", "refunded"),
    },
    "void_mismatch": {
        "zh": ("撤销交易查询结果", "您询问撤销的款项是否已退回。以下是我们的核查结果。", "已退货"),
        "en": ("Void enquiry", "You asked whether a cancelled payment was returned. Here is what we found.",
               "refunded"),
    },
    "unsettled": {
        "zh": ("交易结算处理通知", "部分交易未能及时结算。我们已重新上送并完成结算。", "已退货"),
        "en": ("Settlement follow-up", "Some payments had not reached the bank. We sent them again and closed the "
               "batch.", "refunded"),
    },
    "unsettled_charged": {
        "zh": ("交易入账核查通知", "终端显示未成功的一笔交易已被银行入账。我们已请收单机构核查并撤销；如您已被扣款，款项将退回您的账户。",
               "已退货"),
        "en": ("Payment booked in error", "The bank booked a payment the terminal showed as not completed. We have "
               "asked the acquirer to cancel it; if you were charged, the money is returned to your account.",
               "refunded"),
    },
    "unsettled_missing": {
        "zh": ("交易未入账通知", "您的一笔付款尚未到达银行。我们正在与收单机构核实，该笔款项可能稍后才出现在您的账户中。", "已退货"),
        "en": ("Payment not yet booked", "Your payment has not reached the bank yet. We are checking it with the "
               "acquirer; it may show on your account later.", "refunded"),
    },
    "reversal": {
        "zh": ("交易冲正通知", "交易未能完成，本次扣款已取消；如有预留金额，将由您的发卡银行释放。", "已退货"),
        "en": ("Payment reversed", "The payment did not complete: the charge was cancelled; any hold is released by "
               "your bank.", "refunded"),
    },
    "unsigned": {
        "zh": ("签名补录通知", "交易需要您的签名。", "已退货"),
        "en": ("Signature", "This payment needs your signature.", "refunded"),
    },
}
WHEN = {"zh": "到账时间：退货款项通常在1至10个清算日内退回您的账户。",
        "en": "When: A refund takes 1 to 10 clearing days to show on your account."}


def test_every_kind_is_on_the_review_list() -> None:
    assert set(REVIEWED) == set(TEMPLATES)


@pytest.mark.parametrize("kind", sorted(REVIEWED))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_exact_text(kind: str, lang: str) -> None:
    title, happened, done = REVIEWED[kind][lang]
    if lang == "zh":
        expected = [title, "", "非常抱歉给您带来不便。", happened, "", f"处理结果：{done}", "", ZH_SALE, ZH_REFUND, "",
                    WHEN["zh"]]
    else:
        expected = [title, "", "We are sorry for the inconvenience.", happened, "", f"Done: {done}", "", EN_SALE,
                    EN_REFUND, "", WHEN["en"]]
    assert render_notice(kind, lang, [SALE, REFUND], done, "refund", SHANGHAI) == "\n".join(expected) + "\n"


def test_amounts_follow_iso_4217() -> None:
    assert [money(4200, "156", "zh"), money(4200, "156", "en"), money(4200, "CNY", "zh")] == \
        ["¥42.00", "CNY 42.00", "¥42.00"]
    assert money(1200, "392", "zh") == "JP¥1200" and money(1200, "392") == "JPY 1200"  # yen has no decimals
    assert money(1234, "048") == "BHD 1.234" and money(5, "840", "zh") == "US$0.05"
    assert money(-150, "978", "zh") == "-€1.50"


def test_times_are_the_terminals_zone_and_the_journal_stays_utc() -> None:
    text = render_notice("wrong_card", "en", [SALE], "voided", "void", terminal_zone("America/New_York"))
    assert "Time 2023-11-14 17:13:20 -0500" in text
    assert SALE.to_dict()["time"] == "2023-11-14 22:13:20"  # what the journal keeps: UTC
    with pytest.raises(ValueError, match=r"terminal.timezone: 'Nowhere/Else' is not an IANA time zone name"):
        terminal_zone("Nowhere/Else")


def test_automatic_reversal_tells_the_customer_the_charge_was_cancelled() -> None:
    """A sale with no answer in time is reversed by the engine; the till writes the customer a notice."""
    with tempfile.TemporaryDirectory() as tmp, desk_for("cup", Path(tmp)) as desk:
        desk.sim.add_fault("no_response", mti="0200")
        till = Till(desk.engine, dialect="cup", policies=FlowPolicies(timezone="Asia/Shanghai"))
        till.add_card("c1", card())
        result = till.do("sale", card="c1", amount=4200)
        assert result is not None and result.state == "reversed"
        (notice,) = till.notices
        txn = desk.journal.get_txn(result.txn_id)
        assert notice.kind == "reversal" and notice.posting == "reversal"
        zh, en = notice.texts["zh"], notice.texts["en"]
        assert "交易未能完成，本次扣款已取消；如有预留金额，将由您的发卡银行释放。" in zh and "处理结果：已冲正" in zh
        assert "the charge was cancelled; any hold is released by your bank." in en and "Done: reversed" in en
        assert f"[original] Card 476173******0119  Amount CNY 42.00  RRN {txn.rrn or '-'}" in en
        assert "+0800" in en and "4761739001010119" not in zh + en
        assert reversal_notice(txn, timezone_name="Asia/Shanghai").texts == notice.texts
