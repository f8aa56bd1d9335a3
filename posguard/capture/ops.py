"""The arguments of a capture's ``op`` records, declared as data (docs/capture-format.md, "Records": ``op``).

A hand-written ``op`` record missing an argument, or carrying one of the wrong type, is refused before the replay
runs it, with one line naming the record's line, the action and the argument (``line 4: operator action 'sale' cannot be
replayed: it needs "amount" (minor units, a whole number, e.g. 1250)``), never a Python error from deep inside the till.

The actions are listed once, here (:data:`OPERATOR_ACTIONS`: what each does, the till's ``OPS``, and its
arguments); an action not listed is refused with the list of those that are. ``None`` is allowed for
optional arguments: a recorder writes ``null`` for what it keeps out of a capture (a customer's contact, a local
file path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posguard.capture.errors import CaptureError

__all__ = ["OPERATOR_ACTIONS", "OpArg", "OperatorAction", "check_op"]


@dataclass(frozen=True)
class OpArg:
    """One argument of an operator action: the JSON types it may have and what it means (for the error)."""

    types: tuple[str, ...]  # "int" (a JSON number without a fraction), "str", "bool", "any" (checked later)
    meaning: str
    required: bool = True


_TXN = OpArg(("any",), "a transaction: its id, its STAN (5 or \"000005\") or \"last\" (checked when named)")
_AMOUNT = OpArg(("int",), "minor units, a whole number, e.g. 1250")
_CARD = OpArg(("str",), "the \"ref\" of a card record, e.g. \"c1\"")
_INCIDENT = OpArg(("int",), "the incident's number: 1 for the first incident of the replay, 2 for the next...")
_CONTACT = OpArg(("str",), "phone:NUMBER or email:ADDRESS", required=False)

@dataclass(frozen=True)
class OperatorAction:
    """One operator action: what it does and its arguments as the operator reads them (the till's help, its
    ``OPS``), and its arguments as data (what :func:`check_op` checks)."""

    does: str
    args: dict[str, OpArg]


#: operator action -> what it does and its arguments (posguard/service/till.py runs it as ``_op_<action>``)
OPERATOR_ACTIONS: dict[str, OperatorAction] = {
    "sale": OperatorAction(
        "card, amount[, order][, override] (card: the card the customer presents, read for this sale at its "
        "amount; override: charge an order that is already paid)",
        {"card": _CARD, "amount": _AMOUNT, "order": OpArg(("str",), "the order number", required=False),
         "override": OpArg(("bool",), "true: charge an order that is already paid", required=False)}),
    "sign": OperatorAction(
        "txn[, esig (path of the e-signature file)][, paper (the operator saw the merchant copy re-signed)]",
        {"txn": _TXN, "esig": OpArg(("str",), "path of the e-signature file", required=False),
         "paper": OpArg(("bool",), "true: the merchant copy was re-signed", required=False)}),
    "signature_refused": OperatorAction(
        "txn[, contact (phone:NUMBER or email:ADDRESS)] (the customer left: a follow-up task)",
        {"txn": _TXN, "contact": _CONTACT}),
    "unsigned_contacted": OperatorAction("txn[, contact] (the customer was contacted about signing)",
                                         {"txn": _TXN, "contact": _CONTACT}),
    "unsigned_keep": OperatorAction("txn (the merchant keeps the unsigned sale at its own risk)", {"txn": _TXN}),
    "unsigned_void": OperatorAction(
        "txn (the customer agreed to cancel instead of signing: void, or refund after settlement)", {"txn": _TXN}),
    "unsigned_escalate": OperatorAction(
        "txn (a system fault, e.g. the signature pad failed: escalated to the bank)", {"txn": _TXN}),
    "void": OperatorAction("txn", {"txn": _TXN}),
    "refund": OperatorAction("txn, amount", {"txn": _TXN, "amount": _AMOUNT}),
    "wrong_card": OperatorAction("txn, card (the card the customer meant: presented and read for the new sale)",
                                 {"txn": _TXN, "card": _CARD}),
    "wrong_amount": OperatorAction("txn, amount (the order total that should have been charged)",
                                   {"txn": _TXN, "amount": _AMOUNT}),
    "dispute": OperatorAction("txn (the customer says the void/refund never arrived)", {"txn": _TXN}),
    "confirm": OperatorAction("incident (awaiting confirmation: run its correction)", {"incident": _INCIDENT}),
    "decline": OperatorAction("incident (awaiting confirmation: nothing to correct; close it)",
                              {"incident": _INCIDENT}),
    "flush": OperatorAction("", {}),
    "settle": OperatorAction("", {}),
    "reconcile": OperatorAction(
        "report (path of the acquirer's settlement report)[, batch]",
        {"report": OpArg(("any",), "the acquirer's report: inline (JSON document, rows or CSV text) or the path "
                                   "of a file"),
         "batch": OpArg(("int",), "the batch number", required=False)}),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    return kind == "any"


def check_op(rec: dict[str, Any], line: int) -> None:
    """Refuse an ``op`` record whose arguments its action cannot take (:class:`CaptureError` naming the line)."""
    op = rec["op"]
    action = OPERATOR_ACTIONS.get(op)
    if action is None:
        raise CaptureError(line, f"unknown operator action {op!r}; known: {', '.join(OPERATOR_ACTIONS)}")
    spec = action.args
    args = {k: v for k, v in rec.items() if k not in ("t", "k", "op")}
    for name, arg in spec.items():
        if name not in args or args[name] is None and arg.required:
            if arg.required:
                raise CaptureError(line, f"operator action {op!r} cannot be replayed: it needs \"{name}\" "
                                         f"({arg.meaning})")
            continue
        value = args[name]
        if value is not None and not any(_is(value, kind) for kind in arg.types):
            raise CaptureError(line, f"operator action {op!r} cannot be replayed: \"{name}\" is "
                                     f"{json_type(value)} {value!r:.40}; it must be {arg.meaning}")
    unknown = sorted(set(args) - set(spec))
    if unknown:
        known = ", ".join(f'"{n}"' for n in spec) or "no arguments"
        raise CaptureError(line, f"operator action {op!r} cannot be replayed: it takes no \"{unknown[0]}\" "
                                 f"(it takes {known})")


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for an error an author reads."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
