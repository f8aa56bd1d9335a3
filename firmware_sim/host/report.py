"""The acquirer's settlement report, written from the simulator's ledger (the format: docs/settlement-report.md).

One row per booking the host holds for a terminal (sales, refunds, voids, pre-authorisations), whatever became of
it: ``approved``, ``declined``, ``voided`` (a void undid it) or ``reversed`` (a reversal undid it). Card data:
the masked PAN and the SHA-256 hash of the PAN (first 32 hex digits) only. ``batch`` is the terminal's batch
number where the dialect carries it (CUP 60.2); ISO dialects send none, so it is left empty.

This module is the simulator's own writer; it shares no code with posguard's reader (the other side of the
wire): a column this writer and that reader disagree on is a test failure, not a silent fix.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from .ledger import Entry, Ledger

__all__ = ["COLUMNS", "FORMAT", "REPORTED_KINDS", "rows", "to_csv", "to_json", "write_report"]

FORMAT = "posguard-settlement-report/1"
COLUMNS = ("terminal_id", "batch", "stan", "rrn", "auth_code", "pan_masked", "pan_hash", "amount_minor", "currency",
           "kind", "status", "host_date", "host_time", "card_org", "side")
REPORTED_KINDS = ("sale", "refund", "void", "preauth", "completion")


def _row(e: Entry, dialect: str) -> dict[str, Any]:
    t = time.gmtime(e.time)
    return {
        "terminal_id": e.tid or "", "batch": (e.batch or "") if dialect == "cup" else "",
        "stan": f"{int(e.stan or 0):06d}", "rrn": e.rrn or "", "auth_code": e.auth_code or "",
        "pan_masked": e.pan_masked or "", "pan_hash": e.pan_hash or "", "amount_minor": str(e.amount or 0),
        "currency": e.currency or "", "kind": e.kind, "status": e.status,
        "host_date": time.strftime("%Y-%m-%d", t), "host_time": time.strftime("%H:%M:%S", t),
        "card_org": e.card_org or "CUP", "side": e.side,
    }


def rows(ledger: Ledger, dialect: str, tid: str | None = None) -> list[dict[str, Any]]:
    """The report's rows: every booking of ``tid`` (every terminal when None), in booking order."""
    return [_row(e, dialect) for e in ledger.to_entries()
            if e.kind in REPORTED_KINDS and (tid is None or e.tid == tid) and e.stan]


def to_csv(ledger: Ledger, dialect: str, tid: str | None = None) -> str:
    out = io.StringIO()
    out.write(f"# {FORMAT}: acquirer settlement report (host simulator, {dialect})\n")
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows(ledger, dialect, tid))
    return out.getvalue()


def to_json(ledger: Ledger, dialect: str, tid: str | None = None) -> str:
    return json.dumps({"format": FORMAT, "dialect": dialect, "rows": rows(ledger, dialect, tid)}, indent=1)


def write_report(ledger: Ledger, dialect: str, path: str, tid: str | None = None) -> str:
    """Write the report to ``path``: JSON when it ends in ``.json``, else CSV. Returns the text written."""
    text = to_json(ledger, dialect, tid) if path.endswith(".json") else to_csv(ledger, dialect, tid)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text
