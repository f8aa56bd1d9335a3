"""Regenerate the captures of this directory from the simulators (one per error kind and dialect):

    .venv/bin/python -m tests.captures.make_captures

and ``expected.json``, the incidents each one must replay to (kind, rule, outcome).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from posguard.demo import run_demo
from posguard.demo.day import ERROR_KINDS, day_for

HERE = Path(__file__).resolve().parent
DIALECTS = ("cup", "iso87ascii")


def main() -> int:
    expected: dict[str, list[dict[str, object]]] = {}
    for dialect in DIALECTS:
        for kind in ERROR_KINDS:
            path = HERE / f"{dialect}-{kind}.jsonl"
            result = run_demo(dialect, record=path, out=io.StringIO(), day=day_for(kind))
            expected[path.name] = [{"incident": i["incident"], "rule": i["rule"], "outcome": i["outcome"],
                                    "transactions": i["transactions"]} for i in result.incidents]
            print(path.name, [i["incident"] for i in result.incidents], flush=True)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
