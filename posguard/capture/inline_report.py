"""The acquirer's settlement report inside a capture's ``reconcile`` op record, so a capture is self-contained.

docs/capture-format.md "The reconcile op": ``{"k": "op", "op": "reconcile", "report": ...}`` where ``report`` is

* the report itself, as the documented JSON document (docs/settlement-report.md):
  ``{"format": "posguard-settlement-report/1", "rows": [{column: value, ...}, ...]}``;
* or only its rows (a JSON array of row objects);
* or the documented CSV as one string (a header line naming the columns, then one line per row);
* or the path of a report file (CSV or JSON), relative to the capture file's directory (or absolute).

What a recorder writes is the inline JSON document, sanitised (:func:`inline_report`): the PAN hash column is
emptied (a hash of a card number with a known BIN and last four digits can be searched: it is card data), and each
masked PAN of a card the capture has seen is the masked form of that card's test PAN, so the replayed journal (which
holds the test PANs) compares the same cards. The SHA-256 the replay's incident records is that of the inline
document (canonical JSON) or of the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posguard.engine.acquirer_report import FORMAT, ReportError, SettlementReport, load_report, parse_report

if TYPE_CHECKING:
    from posguard.capture.sanitize import Sanitiser

__all__ = ["inline_report", "report_of_op"]


def inline_report(report: SettlementReport, sanitiser: Sanitiser) -> dict[str, Any]:
    """``report`` as a capture's op record carries it: the JSON document, the PAN hash column empty, masked PANs
    of the cards this capture has seen mapped to their test PANs' masked form."""
    rows = []
    for r in report.rows:
        rows.append({
            "terminal_id": r.terminal_id, "batch": f"{r.batch:06d}" if r.batch is not None else "",
            "stan": f"{r.stan:06d}", "rrn": r.rrn or "", "auth_code": r.auth_code or "",
            "pan_masked": sanitiser.masked(r.pan_masked) if r.pan_masked else "", "pan_hash": "",
            "amount_minor": str(r.amount_minor), "currency": r.currency, "kind": r.kind, "status": r.status,
            "host_date": r.host_date, "host_time": r.host_time, "card_org": r.card_org, "side": r.side})
    return {"format": FORMAT, "rows": rows}


def report_of_op(value: Any, *, base: Path | None, source: str) -> SettlementReport:
    """The report a ``reconcile`` op record names (see the module docstring); :class:`ReportError` naming
    ``source`` (e.g. ``capture line 12``) when it cannot be read."""
    if isinstance(value, list):
        value = {"format": FORMAT, "rows": value}
    if isinstance(value, dict):
        if "format" not in value and isinstance(value.get("rows"), list):
            value = {**value, "format": FORMAT}
        text = json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)  # one row object per line
        return parse_report(text, source=f"{source} (inline report)")
    if not isinstance(value, str) or not value.strip():
        raise ReportError(source, None, "report", "a reconcile op's report is the report itself (a JSON object, "
                          "its rows, or CSV text) or a file path")
    if "\n" in value.strip() or value.count(",") >= 5:  # CSV text: the header alone names 15 columns
        return parse_report(value, source=f"{source} (inline report)")
    path = Path(value)
    if not path.is_absolute() and base is not None:
        path = base / path
    return load_report(path)
