"""The scripted trading day, as data: cards presented, host faults injected (simulator only) and operator actions.

``$last`` in an argument is the transaction id of the latest sale the operator rang up.
"""

from __future__ import annotations

from typing import Any

Step = tuple[str, dict[str, Any]]

#: (card reference, simulator profile)
CARDS = (("c1", "visa_credit_sig"), ("c2", "unionpay_debit_pin"), ("c3", "mastercard_nocvm"))
#: cards swiped on the serial magstripe reader: (card reference, simulator profile, profile overrides); service
#: code 101 is a stripe-only card (a swipe, not a chip fallback)
SWIPES: tuple[tuple[str, str, dict[str, str]], ...] = (("s1", "visa_credit_sig", {"service_code": "101"}),)

#: the encrypting PIN pad of the demo (test keys only): the pad's TMK (its key injection: the terminal's TMK, so the
#: working PIN key each sign-on brings under it loads into the pad as it came), the host's PIN key before any
#: sign-on (the host simulator's configured test key; after a sign-on it checks with the key it issued) and the
#: UnionPay debit card's PIN, keyed on the pad simulator's control channel (the cardholder)
PIN_PAD_TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PIN_PAD_KEY = bytes.fromhex("5B6A79880F1E2D3C4B5A69781F2E3D4C")
CARD_PIN = "246800"
PIN_PAD: dict[str, Any] = {"tmk": PIN_PAD_TMK, "pin_key": PIN_PAD_KEY, "card_pins": {"6250947000000014": CARD_PIN}}
PIN_CARDS = frozenset({"unionpay_debit_pin"})  # the profiles whose CVM list asks for online PIN first

#: the day in segments: normal trading, then one segment per error kind (the captures in tests/captures are
#: recorded from "normal" + one segment each)
SEGMENTS: dict[str, tuple[Step, ...]] = {
    "normal": (
        ("say", {"text": "normal trading"}),
        ("op", {"op": "sale", "card": "c1", "amount": 12_50}),                  # signature card
        ("op", {"op": "sign", "txn": "$last"}),
        ("op", {"op": "sale", "card": "c2", "amount": 88_00}),                  # online PIN
        ("op", {"op": "sale", "card": "c3", "amount": 30_00}),                  # no CVM
        ("op", {"op": "sale", "card": "s1", "amount": 19_99}),                  # swiped: the slip is signed
        ("op", {"op": "sign", "txn": "$last"}),
    ),
    "reversal": (
        ("say", {"text": "the host stops answering a sale: the terminal reverses it"}),
        ("fault", {"kind": "no_response", "txn": "sale"}),
        ("op", {"op": "sale", "card": "c2", "amount": 77_00}),
    ),
    "duplicate_charge": (
        ("say", {"text": "duplicate charge: the host is slow, the cashier's register times out and sends the "
                         "order again"}),
        ("fault", {"kind": "delay", "txn": "sale", "delay": 0.5}),
        ("op", {"op": "sale", "card": "c3", "amount": 42_00, "order": "A-1042"}),
        ("op", {"op": "sale", "card": "c3", "amount": 42_00, "order": "A-1042"}),
    ),
    "wrong_card": (
        ("say", {"text": "wrong card: charged to the Visa, the customer meant the UnionPay card"}),
        ("op", {"op": "sale", "card": "c1", "amount": 45_00}),
        ("op", {"op": "sign", "txn": "$last"}),
        ("op", {"op": "wrong_card", "txn": "$last", "card": "c2"}),
    ),
    "wrong_amount": (
        ("say", {"text": "wrong amount: 100.00 keyed for a 10.00 order"}),
        ("op", {"op": "sale", "card": "c3", "amount": 100_00}),
        ("op", {"op": "wrong_amount", "txn": "$last", "amount": 10_00}),
    ),
    "void_mismatch": (
        ("say", {"text": "a void the customer disputes: the void's answer is lost, the engine reverses the void"}),
        ("op", {"op": "sale", "card": "c3", "amount": 60_00}),
        ("fault", {"kind": "no_response", "txn": "void"}),
        ("op", {"op": "void", "txn": "$last"}),
        ("op", {"op": "dispute", "txn": "$last"}),
    ),
    "unsigned": (
        ("say", {"text": "unsigned: the customer leaves without signing"}),
        ("op", {"op": "sale", "card": "c1", "amount": 25_00}),
        ("op", {"op": "signature_refused", "txn": "$last"}),
    ),
    "unsettled": (
        ("say", {"text": "the host booked a sale it answered 51 for: the batch will not balance; after the detail "
                         "upload nothing more is sent, and the acquirer's settlement report names the sale"}),
        ("fault", {"kind": "wrong_rc", "txn": "sale", "rc": "51"}),
        ("op", {"op": "sale", "card": "c3", "amount": 15_00}),
    ),
    "settle": (
        ("say", {"text": "end of day"}),
        ("op", {"op": "settle"}),
    ),
}
ERROR_KINDS = ("duplicate_charge", "wrong_card", "wrong_amount", "void_mismatch", "unsettled", "unsigned",
               "reversal")
DAY: tuple[Step, ...] = sum((SEGMENTS[k] for k in ("normal", "reversal", "duplicate_charge", "wrong_card",
                                                    "wrong_amount", "void_mismatch", "unsigned", "unsettled",
                                                    "settle")), ())


def day_for(kind: str) -> tuple[Step, ...]:
    """Normal trading, one error kind, and settlement where the kind shows only there."""
    tail = SEGMENTS["settle"] if kind == "unsettled" else ()
    return SEGMENTS["normal"] + SEGMENTS[kind] + tail
