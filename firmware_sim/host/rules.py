"""Approval rules, declared as data.

A :class:`RuleSet` is an ordered list of :class:`Rule`; the first rule whose conditions all hold gives the
response code. No rule matching means approve (``"00"``). Rules load from / dump to plain JSON::

    {"rules": [
        {"name": "stolen test card", "pan_prefix": "4000000000000002", "rc": "05"},
        {"name": "low balance BIN", "pan_prefix": "622848", "min_amount": 50001, "rc": "51"},
        {"name": "terminal limit", "min_amount": 10000001, "rc": "61"}
    ]}

Conditions (all optional): ``kinds`` (sale, preauth, refund, void, balance), ``pan_prefix`` (BIN or full
PAN), ``min_amount`` / ``max_amount`` (minor units, inclusive), ``tid``. Duplicate transmissions (same
MTI + STAN + TID + amount as an earlier request) are answered ``94`` before any rule runs; switch that off
with ``duplicate_check: false``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rule:
    rc: str
    name: str = ""
    kinds: tuple[str, ...] = ()
    pan_prefix: str | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    tid: str | None = None

    def matches(self, *, kind: str, pan: str | None, amount: int | None, tid: str | None) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if self.pan_prefix is not None and not (pan or "").startswith(self.pan_prefix):
            return False
        if self.min_amount is not None and (amount is None or amount < self.min_amount):
            return False
        if self.max_amount is not None and (amount is None or amount > self.max_amount):
            return False
        return not (self.tid is not None and tid != self.tid)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v not in (None, (), "")}
        if "kinds" in d:
            d["kinds"] = list(d["kinds"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        unknown = set(d) - {"rc", "name", "kinds", "pan_prefix", "min_amount", "max_amount", "tid"}
        if unknown:
            raise ValueError(f"unknown rule keys {sorted(unknown)} in rule {d.get('name', '?')!r}")
        rc = str(d["rc"])
        if len(rc) != 2:
            raise ValueError(f"rule {d.get('name', '?')!r}: response code must be 2 characters, got {rc!r}")
        return cls(
            rc=rc,
            name=str(d.get("name", "")),
            kinds=tuple(d.get("kinds", ())),
            pan_prefix=d.get("pan_prefix"),
            min_amount=d.get("min_amount"),
            max_amount=d.get("max_amount"),
            tid=d.get("tid"),
        )


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    duplicate_check: bool = True

    def decide(self, *, kind: str, pan: str | None, amount: int | None, tid: str | None) -> tuple[str, str]:
        """Return ``(response_code, rule_name)``; ``("00", "")`` when nothing declines."""
        for rule in self.rules:
            if rule.matches(kind=kind, pan=pan, amount=amount, tid=tid):
                return rule.rc, rule.name
        return "00", ""

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules], "duplicate_check": self.duplicate_check}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuleSet:
        return cls(
            rules=[Rule.from_dict(r) for r in d.get("rules", [])],
            duplicate_check=bool(d.get("duplicate_check", True)),
        )

    @classmethod
    def from_json(cls, text: str) -> RuleSet:
        return cls.from_dict(json.loads(text))


#: The rules a freshly started simulator uses (documented test cards; edit or replace via the API).
DEFAULT_RULES = RuleSet(
    rules=[
        Rule(rc="05", name="do-not-honour test card", pan_prefix="4000000000000002"),
        Rule(rc="51", name="insufficient-funds test card", pan_prefix="4000000000009995"),
        Rule(rc="14", name="invalid-card test BIN", pan_prefix="999999"),
        Rule(rc="61", name="amount over terminal limit", kinds=("sale", "preauth"), min_amount=10_000_000),
        Rule(rc="13", name="zero amount", kinds=("sale", "preauth", "refund"), max_amount=0),
    ]
)
