"""The engine wired over loopback TCP to the acquirer simulator running as a separate program.

Used by the kill -9 and settlement tests: the simulator runs in its own process (the rig's
:class:`firmware_sim.rig.HostProcess`, started with :func:`firmware_sim.rig.host_process`), so a test can
SIGKILL the engine's process and the host keeps its ledger. The engine talks to it with
the real :class:`~posguard.engine.hostlink.TcpHostLink`; time is a :class:`~posguard.clock.VirtualClock` whose
waiter advances only once the simulator has handled every frame this link sent (asked over the simulator's
control port), so a 30-second timeout takes milliseconds and cannot race a response on its way.

:func:`books_disagree` compares the host's ledger with the terminal's journal.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.host import ControlClient
from firmware_sim.rig import HostProcess
from posguard.clock import VirtualClock
from posguard.engine.detectors import Detectors
from posguard.engine.engine import EnginePolicies, TerminalConfig, TransactionEngine
from posguard.engine.hostlink import HostLinkConfig, TcpHostLink, VirtualWaiter
from posguard.engine.journal import Journal, TxnRecord

Entry = dict[str, Any]

#: Journal states in which the host must hold the transaction as approved.
HOST_APPROVED_STATES = ("approved", "signature_pending", "signed", "unsigned", "uploaded", "refunded_partial",
                        "refunded", "settled", "completed")
UNFINISHED_STATES = ("created", "card_read", "request_journaled", "sent", "timed_out", "response_invalid",
                     "reversal_pending")


@dataclass
class Wired:
    engine: TransactionEngine
    link: TcpHostLink
    ctl: ControlClient

    def close(self) -> None:
        self.link.close()
        self.ctl.close()
        self.engine.journal.close()


def wire_engine(sim: HostProcess, journal_path: Path, clock: VirtualClock, terminal: TerminalConfig,
                policies: EnginePolicies | None = None) -> Wired:
    """An engine on ``journal_path`` with a real TcpHostLink to ``sim`` (its own control connection)."""
    ctl = ControlClient(sim.control_address)
    base = int(ctl.stats()["frames_handled"])
    holder: dict[str, TcpHostLink] = {}

    def settled() -> bool:
        return int(ctl.stats()["frames_handled"]) >= base + holder["link"].stats.frames_sent

    config = HostLinkConfig("127.0.0.1", sim.port, dialect=sim.dialect, framing=sim.framing, connect_attempts=1)
    link = TcpHostLink(config, clock=clock, waiter=VirtualWaiter(clock, settled=settled))
    holder["link"] = link
    journal = Journal(journal_path, clock=clock)
    engine = TransactionEngine(journal, link, sim.dialect, terminal, clock, Detectors.default(clock), policies)
    return Wired(engine, link, ctl)


# ---------------------------------------------------------------------------------------------- the books
def _financial(entries: list[Entry], tid: str) -> list[Entry]:
    return [e for e in entries if e["tid"] == tid and e["kind"] in ("sale", "void", "refund", "preauth")]


def books_disagree(journal: Journal, entries: list[Entry], tid: str) -> list[str]:
    """Every way the host's ledger and the journal disagree (empty when they agree).

    Matched by kind and STAN. For each journal transaction the host must hold what its final state says
    (approved / voided / reversed-or-never-booked / declined / nothing); a sale's refunded total must match;
    a host entry the journal does not know is a lost transaction; two host bookings of one request are a
    double charge.
    """
    problems: list[str] = []
    host = _financial(entries, tid)
    by_key: dict[tuple[str, int], list[Entry]] = {}
    for e in host:
        by_key.setdefault((e["kind"], int(e["stan"])), []).append(e)
    txns = [t for t in journal.find_txns() if t.kind in ("sale", "void", "refund", "preauth")]
    known = {(t.kind, t.stan) for t in txns}
    for key, booked in by_key.items():
        if key not in known:
            problems.append(f"host booked {key[0]} STAN {key[1]} ({booked[0]['status']}); the journal does not know it")
        if len(booked) > 1:
            problems.append(f"host booked {key[0]} STAN {key[1]} {len(booked)} times (double charge)")
    for t in txns:
        problems += _txn_disagrees(t, by_key.get((t.kind, t.stan or -1), []))
    return problems


def _txn_disagrees(t: TxnRecord, booked: list[Entry]) -> list[str]:
    h = booked[-1] if booked else None
    status = h["status"] if h else None
    what = f"{t.kind} {t.id} STAN {t.stan} is {t.state!r} in the journal, host has {status or 'nothing'}"
    if t.state in UNFINISHED_STATES:
        return [f"{what}: unfinished after recovery"]
    ok: bool
    if t.state in ("not_sent", "cancelled"):
        ok = h is None
    elif t.state == "declined":  # booked as declined, or refused unprocessed (RC 77: sign on first)
        ok = status == "declined" or (h is None and t.response_code == "77")
    elif t.state == "reversed":
        ok = status in (None, "reversed", "declined")
    elif t.state == "voided":
        ok = status == "voided"
    elif t.state in HOST_APPROVED_STATES:
        ok = status == "approved" and (t.rrn is None or h is None or h["rrn"] == t.rrn)
    else:  # reversal_failed, unresolved: a human decides; the host may hold either
        ok = True
    problems = [] if ok else [what]
    if h is not None and t.kind == "sale" and status in ("approved", "voided") and h["refunded"] != t.refunded_minor:
        problems.append(f"sale {t.id}: host refunded {h['refunded']}, journal {t.refunded_minor}")
    return problems


def die_at(target: tuple[str, int], act: Callable[[Callable[[str], None]], None]) -> int:
    """Run ``act(kill_at)`` in a forked child that kills itself with SIGKILL when the engine passes kill point
    ``target`` (the point's name and its occurrence); returns the child's wait status (exit 4: the point was never
    reached, 3: ``act`` failed before it)."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            seen: Counter[str] = Counter()

            def kill_at(point: str) -> None:
                seen[point] += 1
                if (point, seen[point]) == target:
                    os.kill(os.getpid(), signal.SIGKILL)

            act(kill_at)
            code = 4  # the point was never reached
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status
