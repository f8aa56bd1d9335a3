"""The follow-up of an unsigned sale (guide 004, 补签): the customer's contact, the deadline, the evidence.

pos-flows.md (A) "Not signed": with the customer present the signature is captured (an e-signature, or the
merchant copy re-signed); once the customer has gone the merchant contacts them to sign afterwards, and the
sale ends signed later, kept at the merchant's own risk, or voided with the customer's consent. This module
holds what that task needs besides the flow's steps:

* :func:`parse_contact` — how to reach the customer, as the merchant gave it (``phone:...`` or ``email:...``);
  only that is kept, sealed under the terminal's data key, and shown masked;
* :func:`store_signature` — an e-signature image stored under the data directory (mode 0600, written
  atomically), named by transaction and hash; its SHA-256 is the evidence on the incident and in the journal;
* :func:`follow_ups` / :func:`overdue` — the open tasks, read back from the journal.

>>> parse_contact("phone:+86 138-0013-8000").masked
'phone *********8000'
>>> parse_contact("fax:123")
Traceback (most recent call last):
...
posguard.flows.unsigned_follow_up.ContactError: contact 'fax:...': write phone:NUMBER or email:ADDRESS
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from posguard.engine.journal import Journal
from posguard.private_files import write_private
from posguard.sensitive import luhn_ok, mask_contact, scrub

__all__ = ["Contact", "ContactError", "SignatureFileError", "FollowUp", "CONTACT_WAYS", "parse_contact",
           "store_signature", "read_signature_file", "follow_ups", "overdue", "incident_for_sale",
           "MAX_SIGNATURE_BYTES"]

CONTACT_WAYS: Final = ("phone", "email")
#: the follow-up outcome that leaves it open (none recorded yet leaves it open too)
OPEN_FOLLOW_UP: Final = ("follow_up",)
#: an e-signature image larger than this is refused (a pad's PNG/SVG is a few kB)
MAX_SIGNATURE_BYTES: Final = 1 << 20
_PHONE = re.compile(r"\+?[0-9][0-9 -]{5,23}")
_EMAIL = re.compile(r"[^@\s:]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")


class ContactError(ValueError):
    """A contact the merchant gave that is not a phone number or an e-mail address."""


class SignatureFileError(ValueError):
    """An e-signature file that cannot be used as evidence; the message says what and where."""


@dataclass(frozen=True, repr=False)
class Contact:
    how: str  # phone | email
    value: str

    @property
    def masked(self) -> str:
        return f"{self.how} {mask_contact(self.value)}"

    def __repr__(self) -> str:
        return f"Contact({self.masked!r})"


def parse_contact(text: str) -> Contact:
    """``phone:NUMBER`` or ``email:ADDRESS``; anything else is refused (and not repeated back)."""
    how, sep, value = text.partition(":")
    how = how.strip().lower()
    value = value.strip()
    if not sep or how not in CONTACT_WAYS:
        raise ContactError(f"contact '{how[:8]}:...': write phone:NUMBER or email:ADDRESS")
    if how == "phone" and not _PHONE.fullmatch(value):
        raise ContactError("contact phone:...: 6 to 20 digits, optionally +, spaces or dashes")
    if how == "phone" and 13 <= sum(c.isdigit() for c in value) <= 19 and luhn_ok(
            "".join(c for c in value if c.isdigit())):
        raise ContactError("contact phone:...: that looks like a card number; it was not stored")
    if how == "email" and not _EMAIL.fullmatch(value):
        raise ContactError("contact email:...: not an e-mail address (name@domain)")
    return Contact(how, value)


def read_signature_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an e-signature file the operator named, checked: present, not empty, not too big."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SIGNATURE_BYTES:
            raise SignatureFileError(f"e-signature {p}: {size} bytes, more than {MAX_SIGNATURE_BYTES}")
        data = p.read_bytes()
    except OSError as exc:
        raise SignatureFileError(f"e-signature {p}: cannot read it ({exc.strerror})") from None
    if not data:
        raise SignatureFileError(f"e-signature {p}: the file is empty")
    return data


def _card_data_at(image: bytes) -> int | None:
    """The byte offset of the first digit run in ``image`` that :func:`~posguard.sensitive.scrub` would mask (a
    13-19 digit Luhn-valid run, or any longer run), or None."""
    text = image.decode("latin-1")  # one character per byte: offsets stay byte offsets
    masked = scrub(text)
    if masked == text:
        return None
    at = next(i for i, (a, b) in enumerate(zip(text, masked, strict=True)) if a != b)
    while at > 0 and text[at - 1].isdigit():
        at -= 1
    return at


def store_signature(directory: str | os.PathLike[str], txn_id: str, image: bytes) -> tuple[str, str]:
    """Store an e-signature as evidence: ``(path, sha256)``. Written to a temporary file and renamed (a crash
    leaves the old file or the new one, never half of one), mode 0600, named ``TXN-SHA12.sig``. An image
    holding what looks like a card number is refused: the evidence never carries card data."""
    if not image:
        raise SignatureFileError("e-signature: no bytes")
    if len(image) > MAX_SIGNATURE_BYTES:
        raise SignatureFileError(f"e-signature: {len(image)} bytes, more than {MAX_SIGNATURE_BYTES}")
    at = _card_data_at(image)
    if at is not None:
        raise SignatureFileError(f"e-signature: byte offset {at} holds what looks like a card number; it was not "
                                 "stored. Export the signature image alone")
    digest = hashlib.sha256(image).hexdigest()
    final = write_private(Path(directory) / f"{txn_id}-{digest[:12]}.sig", image)
    return str(final), digest


def incident_for_sale(journal: Journal, txn_id: str) -> int | None:
    """The unsigned incident of ``txn_id`` (one per sale), or None."""
    rows = journal.query("SELECT id FROM incidents WHERE kind = 'flow:unsigned' AND txn_id = ? ORDER BY id LIMIT 1",
                         (txn_id,))
    return int(rows[0]["id"]) if rows else None


@dataclass(frozen=True)
class FollowUp:
    """One unsigned sale's follow-up as the journal holds it."""

    incident_id: int
    txn_id: str
    opened_at: float
    deadline: float
    contact: str | None  # masked
    contacted: int  # attempts recorded
    escalated: bool
    outcome: str | None  # the incident's last outcome

    @property
    def open(self) -> bool:
        return self.outcome is None or self.outcome in OPEN_FOLLOW_UP

    def to_dict(self) -> dict[str, Any]:
        return {"incident": self.incident_id, "txn_id": self.txn_id, "opened_at": self.opened_at,
                "deadline": self.deadline, "contact": self.contact, "contacted": self.contacted,
                "escalated": self.escalated, "outcome": self.outcome}


def follow_ups(journal: Journal, *, open_only: bool = False) -> list[FollowUp]:
    """Every unsigned sale that got a follow-up, oldest first (``open_only``: those still awaiting an outcome,
    read without touching the closed ones)."""
    out = []
    rows = journal.flow_incidents_open("flow:unsigned", OPEN_FOLLOW_UP) if open_only else \
        journal.incidents("flow:unsigned")
    for row in rows:
        steps: dict[str, dict[str, Any]] = {}
        outcome: str | None = None
        contacted = 0
        escalated = False
        contact = None
        for ev in journal.flow_events(int(row["id"])):
            d = json.loads(ev["detail"])
            if ev["kind"] == "flow_outcome":
                outcome = d.get("outcome")
                continue
            steps.setdefault(d["step"], {}).update(d)
            if d["step"].startswith("contact") and d.get("status") == "done":
                contacted += d["step"].startswith("contacted")
                contact = d.get("contact") or contact
            escalated |= d["step"] == "escalated_to_bank"
        opened = steps.get("follow_up_opened")
        if opened is None or opened.get("deadline") is None:
            continue
        out.append(FollowUp(int(row["id"]), str(row["txn_id"]), float(row["at"]), float(opened["deadline"]),
                            contact or opened.get("contact"), contacted, escalated, outcome))
    return out


def overdue(journal: Journal, now: float) -> list[FollowUp]:
    """Open follow-ups whose deadline has passed (engine clock)."""
    return [f for f in follow_ups(journal, open_only=True) if f.open and now >= f.deadline]
