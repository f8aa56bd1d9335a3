"""Error statistics: incidents by kind and cause, top causes, open incidents, amounts at risk, trends."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from posguard.engine.journal import Journal
from posguard.incidents import load_incidents

__all__ = ["build_report", "render_report"]


def build_report(journal: Journal, *, since: float | None = None, timezone: str | None = None) -> dict[str, Any]:
    """``timezone`` (terminal.timezone): the trend's days are the terminal's local days (None: UTC days)."""
    incidents = load_incidents(journal, since=since)
    by_kind = Counter(i.kind for i in incidents)
    by_cause = Counter(i.cause for i in incidents)
    open_ = [i for i in incidents if i.status == "open"]
    by_status = Counter(i.status for i in incidents)
    per_day: dict[str, Counter[str]] = {}
    for i in incidents:
        per_day.setdefault(_day(i.at, timezone), Counter())[i.kind] += 1
    return {
        "since": time.strftime("%Y-%m-%d", time.gmtime(since)) if since else None,
        "total": len(incidents),
        "by_kind": dict(sorted(by_kind.items())),
        "by_cause": dict(sorted(by_cause.items())),
        "top_causes": [{"cause": c, "count": n} for c, n in by_cause.most_common(3)],
        "open_closed": {"open": by_status["open"], "closed": by_status["closed"], "recorded": by_status["recorded"]},
        "open": [{"id": i.id, "kind": i.kind, "outcome": i.outcome, "amount_at_risk": i.amount_at_risk}
                 for i in open_],
        "amount_at_risk": sum(i.amount_at_risk for i in open_),
        # guide 004: one incident per unsigned sale, by where it stands (follow_up = still open)
        "unsigned": dict(sorted(Counter(i.outcome or "open" for i in incidents if i.kind == "unsigned").items())),
        "trend": [{"day": d, "total": sum(c.values()), "by_kind": dict(sorted(c.items()))}
                  for d, c in sorted(per_day.items())],
    }


def _day(at: float, timezone: str | None) -> str:
    if not timezone:
        return time.strftime("%Y-%m-%d", time.gmtime(at))
    from posguard.engine.localtime import local_time

    return local_time(at, timezone).strftime("%Y-%m-%d")


def render_report(report: dict[str, Any]) -> str:
    lines = [f"incidents{' since ' + report['since'] if report['since'] else ''}: {report['total']}"]
    lines.append("by kind:  " + (", ".join(f"{k} {n}" for k, n in report["by_kind"].items()) or "-"))
    lines.append("by cause: " + (", ".join(f"{k} {n}" for k, n in report["by_cause"].items()) or "-"))
    lines.append("top causes: " + (", ".join(f"{t['cause']} ({t['count']})" for t in report["top_causes"]) or "-"))
    oc = report["open_closed"]
    lines.append(f"status: {oc['open']} open, {oc['closed']} closed, {oc['recorded']} recorded by the engine")
    lines.append(f"open: {len(report['open'])}, amount at risk {report['amount_at_risk'] / 100:.2f}")
    for o in report["open"]:
        lines.append(f"  #{o['id']} {o['kind']} {o['outcome'] or 'in progress'} {o['amount_at_risk'] / 100:.2f}")
    if report.get("unsigned"):
        lines.append("unsigned sales: " + ", ".join(f"{k} {n}" for k, n in report["unsigned"].items()))
    lines.append("trend:")
    for t in report["trend"]:
        lines.append(f"  {t['day']} {t['total']:>4}  " + ", ".join(f"{k} {n}" for k, n in t["by_kind"].items()))
    return "\n".join(lines) + "\n"
