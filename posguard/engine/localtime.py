"""The terminal's local time in the messages, and the host's date of an original transaction.

Fields 12 (hhmmss) and 13 (MMDD) are the terminal's **local** time and date in ``terminal.timezone``; field 7
stays GMT where a dialect uses it (``../shared/reference/emv-keys.md`` §F, ISO 8583:1987 fields 7/12/13). A
refund's field 61.3 (CUP: original transaction date) is the host's date of the original — field 15 (settlement
date) of its response when present, else field 13 — not the terminal's clock: near midnight, or with a host in
another zone, they differ. The journal stays UTC; the host's answer is journaled (masked, 13/15 readable), and
:func:`host_date_of` reads the date back from there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from posguard.engine.journal import Journal
from posguard.notices import terminal_zone

__all__ = ["local_time", "local_fields", "host_date_of"]


def local_time(now: float, timezone_name: str | None) -> datetime:
    """``now`` (epoch seconds, UTC) on the terminal's clock face (the zone as the notices read it)."""
    tz = terminal_zone(timezone_name)
    utc = datetime.fromtimestamp(now, UTC)
    return utc.astimezone(tz) if tz is not None else utc.astimezone()


def local_fields(now: float, timezone_name: str | None) -> tuple[str, str]:
    """(field 12 hhmmss, field 13 MMDD) in the terminal's zone."""
    t = local_time(now, timezone_name)
    return t.strftime("%H%M%S"), t.strftime("%m%d")


def host_date_of(journal: Journal, txn_id: str) -> str | None:
    """MMDD the host gave the transaction's answer: its field 15, else 13; None when no answer carries one."""
    for row in reversed(journal.messages(txn_id)):
        if row["direction"] != "in":
            continue
        try:
            doc = json.loads(row["masked"])
        except (TypeError, ValueError):
            continue
        for key in ("15", "13"):
            value = doc.get(key)
            if isinstance(value, str) and len(value) == 4 and value.isdigit():
                return value
    return None
