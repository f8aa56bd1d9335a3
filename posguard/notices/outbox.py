"""Where customer notices go. Nothing is sent unless the merchant configured an outbox.

The default :class:`FileOutbox` is a directory (the service's is ``<data dir>/outbox``) where each notice is
one UTF-8 text file holding the notice in every language it was written in, for the merchant's own messaging
(SMS, e-mail, a printer) to pick up. A file is written whole or not at all (a temporary file in the same
directory, flushed to disk, then renamed), mode 0600, and named by what it is about:

* ``incident-000012-unsigned-follow_up.txt`` — the notice of a correction flow's incident (kind, outcome);
* ``txn-POSGRD01-00000007-reversal.txt`` — a notice the till produced for a transaction (an automatic reversal).

A notice carries the masked PAN and the masked contact only; the name never carries card data. A later notice
of the same incident and outcome replaces the earlier file. Other outboxes implement :class:`Outbox`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from posguard.private_files import write_private
from posguard.sensitive import scrub

if TYPE_CHECKING:
    from posguard.notices import Notice

__all__ = ["Outbox", "FileOutbox", "notice_file_text"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
_LANGUAGE_NAMES = {"zh": "中文", "en": "English"}


class Outbox(Protocol):
    def deliver(self, incident_id: int, notice: Notice, part: str | None = None) -> str:
        """Hand the notice of a flow incident over (``part`` tells apart several of one incident); returns where
        it went."""
        ...

    def deliver_for_txn(self, txn_id: str, notice: Notice) -> str:
        """Hand over a notice about one transaction (no incident); returns where it went."""
        ...


def notice_file_text(notice: Notice, about: str) -> str:
    """The file's text: a short header, then the notice in each language, separated by a rule."""
    head = [f"notice: {notice.kind} ({notice.outcome})", f"about: {about}"]
    if notice.contact_masked:
        head.append(f"to: {notice.contact_masked}")
    parts = ["\n".join(head)]
    for lang, text in notice.texts.items():
        parts.append(f"[{_LANGUAGE_NAMES.get(lang, lang)}]\n{text.rstrip()}")
    return scrub("\n\n----\n\n".join(parts)) + "\n"


class FileOutbox:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def deliver(self, incident_id: int, notice: Notice, part: str | None = None) -> str:
        """Write the notice; ``part`` (e.g. the transaction id) tells apart several notices of one incident."""
        tail = f"-{part}" if part else f"-{notice.outcome}"
        name = f"incident-{incident_id:06d}-{notice.kind}{tail}.txt"
        return self._write(name, notice_file_text(notice, f"incident {incident_id}"))

    def deliver_for_txn(self, txn_id: str, notice: Notice) -> str:
        name = f"txn-{_SAFE.sub('_', txn_id)}-{notice.kind}.txt"
        return self._write(name, notice_file_text(notice, f"transaction {txn_id}"))

    def _write(self, name: str, text: str) -> str:
        return str(write_private(self.directory / _SAFE.sub("_", name), text.encode("utf-8")))
