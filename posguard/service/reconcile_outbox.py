"""What the service's ``reconcile`` hands the merchant: the files of a reconciliation incident in the outbox.

pos-flows.md §A "Not arrived": confirm what did not arrive, contact **only the customers concerned**, keep a
record. The unsettled flow (:mod:`posguard.flows.unsettled`) writes one notice per customer a finding concerns
(``incident-000012-unsettled_charged-001-POSGRD01-00000007.txt``); this module adds the **merchant's list** with
the acquirer-contact step (batch, terminal and merchant, totals sent and booked per side, the host's balance
flags, the report's path and SHA-256, one line per finding) as
``incident-000012-unsettled-merchant-<first 16 hex of the report's SHA-256>.txt``, and reports every file of
the incident's latest comparison so the operator is told where they are.

Card data: the list carries masked PANs only (the flow's lines are built from masked values) and is scrubbed
once more before it is written (:func:`posguard.sensitive.scrub`); the file is written whole, mode 0600
(:func:`posguard.private_files.write_private`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posguard.private_files import write_private
from posguard.sensitive import scrub

if TYPE_CHECKING:
    from posguard.engine.journal import Journal

__all__ = ["ReconcileDelivery", "deliver_merchant_list"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ReconcileDelivery:
    """The outbox files of one comparison: the customers' notices (only those concerned) and the merchant's
    list."""

    customers: tuple[str, ...]
    merchant: str | None


def deliver_merchant_list(journal: Journal, incident_id: int, outbox: str | Path) -> ReconcileDelivery:
    """Write the merchant's list of ``incident_id``'s latest report comparison to ``outbox``; return the files
    of that comparison. Nothing is written while no report was compared (the list has no finding to name)."""
    steps = [json.loads(r["detail"] or "{}") for r in journal.flow_events(incident_id, outcome=False)]
    contact = next((s for s in reversed(steps) if str(s.get("step", "")).startswith("acquirer_contact:")), None)
    if contact is None:
        return ReconcileDelivery((), None)
    digest = str(contact["step"]).split(":", 1)[1]
    told: dict[str, Any] = next((s for s in reversed(steps) if s.get("step") == f"notify_customers:{digest}"), {})
    customers = tuple(str(p) for p in told.get("delivered") or ())
    text = "\n".join([f"notice: unsettled merchant list (incident {incident_id})",
                      f"about: incident {incident_id}",
                      f"customers told: {len(customers)} (only those a finding concerns)",
                      "", str(contact.get("detail", "")).rstrip(), ""])
    name = _SAFE.sub("_", f"incident-{incident_id:06d}-unsettled-merchant-{digest}.txt")
    path = write_private(Path(outbox) / name, scrub(text).encode("utf-8"))
    return ReconcileDelivery(customers, str(path))
