"""The transaction state chart, declared as data.

``STATES`` and ``TRANSITIONS`` below are the whole specification; ``STATE_GROUPS`` names the sets of states
the rest of posguard asks about ("does the charge stand?"). From them we build

* one :class:`transitions.Machine` per transaction kind (:func:`build_machine`), the reference executor;
* a compiled lookup table (:class:`Chart`) with the same semantics, used on the engine's hot path
  (the test-suite checks the two agree on every (kind, state, event));
* a text table (:func:`render_table`) and a Graphviz graph (:func:`render_dot`) for people.

An event that the chart does not allow raises :class:`IllegalTransition`, which names the transaction,
its state and the event; the engine journals every refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "KINDS",
    "FINANCIAL_KINDS",
    "QUEUE_KINDS",
    "STATES",
    "STATE_GROUPS",
    "CHARGE_STANDS",
    "APPROVED_OPEN",
    "IN_DOUBT",
    "UNRESOLVED",
    "TRANSITIONS",
    "Transition",
    "Chart",
    "CHART",
    "IllegalTransition",
    "build_machine",
    "render_table",
    "render_dot",
]

#: Financial transactions live in the ``transactions`` table; reversals and advices in the SAF queue.
FINANCIAL_KINDS: Final = ("sale", "void", "refund", "preauth", "completion")
QUEUE_KINDS: Final = ("reversal", "advice")
KINDS: Final = FINANCIAL_KINDS + QUEUE_KINDS

#: Every state, with what it means. Order is the order of a normal life.
STATES: Final[Mapping[str, str]] = {
    "created": "operator started the transaction; nothing sent",
    "card_read": "card data captured (token + masked PAN, field 55)",
    "request_journaled": "STAN allocated, request and armed reversal durable; about to send",
    "sent": "request handed to the host link; outcome unknown until a response",
    "not_sent": "the link failed before the request left the terminal; reversal disarmed",
    "approved": "host approved (RC 00)",
    "declined": "host declined (RC other than 00)",
    "timed_out": "no response in time; a reversal is due",
    "response_invalid": "a response arrived but did not match/validate; a reversal is due",
    "signature_pending": "approved with a signature CVM; waiting for the signature",
    "signed": "signature captured",
    "unsigned": "signature deadline passed or batch closed without a signature",
    "reversal_pending": "a reversal for this transaction is queued and not yet acknowledged",
    "reversed": "the host acknowledged the reversal (00/12/25); no charge stands",
    "reversal_failed": "the reversal expired unacknowledged; needs manual follow-up",
    "unresolved": "an advice (e.g. CUP refund 0220) expired unacknowledged; needs manual follow-up",
    "cancelled": "abandoned before the request was journaled; nothing was sent",
    "voided": "a void for this transaction was approved",
    "refunded_partial": "refunds approved for part of the amount",
    "refunded": "refunds approved for the whole amount",
    "completed": "pre-authorisation completed",
    "uploaded": "advice / TC uploaded to the host",
    "settled": "included in a closed, balanced batch",
    # queue items (reversal, advice)
    "armed": "queued but held: the original request is being sent",
    "queued": "due to be sent before the next transaction and before settlement",
    "acknowledged": "host acknowledged the queued message",
    "expired": "gave up after the configured retries/expiry; incident raised",
    "disarmed": "withdrawn: the original request never left the terminal",
}

#: State groups, declared once. Every "does the charge stand?" or "is the outcome known?" in posguard reads these.
STATE_GROUPS: Final[Mapping[str, frozenset[str]]] = {
    # money taken from the cardholder and not given back in full. A completed pre-authorisation is not here:
    # its money is carried by its completion transaction, and counting both would count it twice.
    "charge_stands": frozenset({"approved", "signature_pending", "signed", "unsigned", "uploaded", "settled",
                                "refunded_partial"}),
    # approved by the host and still in the open batch, neither corrected nor settled
    "approved_open": frozenset({"approved", "signature_pending", "signed", "unsigned", "uploaded"}),
    # the host may or may not hold it: the engine is still finding out (a reversal or advice is due or queued)
    "in_doubt": frozenset({"request_journaled", "sent", "timed_out", "response_invalid", "reversal_pending"}),
    # in doubt, or given up on by the queue: nobody knows what the host holds until a person checks
    "unresolved": frozenset({"request_journaled", "sent", "timed_out", "response_invalid", "reversal_pending",
                             "reversal_failed"}),
}
CHARGE_STANDS: Final = STATE_GROUPS["charge_stands"]
APPROVED_OPEN: Final = STATE_GROUPS["approved_open"]
IN_DOUBT: Final = STATE_GROUPS["in_doubt"]
UNRESOLVED: Final = STATE_GROUPS["unresolved"]

_ONLINE = ("sale", "void", "refund", "preauth", "completion")
_ADVISED = ("refund", "completion")
_AFTER_APPROVAL = ("approved", "signed", "unsigned", "uploaded")


@dataclass(frozen=True)
class Transition:
    """One arrow of the chart: ``event`` moves ``kinds`` from any of ``sources`` to ``dest``."""

    event: str
    sources: tuple[str, ...]
    dest: str
    kinds: tuple[str, ...]
    note: str = ""


def _t(event: str, sources: str | Iterable[str], dest: str, kinds: Iterable[str], note: str = "") -> Transition:
    src = (sources,) if isinstance(sources, str) else tuple(sources)
    return Transition(event, src, dest, tuple(kinds), note)


TRANSITIONS: Final[tuple[Transition, ...]] = (
    # -- online request life -------------------------------------------------------------------
    _t("read_card", "created", "card_read", ("sale", "preauth", "refund", "void", "completion")),
    _t("journal_request", ("created", "card_read"), "request_journaled", _ONLINE, "write-ahead"),
    _t("send", "request_journaled", "sent", _ONLINE),
    _t("link_failed", ("request_journaled", "sent"), "not_sent", _ONLINE, "request never left"),
    _t("approve", "sent", "approved", _ONLINE),
    _t("decline", "sent", "declined", _ONLINE),
    _t("timeout", "sent", "timed_out", _ONLINE),
    _t("invalid_response", "sent", "response_invalid", _ONLINE),
    _t("recover", ("request_journaled", "sent"), "reversal_pending", _ONLINE, "found after a restart"),
    _t("arm_reversal", ("timed_out", "response_invalid"), "reversal_pending", _ONLINE),
    _t("card_declined", ("approved", "signature_pending"), "reversal_pending", ("sale", "preauth"),
       "2nd GENERATE AC said AAC (or never answered)"),
    _t("reversal_done", "reversal_pending", "reversed", _ONLINE),
    _t("reversal_expired", "reversal_pending", "reversal_failed", _ONLINE),
    _t("reversal_done", "reversal_failed", "reversed", _ONLINE, "manual retry succeeded"),
    _t("abandon", ("created", "card_read"), "cancelled", _ONLINE, "crash or operator cancel before journaling"),
    # non-reversible requests (CUP refund 0220, international completion 0220) are repeated as advices
    _t("recover_advice", ("request_journaled", "sent"), "timed_out", _ADVISED, "found after a restart"),
    _t("advice_accepted", ("timed_out", "response_invalid"), "approved", _ADVISED),
    _t("advice_rejected", ("timed_out", "response_invalid"), "declined", _ADVISED),
    _t("advice_expired", ("timed_out", "response_invalid"), "unresolved", _ADVISED),
    # -- signature ----------------------------------------------------------------------------
    _t("require_signature", "approved", "signature_pending", ("sale", "preauth", "completion")),
    _t("sign", ("signature_pending", "unsigned"), "signed", ("sale", "preauth", "completion")),
    _t("signature_deadline", "signature_pending", "unsigned", ("sale", "preauth", "completion")),
    # -- corrections on an approved original --------------------------------------------------------
    _t("void", _AFTER_APPROVAL + ("signature_pending",), "voided", ("sale", "preauth", "refund", "completion")),
    _t("void_undone", "voided", "approved", ("sale", "preauth", "refund", "completion"),
       "the void itself was reversed"),
    _t("reverse_approved", _AFTER_APPROVAL + ("signature_pending",), "reversal_pending",
       ("void",), "reversal of an approved void (undoes the void)"),
    _t("refund_partial", _AFTER_APPROVAL + ("settled", "refunded_partial"), "refunded_partial",
       ("sale", "completion")),
    _t("refund_full", _AFTER_APPROVAL + ("settled", "refunded_partial"), "refunded", ("sale", "completion")),
    _t("complete", _AFTER_APPROVAL, "completed", ("preauth",)),
    _t("upload", ("approved", "signed", "unsigned"), "uploaded", ("sale", "refund", "completion", "void")),
    _t("settle", _AFTER_APPROVAL, "settled", ("sale", "refund", "completion", "void")),
    _t("settle", "signature_pending", "settled", ("sale", "completion"), "batch closed; unsigned detector fires"),
    # -- queued reversals and advices (store-and-forward) ------------------------------------------
    _t("arm", "created", "armed", QUEUE_KINDS, "journaled before the original is sent"),
    _t("release", "armed", "queued", QUEUE_KINDS, "original outcome unknown: must be sent"),
    _t("enqueue", "created", "queued", QUEUE_KINDS),
    _t("disarm", "armed", "disarmed", QUEUE_KINDS, "original answered, or never left"),
    _t("send", "queued", "sent", QUEUE_KINDS),
    _t("acknowledge", "sent", "acknowledged", QUEUE_KINDS),
    _t("retry", "sent", "queued", QUEUE_KINDS, "timeout/link error/unexpected RC: repeat as 0401/0421"),
    _t("expire", ("queued", "sent"), "expired", QUEUE_KINDS),
    _t("requeue", "expired", "queued", QUEUE_KINDS, "operator retries an expired item"),
)


class IllegalTransition(Exception):
    """An event the state chart does not allow in the transaction's current state.

    The engine journals every refusal; nothing was changed and nothing was sent.
    """

    def __init__(self, txn_id: str, kind: str, state: str, event: str) -> None:
        allowed = sorted(CHART.events_from(kind, state)) if kind in CHART.kinds else []
        hint = f"allowed from {state!r}: {', '.join(allowed)}" if allowed else f"{state!r} is final"
        super().__init__(
            f"transaction {txn_id} ({kind}) is {state!r}; event {event!r} is not allowed ({hint}). "
            f"Nothing was changed; check the transaction with `posguard engine chart`."
        )
        self.txn_id = txn_id
        self.kind = kind
        self.state = state
        self.event = event


class Chart:
    """The compiled chart: ``(kind, state, event) -> next state`` lookups in O(1)."""

    def __init__(self, states: Mapping[str, str], transitions: Iterable[Transition]) -> None:
        self.states = dict(states)
        self.transitions = tuple(transitions)
        self.kinds: tuple[str, ...] = KINDS
        table: dict[tuple[str, str, str], str] = {}
        for tr in self.transitions:
            if tr.dest not in self.states:
                raise ValueError(f"transition {tr.event!r} goes to unknown state {tr.dest!r}")
            for kind in tr.kinds:
                if kind not in self.kinds:
                    raise ValueError(f"transition {tr.event!r} names unknown kind {kind!r}")
                for src in tr.sources:
                    if src not in self.states:
                        raise ValueError(f"transition {tr.event!r} leaves unknown state {src!r}")
                    key = (kind, src, tr.event)
                    if key in table and table[key] != tr.dest:
                        raise ValueError(f"ambiguous chart: {key} -> {table[key]!r} and {tr.dest!r}")
                    table[key] = tr.dest
        self._table = table

    def next_state(self, kind: str, state: str, event: str, *, txn_id: str = "?") -> str:
        """The state ``event`` leads to, or raise :class:`IllegalTransition`."""
        try:
            return self._table[(kind, state, event)]
        except KeyError:
            raise IllegalTransition(txn_id, kind, state, event) from None

    def allows(self, kind: str, state: str, event: str) -> bool:
        return (kind, state, event) in self._table

    def events_from(self, kind: str, state: str) -> set[str]:
        return {e for (k, s, e) in self._table if k == kind and s == state}

    def states_of(self, kind: str) -> list[str]:
        """States reachable for ``kind`` (in declaration order)."""
        used = {"created"} | {s for (k, s, _e) in self._table if k == kind}
        used |= {d for (k, _s, _e), d in self._table.items() if k == kind}
        return [s for s in self.states if s in used]

    def final_states(self, kind: str) -> list[str]:
        return [s for s in self.states_of(kind) if not self.events_from(kind, s)]

    def rows(self, kind: str | None = None) -> list[tuple[str, str, str, str, str]]:
        """``(kind, from, event, to, note)`` rows in declaration order."""
        out = []
        for tr in self.transitions:
            for k in tr.kinds:
                if kind is None or k == kind:
                    for src in tr.sources:
                        out.append((k, src, tr.event, tr.dest, tr.note))
        return out

    @property
    def table(self) -> Mapping[tuple[str, str, str], str]:
        return self._table


CHART: Final = Chart(STATES, TRANSITIONS)


def build_machine(kind: str, model: Any = None, initial: str = "created") -> Any:
    """A :class:`transitions.Machine` for ``kind`` built from the same declarations.

    ``model`` defaults to the machine itself. Illegal events raise :class:`transitions.MachineError`.
    """
    from transitions import Machine

    trs = [
        {"trigger": tr.event, "source": list(tr.sources), "dest": tr.dest}
        for tr in TRANSITIONS
        if kind in tr.kinds
    ]
    return Machine(
        model=model if model is not None else "self",
        states=CHART.states_of(kind),
        transitions=trs,
        initial=initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )


def render_table(kind: str | None = None) -> str:
    """A plain-text table of the chart (one line per arrow)."""
    rows = CHART.rows(kind)
    head = ("kind", "from", "event", "to", "note")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:4], widths, strict=True)) + "  note"]
    lines.append("  ".join("-" * w for w in widths) + "  ----")
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + ("  " + r[4] if r[4] else ""))
    lines.append("")
    lines.append("states:")
    for name, desc in STATES.items():
        lines.append(f"  {name:<18} {desc}")
    lines.append("")
    lines.append("state groups:")
    for group, members in STATE_GROUPS.items():
        lines.append(f"  {group:<18} {', '.join(s for s in STATES if s in members)}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_dot(kind: str | None = None) -> str:
    """A Graphviz ``digraph`` of the chart, one cluster per kind."""
    kinds = [kind] if kind else list(KINDS)
    out = ["digraph posguard_transactions {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for k in kinds:
        out.append(f'  subgraph "cluster_{k}" {{')
        out.append(f'    label="{k}";')
        for s in CHART.states_of(k):
            shape = ", peripheries=2" if s in CHART.final_states(k) else ""
            out.append(f'    "{k}.{s}" [label="{s}"{shape}];')
        seen: set[tuple[str, str, str]] = set()
        for _k, src, event, dest, _note in CHART.rows(k):
            if (src, event, dest) in seen:
                continue
            seen.add((src, event, dest))
            out.append(f'    "{k}.{src}" -> "{k}.{dest}" [label="{event}"];')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"
