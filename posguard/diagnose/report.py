"""What a diagnose check reports: :class:`CheckResult`, and the exit status of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["VERDICTS", "CheckResult", "exit_status"]

VERDICTS = ("ok", "skip", "warn", "fail")


@dataclass
class CheckResult:
    name: str
    verdict: str
    figure: str
    advice: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "verdict": self.verdict, "figure": self.figure, "next": self.advice,
                "data": self.data}


def exit_status(results: list[CheckResult]) -> int:
    verdicts = {r.verdict for r in results}
    return 2 if "fail" in verdicts else 1 if "warn" in verdicts else 0
