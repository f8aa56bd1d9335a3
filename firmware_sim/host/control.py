"""Client for the simulator's JSON-lines control port (use it when the simulator runs as a process).

    ctl = ControlClient(("127.0.0.1", control_port))
    ctl.add_fault("delay", mti="0200", delay=40)
    ctl.ledger()  # -> list of entry dicts
"""

from __future__ import annotations

import json
import socket
from typing import Any


class ControlError(RuntimeError):
    pass


class ControlClient:
    def __init__(self, address: tuple[str, int], timeout: float = 5.0) -> None:
        self._sock = socket.create_connection(address, timeout=timeout)
        self._fh = self._sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._fh.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        self._fh.flush()
        line = self._fh.readline()
        if not line:
            raise ControlError(f"control channel closed while waiting for {cmd!r}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise ControlError(reply.get("error", "unknown error"))
        return reply

    def add_fault(self, kind: str, **kw: Any) -> None:
        self.call("fault", fault={"kind": kind, **kw})

    def clear_faults(self) -> None:
        self.call("clear_faults")

    def ledger(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.call("ledger")["entries"]
        return entries

    def report(self, tid: str | None = None, fmt: str = "csv") -> str:
        """The acquirer's settlement report as text (CSV or JSON; docs/settlement-report.md)."""
        text: str = self.call("report", tid=tid, format=fmt)["text"]
        return text

    def set_rules(self, rules: dict[str, Any]) -> None:
        self.call("rules", rules=rules)

    def refuse_connections(self) -> None:
        self.call("refuse")

    def accept_connections(self) -> None:
        self.call("accept")

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def stop(self) -> None:
        self.call("stop")

    def close(self) -> None:
        self._fh.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
