"""Incidents as operators read them: time, kind, cause, transactions and messages (masked), steps with
response codes, outcome and the customer notice.

Flow incidents are ``incidents`` rows of kind ``flow:<kind>`` plus their ``flow_step``/``flow_outcome``
events (see :mod:`posguard.flows.base`). The engine's own incidents (``outcome_unknown``,
``recovered_in_flight``, ``settlement_failed``, ...) are listed too, with a cause derived from their kind.
Everything here is read from the journal, which holds card data only masked; a last pass masks any
12-19 digit run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from posguard.engine.chart import CHARGE_STANDS
from posguard.engine.journal import Journal, JournalError
from posguard.flows.outcomes import LEAVES_OPEN
from posguard.sensitive import mask_digits_in_text, scrub

__all__ = ["Incident", "IncidentReport", "load_incidents", "get_incident", "render_incident", "render_list", "OPEN_OUTCOMES",
           "close_incident", "resolve_by_hand",
           "ENGINE_CAUSES"]

#: outcomes that leave the incident open (someone still has to act); no outcome yet leaves it open too
OPEN_OUTCOMES: frozenset[str | None] = frozenset({*LEAVES_OPEN, None})
#: engine incident kind -> cause
ENGINE_CAUSES = {"outcome_unknown": "network", "recovered_in_flight": "device_fault",
                 "settlement_failed": "network", "upload_failed": "host",
                 "reversal_or_advice_pending": "network", "reversal_or_advice_expired": "network",
                 "batch_not_closed": "operator_input", "card_declined_after_approval": "card"}


@dataclass
class Incident:
    id: int
    at: float
    kind: str
    cause: str
    status: str  # open | closed | recorded
    outcome: str | None
    message: str
    txn_ids: list[str] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    notice: dict[str, Any] | None = None
    reason: str = ""
    amount_at_risk: int = 0
    source: str = "flow"  # flow | engine
    operator: str | None = None  # who asked for or approved the correction (e.g. "supervisor S01")
    #: what the steps kept as evidence or as a task: e-signature sha256/path, follow-up deadline and masked contact,
    #: escalation to the bank
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id, "at": self.at, "time": _iso(self.at), "kind": self.kind, "cause": self.cause,
            "status": self.status, "outcome": self.outcome, "message": self.message, "txn_ids": self.txn_ids,
            "transactions": self.transactions, "messages": self.messages, "steps": self.steps,
            "notice": self.notice, "reason": self.reason, "amount_at_risk": self.amount_at_risk,
            "source": self.source, "operator": self.operator, "evidence": self.evidence,
        }
        return json.loads(scrub(json.dumps(d, ensure_ascii=False)))  # type: ignore[no-any-return]


@dataclass
class IncidentReport:
    """An incident as the till met it, live or in a replay: what was detected (or claimed), by which rule, on
    which transactions, which flow corrected it, the wire evidence it sent (card data removed) and the outcome.

    ``incident_id`` points at the journal's :class:`Incident` (``posguard incidents show ID``) when a flow
    opened one; it is ``None`` for what the engine did on its own and for what is seen on the wire alone.
    """

    kind: str
    rule: str
    transactions: list[str]
    flow: str | None
    messages: list[str]
    outcome: str
    detail: str = ""
    mtis: list[str] = field(default_factory=list)
    incident_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"incident": self.kind, "rule": self.rule, "transactions": self.transactions, "flow": self.flow,
                "messages": self.messages, "outcome": self.outcome, "detail": mask_digits_in_text(self.detail),
                "incident_id": self.incident_id}

    def line(self) -> str:
        msgs = " ".join(self.mtis) or f"{len(self.messages)}" if self.messages else "none"
        return (f"INCIDENT {self.kind} [{self.rule}] txns {', '.join(self.transactions) or '-'} -> "
                f"flow {self.flow or '-'}: {self.outcome} (messages: {msgs})"
                + (f" — {mask_digits_in_text(self.detail)}" if self.detail else ""))


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _detail(raw: str | None) -> dict[str, Any]:
    value = json.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {}


def _txn_view(journal: Journal, txn_id: str) -> dict[str, Any] | None:
    try:
        t = journal.get_txn(txn_id)
    except JournalError:
        return None
    return {"id": t.id, "kind": t.kind, "state": t.state, "amount_minor": t.amount_minor, "currency": t.currency,
            "pan_masked": t.pan_masked, "stan": t.stan, "rrn": t.rrn, "auth_code": t.auth_code,
            "response_code": t.response_code, "batch_no": t.batch_no, "original_id": t.original_id}


def _build(journal: Journal, row: Any, with_detail: bool) -> Incident:
    detail = _detail(row["detail"])
    kind = str(row["kind"])
    if kind.startswith("flow:"):
        iid = int(row["id"])
        events = journal.flow_events(iid)
        steps: dict[str, dict[str, Any]] = {}
        outcome: dict[str, Any] = {}
        evidence: dict[str, Any] = {}
        for ev in events:
            d = _detail(ev["detail"])
            if ev["kind"] == "flow_outcome":
                outcome = d
                continue
            s = steps.setdefault(d["step"], {"name": d["step"]})
            s.update({k: d[k] for k in ("status", "detail", "txn_id", "rc") if k in d and d[k] is not None})
            s["at"] = _iso(float(ev["at"]))
            _keep_evidence(evidence, d)
        request = detail.get("request", {})
        txn_ids = list(request.get("txn_ids", []))
        for s in steps.values():
            if s.get("txn_id") and s["txn_id"] not in txn_ids:
                txn_ids.append(s["txn_id"])
        result = outcome.get("outcome")
        status = "open" if result in OPEN_OUTCOMES else "closed"
        inc = Incident(iid, float(row["at"]), kind[5:], str(detail.get("cause", "unknown")), status, result,
                       str(row["message"]), txn_ids, steps=list(steps.values()), notice=outcome.get("notice"),
                       reason=str(outcome.get("reason", "")), operator=outcome.get("by") or request.get("operator"),
                       evidence=evidence)
    else:
        txn_ids = [row["txn_id"]] if row["txn_id"] else []
        inc = Incident(int(row["id"]), float(row["at"]), kind, ENGINE_CAUSES.get(kind, "unknown"), "recorded",
                       None, str(row["message"]), txn_ids, source="engine")
    views = [v for v in (_txn_view(journal, t) for t in inc.txn_ids) if v is not None]
    if inc.status == "open" and views:
        inc.amount_at_risk = int(views[0]["amount_minor"])
    if with_detail:
        inc.transactions = views
        for t in inc.txn_ids:
            for m in journal.messages(t):
                inc.messages.append({"txn_id": t, "direction": m["direction"], "mti": m["mti"], "stan": m["stan"],
                                     "time": _iso(float(m["at"])), "fields": json.loads(m["masked"])})
    return inc


def _keep_evidence(evidence: dict[str, Any], step: dict[str, Any]) -> None:
    """What a step kept for the record (never a sealed value: only what may be shown)."""
    name = str(step.get("step", ""))
    if step.get("sha256"):
        evidence["e_signature_sha256"] = step["sha256"]
        evidence["e_signature_path"] = step.get("path")
    if name == "follow_up_opened" and step.get("deadline") is not None:
        evidence["follow_up_deadline"] = _iso(float(step["deadline"]))
    if step.get("contact") and step.get("status") == "done":
        evidence["contact"] = step["contact"]
    if name.startswith("contacted") and step.get("status") == "done":
        evidence["contacted"] = int(evidence.get("contacted", 0)) + 1
    if name == "escalated_to_bank":
        evidence["escalated_to_bank"] = step.get("detail", True)
    if name.startswith("record_paper_signature"):
        evidence["paper_signature_confirmed_by"] = step.get("operator")


def close_incident(journal: Journal, incident_id: int, outcome: str, reason: str, *, by: str | None = None) -> None:
    """Close an open flow incident by the operator's word or a correction done outside its flow."""
    with journal.atomic("incident_closed"):
        journal.record_event("flow_outcome", txn_id=None, detail={
            "incident": incident_id, "outcome": outcome, "reason": scrub(reason), "messages": 0, "notice": None,
            "by": by})


def resolve_by_hand(journal: Journal, txn_id: str, *, by: str | None = None) -> list[int]:
    """Close every open incident naming ``txn_id`` once its charge no longer stands (the operator voided or
    refunded it in full); returns the incidents closed."""
    if journal.get_txn(txn_id).state in CHARGE_STANDS:
        return []
    closed = []
    for inc in load_incidents(journal):
        if inc.source == "flow" and inc.status == "open" and txn_id in inc.txn_ids:
            close_incident(journal, inc.id, "resolved_by_operator",
                           f"{txn_id} was corrected by hand ({journal.get_txn(txn_id).state})", by=by)
            closed.append(inc.id)
    return closed


def load_incidents(journal: Journal, *, since: float | None = None, with_detail: bool = False) -> list[Incident]:
    return [_build(journal, r, with_detail) for r in journal.incidents_since(since or 0.0)]


def get_incident(journal: Journal, incident_id: int) -> Incident:
    row = journal.incident(incident_id)
    if row is None:
        raise JournalError(f"no incident {incident_id} in {journal.path}; list them with `posguard incidents list`")
    return _build(journal, row, True)


def render_list(incidents: list[Incident]) -> str:
    lines = [f"{'id':>4}  {'time':<20} {'kind':<18} {'cause':<15} {'status':<8} outcome"]
    for i in incidents:
        lines.append(f"{i.id:>4}  {_iso(i.at):<20} {i.kind:<18} {i.cause:<15} {i.status:<8} {i.outcome or '-'}")
    return scrub("\n".join(lines)) + "\n"


def render_incident(i: Incident) -> str:
    lines = [f"incident {i.id}: {i.kind} ({i.source})", f"  time     {_iso(i.at)}", f"  cause    {i.cause}",
             f"  status   {i.status}", f"  outcome  {i.outcome or '-'} {i.reason}".rstrip(),
             f"  summary  {i.message}", "  transactions:"]
    for t in i.transactions:
        lines.append(f"    {t['id']} {t['kind']} {t['state']} {t['amount_minor']} {t['currency']} {t['pan_masked']} "
                     f"STAN {t['stan']} RRN {t['rrn']} auth {t['auth_code']} RC {t['response_code']}")
    for key, value in i.evidence.items():
        lines.append(f"  {key.replace('_', ' ')}: {value}")
    lines.append("  steps:")
    for s in i.steps:
        rc = f" RC {s['rc']}" if s.get("rc") else ""
        lines.append(f"    {s.get('at', '')} {s['name']}: {s.get('status', '?')}{rc} {s.get('detail', '')}".rstrip())
    lines.append("  messages:")
    for m in i.messages:
        lines.append(f"    {m['time']} {m['direction']:<3} {m['mti']} STAN {m['stan']} "
                     + " ".join(f"{k}={v}" for k, v in sorted(m["fields"].items()) if k != "t"))
    if i.notice:
        for lang, text in i.notice.get("texts", {}).items():
            lines.append(f"  notice ({lang}):")
            lines += ["    " + line for line in text.splitlines()]
    return scrub("\n".join(lines)) + "\n"
