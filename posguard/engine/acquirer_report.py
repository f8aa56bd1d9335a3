"""The acquirer's settlement report: what the host booked for a terminal, one row per booking.

The format is declared once, as data (:data:`COLUMNS`), and documented in ``docs/settlement-report.md``; the host
simulator writes it (``firmware_sim/host/report.py``) and the terminal reads it here to reconcile both ways
(:meth:`posguard.engine.detectors.ReconciliationDetector.compare`). pos-flows.md §A "Not arrived": after an
unbalanced settlement the merchant confirms what did not arrive from the acquirer's own list.

Two encodings carry the same rows: CSV (a header line naming the columns, ``#`` comment lines before it) and JSON
(``{"format": "posguard-settlement-report/1", "rows": [{column: value, ...}, ...]}``). Bad input raises
:class:`ReportError` naming the line and column (CSV) or the line of the row (JSON) — never a traceback, and never
the value when it could be card data.

>>> r = parse_report("terminal_id,batch,stan,rrn,auth_code,pan_masked,pan_hash,amount_minor,currency,kind,"
...                  "status,host_date,host_time,card_org,side\\n"
...                  "POSGRD01,000001,000007,334101000001,123456,476173******0119,,1500,156,sale,approved,"
...                  "2026-11-30,10:01:02,VIS,foreign\\n", source="day.csv")
>>> r.rows[0].stan, r.rows[0].amount_minor, r.rows[0].side, r.rows[0].line
(7, 1500, 'foreign', 2)
>>> parse_report("terminal_id,batch\\n", source="x.csv")
Traceback (most recent call last):
...
posguard.engine.acquirer_report.ReportError: x.csv line 1: the header lacks column(s) stan, rrn, auth_code, \
pan_masked, pan_hash, amount_minor, currency, kind, status, host_date, host_time, card_org, side
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["COLUMNS", "FORMAT", "KINDS", "STATUSES", "SIDES", "Column", "ReportError", "ReportRow",
           "SettlementReport", "parse_report", "load_report"]

FORMAT: Final = "posguard-settlement-report/1"
KINDS: Final = ("sale", "refund", "void", "preauth", "completion")
STATUSES: Final = ("approved", "declined", "voided", "reversed")
SIDES: Final = ("domestic", "foreign")
_MAX_BYTES: Final = 16 * 1024 * 1024


class ReportError(ValueError):
    """The report cannot be read: ``line`` (1-based) and ``column`` (the column's name) say where."""

    def __init__(self, source: str, line: int | None, column: str | None, what: str) -> None:
        where = f"{source} line {line}" if line is not None else source
        if column is not None:
            where += f" column {column}"
        super().__init__(f"{where}: {what}")
        self.source, self.line, self.column, self.what = source, line, column, what


@dataclass(frozen=True)
class Column:
    """One column: its name, whether it may be empty, the pattern its text must match and what it means."""

    name: str
    pattern: str
    required: bool
    meaning: str
    #: True: the value may be card data, so an error never repeats it
    sensitive: bool = False


#: the report's columns, in the order the host writes them (a reader accepts any order; the header names them)
COLUMNS: Final[tuple[Column, ...]] = (
    Column("terminal_id", r"[ -~]{1,8}", True, "the terminal (field 41)"),
    Column("batch", r"[0-9]{1,6}", False, "the terminal's batch number (CUP 60.2); empty when the dialect does "
           "not send it (ISO: the terminal scopes those rows by matching)"),
    Column("stan", r"[0-9]{1,6}", True, "the terminal's STAN (field 11) of the booked request"),
    Column("rrn", r"[0-9A-Za-z]{12}", False, "the retrieval reference number the host gave (field 37)"),
    Column("auth_code", r"[0-9A-Za-z ]{1,6}", False, "the approval code (field 38)"),
    Column("pan_masked", r"[0-9]{6}\*{2,9}[0-9]{4}", False, "the card number, first six and last four only",
           sensitive=True),
    Column("pan_hash", r"[0-9a-f]{32}", False, "SHA-256 of the card number, first 32 hex digits: lets a terminal "
           "that still holds the sealed card confirm it is the same card; never printed", sensitive=True),
    Column("amount_minor", r"[0-9]{1,12}", True, "the amount in the currency's minor units (field 4)"),
    Column("currency", r"[0-9]{3}", True, "ISO 4217 numeric currency (field 49)"),
    Column("kind", "|".join(KINDS), True, "what was booked"),
    Column("status", "|".join(STATUSES), True, "approved; declined; voided (a void undid it); reversed (a "
           "reversal undid it)"),
    Column("host_date", r"[0-9]{4}-[0-9]{2}-[0-9]{2}", True, "the host's booking date (UTC)"),
    Column("host_time", r"[0-9]{2}:[0-9]{2}:[0-9]{2}", True, "the host's booking time (UTC)"),
    Column("card_org", r"[A-Z]{3}", True, "the card organisation (CUP, VIS, MCC, JCB, AMX, OTH) as in the 0210/0510 "
           "field 63"),
    Column("side", "|".join(SIDES), True, "domestic (CUP) or foreign (every other organisation): which group of "
           "the CUP 0500 field 48 the booking counts in"),
)
_BY_NAME: Final[Mapping[str, Column]] = {c.name: c for c in COLUMNS}
_COMPILED: Final[Mapping[str, re.Pattern[str]]] = {c.name: re.compile(c.pattern) for c in COLUMNS}


@dataclass(frozen=True)
class ReportRow:
    """One booking. ``line`` is where it was read (for error messages and the incident's evidence)."""

    terminal_id: str
    batch: int | None
    stan: int
    rrn: str | None
    auth_code: str | None
    pan_masked: str | None
    pan_hash: str | None
    amount_minor: int
    currency: str
    kind: str
    status: str
    host_date: str
    host_time: str
    card_org: str
    side: str
    line: int = 0

    def __repr__(self) -> str:  # pan_hash stays out of reprs
        return (f"ReportRow(line={self.line}, tid={self.terminal_id!r}, batch={self.batch}, stan={self.stan}, "
                f"rrn={self.rrn!r}, pan={self.pan_masked!r}, amount={self.amount_minor}, {self.kind}/{self.status}, "
                f"{self.card_org}/{self.side})")

    @property
    def booked(self) -> bool:
        """The host holds this booking as approved money."""
        return self.status == "approved"

    def to_dict(self) -> dict[str, Any]:
        """What may be shown or journaled: everything but the PAN hash."""
        return {"line": self.line, "terminal_id": self.terminal_id, "batch": self.batch, "stan": self.stan,
                "rrn": self.rrn, "auth_code": self.auth_code, "pan_masked": self.pan_masked,
                "amount_minor": self.amount_minor, "currency": self.currency, "kind": self.kind,
                "status": self.status, "host_time": f"{self.host_date} {self.host_time}", "card_org": self.card_org,
                "side": self.side}


@dataclass(frozen=True)
class SettlementReport:
    rows: tuple[ReportRow, ...]
    source: str  # the path it was read from (or a name given by the caller)
    digest: str  # SHA-256 of the bytes read: the incident's evidence of which report was compared
    encoding: str  # csv | json

    def for_terminal(self, terminal_id: str) -> list[ReportRow]:
        return [r for r in self.rows if r.terminal_id == terminal_id]


def _check(source: str, line: int, raw: Mapping[str, Any], column_of: Callable[[str], str]) -> ReportRow:
    values: dict[str, str] = {}
    for col in COLUMNS:
        value = raw.get(col.name)
        text = "" if value is None else str(value).strip()
        if not text:
            if col.required:
                raise ReportError(source, line, column_of(col.name), f"{col.name} is empty; {col.meaning}")
            values[col.name] = ""
            continue
        if not _COMPILED[col.name].fullmatch(text):
            shown = "" if col.sensitive else f" {text[:40]!r}"
            hint = (" (a full card number is refused: mask it, first six and last four digits)"
                    if col.name == "pan_masked" and text.isdigit() else "")
            raise ReportError(source, line, column_of(col.name), f"{col.name}{shown} does not match "
                              f"{col.pattern}{hint}; {col.meaning}")
        values[col.name] = text
    stan = int(values["stan"])
    if stan == 0:
        raise ReportError(source, line, column_of("stan"), "stan 0: a STAN runs from 1 to 999999")
    return ReportRow(values["terminal_id"], int(values["batch"]) if values["batch"] else None, stan,
                     values["rrn"] or None, values["auth_code"] or None, values["pan_masked"] or None,
                     values["pan_hash"] or None, int(values["amount_minor"]), values["currency"], values["kind"],
                     values["status"], values["host_date"], values["host_time"], values["card_org"], values["side"],
                     line)


def _parse_csv(text: str, source: str) -> list[ReportRow]:
    lines = text.splitlines()
    header_at = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    if header_at is None:
        raise ReportError(source, None, None, "no header line: the first line that is not a # comment names the "
                          "columns (" + ",".join(c.name for c in COLUMNS) + ")")
    try:
        rows = list(csv.reader(io.StringIO("\n".join(lines[header_at:]))))
    except csv.Error as exc:
        raise ReportError(source, None, None, f"not CSV: {exc}") from None
    header = [h.strip() for h in rows[0]]
    unknown = [h for h in header if h not in _BY_NAME]
    if unknown:
        raise ReportError(source, header_at + 1, None, f"unknown column(s) {', '.join(repr(h[:30]) for h in unknown)}"
                          "; see docs/settlement-report.md")
    missing = [c.name for c in COLUMNS if c.name not in header]
    if missing:
        raise ReportError(source, header_at + 1, None, f"the header lacks column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise ReportError(source, header_at + 1, None, "a column is named twice in the header")
    position = {name: i + 1 for i, name in enumerate(header)}
    out: list[ReportRow] = []
    for offset, cells in enumerate(rows[1:], start=header_at + 2):
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if cells[0].lstrip().startswith("#"):
            continue
        if len(cells) != len(header):
            raise ReportError(source, offset, None, f"{len(cells)} cells, the header names {len(header)}")
        out.append(_check(source, offset, dict(zip(header, cells, strict=True)),
                          lambda name: f"{position[name]} ({name})"))
    return out


def _parse_json(text: str, source: str) -> list[ReportRow]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(source, exc.lineno, str(exc.colno), f"not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("rows"), list):
        raise ReportError(source, 1, None, f'a JSON report is an object {{"format": "{FORMAT}", "rows": [...]}}')
    starts = _object_lines(text)
    out: list[ReportRow] = []
    for i, row in enumerate(doc["rows"]):
        line = starts[i] if i < len(starts) else None
        if not isinstance(row, dict):
            raise ReportError(source, line, None, f"rows[{i}] is not an object")
        unknown = [k for k in row if k not in _BY_NAME]
        if unknown:
            raise ReportError(source, line, f"rows[{i}].{unknown[0][:30]}", "unknown column; see "
                              "docs/settlement-report.md")
        out.append(_check(source, line or 0, row, lambda name, i=i: f"rows[{i}].{name}"))  # type: ignore[misc]
    return out


def _object_lines(text: str) -> list[int]:
    """The line on which each object of the ``rows`` array starts (for error messages)."""
    start = text.find('"rows"')
    out: list[int] = []
    depth = 0
    in_string = escaped = False
    for pos in range(max(start, 0), len(text)):
        ch = text[pos]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if ch == "{" and depth == 2:
                out.append(text.count("\n", 0, pos) + 1)
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                break
    return out


def parse_report(text: str, *, source: str = "<report>") -> SettlementReport:
    """Read a report's text (JSON when it starts with ``{``, else CSV); raises :class:`ReportError`."""
    body = text.lstrip("\ufeff")
    encoding = "json" if body.lstrip().startswith("{") else "csv"
    rows = _parse_json(body, source) if encoding == "json" else _parse_csv(body, source)
    return SettlementReport(tuple(rows), source, hashlib.sha256(text.encode("utf-8")).hexdigest(), encoding)


def load_report(path: str | Path) -> SettlementReport:
    """Read the report file at ``path``; every problem (missing, too big, not UTF-8, bad rows) is a
    :class:`ReportError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ReportError(str(p), None, None, f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > _MAX_BYTES:
        raise ReportError(str(p), None, None, f"{len(data)} bytes: larger than {_MAX_BYTES}; split the report")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReportError(str(p), line, None, f"not UTF-8 at byte {exc.start}") from None
    report = parse_report(text, source=str(p))
    return SettlementReport(report.rows, report.source, hashlib.sha256(data).hexdigest(), report.encoding)
