"""Logs on stdlib :mod:`logging`, one JSON object per line, card data masked.

Every module logs to its area's logger (``posguard.service``, ``posguard.till``, ``posguard.engine``,
``posguard.emv``, ``posguard.reader``...) through plain :mod:`logging`; a named event with its fields goes
through :func:`event`::

    event(log, "sale.approved", "sale 12.50 approved", txn="POSGRD01-00000001", stan=1, rc="00", rrn="...")

:class:`JsonFormatter` writes ``ts``, ``level``, ``event``, ``msg``, ``logger`` and the event's fields. A
plain ``log.debug(...)`` from a library module gets its logger's area as its event (``emv``). Every string
goes through :func:`posguard.sensitive.scrub`, which masks exactly the Luhn-valid 13-19 digit runs (a card
number) and keeps RRNs, STANs and amounts readable — what the capture sanitiser does.

Under systemd (``JOURNAL_STREAM`` names the device and inode of our stream) each line starts with the syslog priority journald reads
(``<3>`` error ... ``<7>`` debug), so ``journalctl -p warning`` means something.

Why not structlog: posguard must not add a run-time dependency for this (and ``posguard.emv`` and the
engine already log through stdlib :mod:`logging`); a formatter of forty lines is the whole need.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from typing import IO, Any, Final

from posguard.sensitive import scrub

__all__ = ["JsonFormatter", "LineHandler", "LEVELS", "event", "is_journal", "setup_logging"]

#: the names ``--log-level`` takes, lowest first
LEVELS: Final = ("debug", "info", "warning", "error")
#: syslog priority journald reads from a ``<N>`` prefix
_PRIORITY: Final = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
#: LogRecord attributes that are not an event's fields
_EVENT, _FIELDS = "event", "fields"


def event(logger: logging.Logger, name: str, msg: str = "", *, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` (``sale.approved``, ``link.timeout``) with ``fields`` as JSON keys."""
    logger.log(level, msg, extra={_EVENT: name, _FIELDS: fields})


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``journald`` adds the ``<N>`` priority prefix."""

    def __init__(self, *, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        area = record.name.removeprefix("posguard.") if record.name != "posguard" else "posguard"
        rec: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "event": str(getattr(record, _EVENT, area)), "msg": scrub(record.getMessage()),
                               "logger": record.name}
        fields = getattr(record, _FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in rec:
                    rec[key] = _clean(value)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            rec["exc"] = scrub(f"{type(exc).__name__}: {exc}")
        line = json.dumps(rec, sort_keys=True, default=str)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that survives its stream: a stream that breaks (the reader went away) is reported once
    on stderr and then left alone — losing the log never stops the terminal. :meth:`line` writes another whole
    line (an operator answer on stdout) under the same lock, so lines never interleave."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped, not raised
            return
        self.line(text)

    def line(self, text: str) -> None:
        with self.lock or contextlib.nullcontext():
            if self.broken:
                return
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self.broken = True
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(f"posguard: the log stream broke ({type(exc).__name__}); logging stops\n")


def is_journal(stream: IO[str]) -> bool:
    """Is ``stream`` the journal's stream systemd gave us (``JOURNAL_STREAM=device:inode``)?"""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup_logging(level: str = "info", stream: IO[str] | None = None, *,
                  journald: bool | None = None) -> LineHandler:
    """Send every ``posguard.*`` logger at ``level`` or above to ``stream`` (stdout) as JSON lines.

    ``journald`` None: on when systemd connected ``stream`` to the journal (``JOURNAL_STREAM`` is its
    ``device:inode``). Calling it again replaces the handler it installed before.
    """
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r} unknown: choose {', '.join(LEVELS)}")
    stream = stream or sys.stdout
    if journald is None:
        journald = is_journal(stream)
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter(journald=journald))
    root = logging.getLogger("posguard")
    for old in [h for h in root.handlers if isinstance(h, LineHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, name.upper()))
    return handler
