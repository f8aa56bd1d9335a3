"""CVM list evaluation -> 9F34, including every signature case (EMV Book 3 10.5)."""

from __future__ import annotations

import pytest

from posguard.emv import cvm
from posguard.emv.cvm import CvmContext, CvmRule, evaluate

SIG_ONLINE_NOCVM = bytes.fromhex("E06800")  # online PIN, signature, no CVM
NO_PINPAD = bytes.fromhex("E02800")  # signature, no CVM
ONLY_NOCVM = bytes.fromhex("E00800")
WITH_OFFLINE_PIN = bytes.fromhex("E0E800")  # + plaintext offline PIN


def ctx(caps: bytes = SIG_ONLINE_NOCVM, amount: int = 1000, txn_type: int = 0x00, app_cur: str | None = "0156",
        unattended: bool = False) -> CvmContext:
    return CvmContext(amount=amount, transaction_currency="0156", application_currency=app_cur,
                      transaction_type=txn_type, unattended=unattended, capabilities=caps)


def cvm_list(*rules: str, x: int = 0, y: int = 0) -> bytes:
    return x.to_bytes(4, "big") + y.to_bytes(4, "big") + bytes.fromhex("".join(rules))


@pytest.mark.parametrize(
    ("rules", "caps", "method", "results", "signature"),
    [
        # signature always
        (["1E00"], SIG_ONLINE_NOCVM, "signature", "1E0000", True),
        # signature "if terminal supports", apply-next set
        (["5E03", "1F03"], SIG_ONLINE_NOCVM, "signature", "5E0300", True),
        # signature not supported -> falls to no CVM (apply next)
        (["5E00", "1F00"], ONLY_NOCVM, "none", "1F0002", False),
        # online PIN first when supported (UnionPay profile: 42 03, 1E 03, 1F 03)
        (["4203", "1E03", "1F03"], SIG_ONLINE_NOCVM, "online_pin", "420300", False),
        # no PIN pad: condition 03 not satisfied for online PIN -> signature
        (["4203", "1E03", "1F03"], NO_PINPAD, "signature", "1E0300", True),
        # online PIN "always" but unsupported, apply next -> signature
        (["4200", "1E00"], NO_PINPAD, "signature", "1E0000", True),
        # no CVM required
        (["1F00"], SIG_ONLINE_NOCVM, "none", "1F0002", False),
        # combined offline PIN + signature not supported (no PIN performer) -> signature next
        (["4300", "1E00"], SIG_ONLINE_NOCVM, "signature", "1E0000", True),
        # fail CVM processing
        (["0000"], SIG_ONLINE_NOCVM, "failed", "000001", False),
        # unsupported without apply-next: verification fails on that rule
        (["0200", "1E00"], NO_PINPAD, "failed", "020001", False),
        # no condition satisfied at all
        (["1E05"], SIG_ONLINE_NOCVM, "failed", "3F0001", False),
        # unrecognised CVM code with apply next -> next rule
        (["7A00", "1F00"], SIG_ONLINE_NOCVM, "none", "1F0002", False),
    ],
)
def test_cvm_table(rules: list[str], caps: bytes, method: str, results: str, signature: bool) -> None:
    out = evaluate(cvm_list(*rules), ctx(caps))
    assert out.method == method
    assert out.results.hex().upper() == results
    assert out.signature_required is signature


def test_signature_result_byte_is_unknown() -> None:
    out = evaluate(cvm_list("1E00"), ctx())
    assert out.results[2] == cvm.RESULT_UNKNOWN
    assert out.results[0] & 0x3F == cvm.SIGNATURE


def test_failed_sets_tvr_cardholder_verification_not_successful() -> None:
    assert evaluate(cvm_list("0000"), ctx()).tvr3 & cvm.TVR3_CV_FAILED
    assert not evaluate(cvm_list("1E00"), ctx()).tvr3 & cvm.TVR3_CV_FAILED


def test_unrecognised_cvm_sets_tvr_bit() -> None:
    assert evaluate(cvm_list("7A00", "1F00"), ctx()).tvr3 & cvm.TVR3_UNRECOGNISED_CVM


def test_pin_required_without_pinpad_sets_tvr_bit() -> None:
    assert evaluate(cvm_list("4200", "1E00"), ctx(NO_PINPAD)).tvr3 & cvm.TVR3_NO_PINPAD


def test_missing_cvm_list_is_icc_data_missing() -> None:
    out = evaluate(None, ctx())
    assert out.results == bytes.fromhex("3F0000")
    assert out.tvr1 & cvm.TVR1_ICC_DATA_MISSING
    assert not out.performed


@pytest.mark.parametrize(("amount", "expected"), [(500, "signature"), (5000, "online_pin")])
def test_amount_conditions_use_x(amount: int, expected: str) -> None:
    # signature under X (06), online PIN over X (07)
    out = evaluate(cvm_list("5E06", "4207", "1F00", x=1000), ctx(amount=amount))
    assert out.method == expected


def test_amount_condition_needs_application_currency() -> None:
    out = evaluate(cvm_list("5E06", "1F00", x=1000), ctx(amount=500, app_cur="0840"))
    assert out.method == "none"


@pytest.mark.parametrize(("txn_type", "unattended", "expected"), [
    (0x01, False, "online_pin"),  # manual cash (04)
    (0x09, False, "signature"),  # purchase with cashback (05)
    (0x00, False, "none"),  # purchase: 02 satisfied
])
def test_transaction_type_conditions(txn_type: int, unattended: bool, expected: str) -> None:
    out = evaluate(cvm_list("4204", "5E05", "1F02"), ctx(txn_type=txn_type, unattended=unattended))
    assert out.method == expected


def test_offline_pin_performed_through_callback() -> None:
    seen: list[CvmRule] = []

    def perform(rule: CvmRule) -> tuple[bool, int]:
        seen.append(rule)
        return True, 0

    out = evaluate(cvm_list("4103", "1E03"), ctx(WITH_OFFLINE_PIN), perform)
    assert seen and seen[0].method == cvm.PLAIN_PIN_ICC
    assert out.method == "offline_pin" and out.results.hex().upper() == "410302"


def test_offline_pin_plus_signature_keeps_result_unknown() -> None:
    out = evaluate(cvm_list("0300"), ctx(WITH_OFFLINE_PIN), lambda rule: (True, 0))
    assert out.method == "offline_pin_and_signature"
    assert out.results.hex().upper() == "030000"
    assert out.signature_required


def test_failed_offline_pin_applies_next() -> None:
    out = evaluate(cvm_list("4103", "1E03"), ctx(WITH_OFFLINE_PIN), lambda rule: (False, cvm.TVR3_PIN_LIMIT_EXCEEDED))
    assert out.method == "signature"
    assert out.tvr3 & cvm.TVR3_PIN_LIMIT_EXCEEDED


@pytest.mark.parametrize("bad", [b"", bytes(7), bytes(9)])
def test_malformed_cvm_list_is_card_data_error(bad: bytes) -> None:
    from posguard.emv.errors import CardDataError

    if not bad:
        assert evaluate(bad, ctx()).results == bytes.fromhex("3F0000")
        return
    with pytest.raises(CardDataError, match="8E"):
        evaluate(bad, ctx())
