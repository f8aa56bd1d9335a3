"""Where customer notices go. Nothing is sent unless the merchant configured an outbox.

The default :class:`FileOutbox` writes one JSON file per notice (mode 0600) for the merchant's own
messaging system to pick up; other outboxes implement :class:`Outbox`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from posguard.notices import Notice

__all__ = ["Outbox", "FileOutbox"]


class Outbox(Protocol):
    def deliver(self, incident_id: int, notice: Notice) -> str:
        """Hand the notice over; returns where it went."""
        ...


class FileOutbox:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def deliver(self, incident_id: int, notice: Notice, part: str | None = None) -> str:
        """Write the notice; ``part`` (e.g. the transaction id) tells apart several notices of one incident."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tail = f"-{''.join(c for c in part if c.isalnum() or c in '-_')}" if part else ""
        path = self.directory / f"incident-{incident_id:06d}-{notice.kind}{tail}.json"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(notice.to_dict(), fh, ensure_ascii=False, indent=2, sort_keys=True)
        return str(path)
