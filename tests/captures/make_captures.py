"""Regenerate the captures of this directory from the simulators (one per error kind and dialect):

    .venv/bin/python -m tests.captures.make_captures

and ``expected.json``, the incidents each one must replay to (kind, rule, outcome).

Each capture holds a ``card`` record per presentation (the card is read for every charge, at its amount) and the
card's ``card_outcome`` after the host answered; a capture without them is refused here. The demo signs on (the
PIN pad takes the sign-on's working key), so each capture starts with an 0800 whose STAN the replay spends too
(the replayed requests carry the recorded STANs); the unbalanced day ends with the operator's ``reconcile`` and
the acquirer's report inline.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from posguard.capture import read_capture
from posguard.capture.replay import per_presentation
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
            capture = read_capture(path)
            if not per_presentation(capture) or not list(capture.of_kind("card_outcome")):
                raise SystemExit(f"{path.name}: no card record per presentation; is the demo reading per sale?")
            expected[path.name] = [{"incident": i["incident"], "rule": i["rule"], "outcome": i["outcome"],
                                    "transactions": i["transactions"]} for i in result.incidents]
            print(path.name, [i["incident"] for i in result.incidents], flush=True)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
