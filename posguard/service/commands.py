"""The operator's commands, declared as data, and the one parser that checks a line before anything acts.

Every argument is checked here — its kind, ASCII digits only, an amount from 1 to the dialect's field-4 limit
and the configured ceiling, a card number keyed where an amount belongs refused (and never repeated back or
stored) — so a bad line is refused with a reason *before* the card reader or the host is touched.

>>> parse("sale 1250 order=A-17", max_amount=100000)
Command(verb='sale', amount=1250, txn=None, order='A-17', incident=None, override=False)
>>> parse("refund POSGRD01-00000003", max_amount=100000)
Traceback (most recent call last):
...
posguard.service.commands.CommandError: refund needs AMOUNT: usage: refund TXN AMOUNT sup=CREDENTIAL
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from posguard.sensitive import luhn_ok

__all__ = ["Command", "CommandError", "Verb", "VERBS", "parse", "usage", "FIELD4_MAX"]

#: the largest amount field 4 (n 12) can carry, in minor units
FIELD4_MAX: Final = 999_999_999_999
_TXN = re.compile(r"[A-Za-z0-9]{1,16}-[0-9]{1,12}")
_ORDER = re.compile(r"[A-Za-z0-9._:/-]{1,40}")


@dataclass(frozen=True)
class Verb:
    name: str
    args: tuple[str, ...]  # positional: "txn", "amount"
    help: str
    reads_card: bool = False
    takes_order: bool = False
    gives_money_back: bool = False  # needs the supervisor's credential (sup=...)
    options: tuple[str, ...] = ()  # optional name=value words the verb takes besides order/override/sup


VERBS: Final[dict[str, Verb]] = {v.name: v for v in (
    Verb("sale", ("amount",), "read the card and charge AMOUNT (minor units: 1250 = 12.50); an order already "
         "paid is refused unless override=yes", True, True),
    Verb("swipe", ("amount",), "read a swipe on the magstripe reader and charge AMOUNT", True, True),
    Verb("void", ("txn",), "void TXN before settlement", gives_money_back=True),
    Verb("refund", ("txn", "amount"), "refund AMOUNT of TXN", gives_money_back=True),
    Verb("sign", ("txn",), "the customer signed TXN: esig=PATH keeps the pad's e-signature file as evidence; "
         "paper=yes confirms the merchant copy was re-signed; an unsigned TXN's follow-up ends signed later",
         options=("esig", "paper")),
    Verb("refuse", ("txn",), "the customer left without signing TXN: a follow-up task (contact=phone:NUMBER or "
         "email:ADDRESS, as the customer gave it)", options=("contact",)),
    Verb("contacted", ("txn",), "the customer of unsigned TXN was contacted about signing", options=("contact",)),
    Verb("keep", ("txn",), "keep unsigned TXN at the merchant's own risk (closes its follow-up)"),
    Verb("consent_void", ("txn",), "the customer of unsigned TXN agreed to cancel it: void (refund after "
         "settlement)", gives_money_back=True),
    Verb("pad_fault", ("txn",), "the signature pad failed for TXN: escalated to the bank (a system fault)"),
    Verb("wrong_card", ("txn",), "TXN went on the wrong card: read the right one", gives_money_back=True),
    Verb("wrong_amount", ("txn", "amount"), "TXN should have been AMOUNT", gives_money_back=True),
    Verb("dispute", ("txn",), "the customer says the void/refund of TXN never arrived", gives_money_back=True),
    Verb("confirm", ("incident",), "run the correction of INCIDENT, which awaits confirmation", gives_money_back=True),
    Verb("decline", ("incident",), "INCIDENT needs no correction (e.g. a genuine second purchase): close it"),
    Verb("settle", (), "close the batch with the host"),
    Verb("reconcile", ("report",), "compare the acquirer's settlement report (a CSV/JSON file on this box) with the "
         "journal, both ways; each batch's reconciliation incident is raised once"),
    Verb("flush", (), "send queued reversals and advices now"),
    Verb("cancel", (), "stop waiting for the card: the sale in progress ends, nothing is sent"),
    Verb("status", (), "batch, states, what is pending, the reader and the journal"),
    Verb("help", (), "this list"),
    Verb("quit", (), "stop the service"),
)}


class CommandError(ValueError):
    """A line the service will not act on; the message says what was wrong and how to write it."""


@dataclass(frozen=True)
class Command:
    verb: str
    amount: int | None = None
    txn: str | None = None
    order: str | None = None
    incident: int | None = None
    override: bool = False
    supervisor: str | None = field(default=None, repr=False)  # the credential as typed: never shown or stored
    report: str | None = field(default=None, repr=False)  # reconcile: the settlement report's path
    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the verb's own options, checked

    def option(self, name: str) -> str | None:
        return dict(self.options).get(name)


def usage(verb: Verb) -> str:
    words = ([verb.name] + [a.upper() for a in verb.args]
             + (["[order=REF]", "[override=yes]"] if verb.takes_order else [])
             + [f"[{o}=...]" for o in verb.options]
             + (["sup=CREDENTIAL"] if verb.gives_money_back else []))
    return " ".join(words)


def parse(line: str, *, max_amount: int) -> Command:
    """Check ``line`` completely; raise :class:`CommandError` naming what is wrong."""
    words = line.split()
    if not words:
        raise CommandError("empty command; try: help")
    name = words[0].lower()
    verb = VERBS.get(name)
    if verb is None:
        raise CommandError(f"unknown command {_shown(words[0])!r}; known: {', '.join(VERBS)}")
    positional = [w for w in words[1:] if "=" not in w]
    options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    allowed = (({"order", "override", "sup"} if verb.takes_order else set())
               | ({"sup"} if verb.gives_money_back else set()) | set(verb.options))
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CommandError(f"{name} takes no option {_shown(unknown[0])!r}: usage: {usage(verb)}")
    if len(positional) < len(verb.args):
        missing = verb.args[len(positional)].upper()
        raise CommandError(f"{name} needs {missing}: usage: {usage(verb)}")
    if len(positional) > len(verb.args):
        raise CommandError(f"{name} takes {len(verb.args)} argument(s), got {len(positional)}: usage: {usage(verb)}")
    values: dict[str, object] = {}
    for kind, word in zip(verb.args, positional, strict=True):
        values[kind] = (_amount(word, max_amount) if kind == "amount" else _incident(word) if kind == "incident"
                        else _report_path(word) if kind == "report" else _txn(word))
    order = options.get("order")
    if order is not None and not _ORDER.fullmatch(order):
        raise CommandError("order=REF: 1 to 40 ASCII letters, digits or . _ : / -")
    override = options.get("override")
    if override is not None and override != "yes":
        raise CommandError("override=yes is the only way to write it (charge an order that is already paid)")
    if verb.takes_order and options.get("sup") is not None and override != "yes":
        raise CommandError(f"{name} takes no option 'sup' without override=yes (sup= approves an override)")
    own = tuple((k, _option(k, options[k])) for k in verb.options if k in options)
    return Command(name, amount=values.get("amount"), txn=values.get("txn"), order=order,  # type: ignore[arg-type]
                   incident=values.get("incident"), override=override == "yes",  # type: ignore[arg-type]
                   supervisor=options.get("sup"), options=own,
                   report=values.get("report"))  # type: ignore[arg-type]


def _option(name: str, value: str) -> str:
    """A verb's own option, checked: ``paper=yes``, ``esig=PATH``, ``contact=phone:...|email:...``."""
    if name == "paper" and value != "yes":
        raise CommandError("paper=yes is the only way to write it (the merchant copy was re-signed)")
    if name == "esig" and not value:
        raise CommandError("esig=PATH: the path of the e-signature file from the pad")
    if name == "contact":
        from posguard.flows.unsigned_follow_up import ContactError, parse_contact

        try:
            parse_contact(value)
        except ContactError as exc:
            raise CommandError(str(exc)) from None
    return value


def _amount(word: str, max_amount: int) -> int:
    if not (word.isascii() and word.isdigit()):
        raise CommandError(f"amount {_shown(word)!r} is not a whole number of minor units written in ASCII digits "
                           "(1250 = 12.50)")
    if 13 <= len(word) <= 19 and luhn_ok(word):
        raise CommandError("that amount looks like a card number; it was not used or stored. Key the amount in "
                           "minor units (1250 = 12.50)")
    value = int(word)
    ceiling = min(max_amount, FIELD4_MAX)
    if not 1 <= value <= ceiling:
        raise CommandError(f"amount must be from 1 to {ceiling} minor units (terminal.max_amount), not {_shown(word)}")
    return value


def _incident(word: str) -> int:
    if not (word.isascii() and word.isdigit() and 1 <= len(word) <= 9):
        raise CommandError(f"{_shown(word)!r} is not an incident number (see `posguard incidents list`)")
    return int(word)


_REPORT_PATH = re.compile(r"[A-Za-z0-9._/+@-]{1,1024}")


def _report_path(word: str) -> str:
    """A settlement report's path: plain ASCII (letters, digits, ``. _ / + @ -``), at most 1024 characters."""
    if not _REPORT_PATH.fullmatch(word) or word.endswith("/"):
        raise CommandError(f"{_shown(word)!r} is not a report file path (ASCII letters, digits, . _ / + @ -), e.g. "
                           "/var/lib/posguard/reports/2026-11-30.csv")
    return word


def _txn(word: str) -> str:
    if not _TXN.fullmatch(word):
        raise CommandError(f"{_shown(word)!r} is not a transaction id (like POSGRD01-00000005; see status)")
    return word


def _shown(text: str) -> str:
    """What the operator typed, safe to repeat: digit runs that could be a card number masked, kept short."""
    from posguard.sensitive import scrub

    clipped = text if len(text) <= 40 else text[:37] + "..."
    return scrub(clipped)
