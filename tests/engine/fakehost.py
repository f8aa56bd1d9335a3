"""A small in-process acquirer for engine tests.

It keeps a ledger (optionally persisted to a JSON file, fsynced before each response, so a crash of the
terminal process after the host processed a request is visible afterwards), matches reversals to their
originals (field 90 in ISO dialects, STAN in CUP), and follows a script of faults:

``ok`` (default), ``decline:51``, ``rc:94``, ``down`` (request never left), ``lost_request`` (timeout,
host never saw it), ``lost_response`` (host processed it, the answer was lost), ``invalid`` (processed, the
answer fails validation), ``reject:96`` (reversal/advice answered with 96).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posguard.clock import Clock
from posguard.engine.ports import HostLinkError, HostTimeout, InvalidResponse
from posguard.iso8583.message import Message


@dataclass
class WireRecord:
    mti: str
    stan: int | None
    proc: str | None
    amount: int | None
    outcome: str


@dataclass
class FakeHost:
    clock: Clock
    ledger_path: Path | None = None
    script: deque[str] = field(default_factory=deque)
    wire: list[WireRecord] = field(default_factory=list)
    ledger: dict[str, dict[str, Any]] = field(default_factory=dict)  # rrn -> entry
    settlement_rc: str = "00"
    on_exchange: Callable[[Message], None] | None = None  # called before processing (write-ahead checks)
    _seq: int = 0

    def __post_init__(self) -> None:
        if self.ledger_path is not None and self.ledger_path.exists():
            data = json.loads(self.ledger_path.read_text())
            self.ledger, self._seq = data["ledger"], data["seq"]

    # -- script --------------------------------------------------------------------------------
    def then(self, *actions: str) -> FakeHost:
        self.script.extend(actions)
        return self

    def _persist(self) -> None:
        if self.ledger_path is None:
            return
        tmp = self.ledger_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"ledger": self.ledger, "seq": self._seq}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.ledger_path)

    # -- HostLink ------------------------------------------------------------------------------
    def exchange(self, request: Message, *, timeout: float) -> Message:
        if self.on_exchange is not None:
            self.on_exchange(request)
        action = self.script.popleft() if self.script else "ok"
        rec = WireRecord(request.mti, request.stan, request.processing_code, request.amount, action)
        self.wire.append(rec)
        if action == "down":
            raise HostLinkError("connection refused by 127.0.0.1:9 (test)")
        if action == "lost_request":
            self.clock.advance(timeout)
            raise HostTimeout(f"no response in {timeout} s")
        rc, extra = self._process(request, action)
        self._persist()
        if action == "lost_response":
            self.clock.advance(timeout)
            raise HostTimeout(f"no response in {timeout} s")
        if action == "invalid":
            raise InvalidResponse("response field 4 does not echo the request", violations=("4",))
        response = Message(request.response_mti, {k: v for k, v in request.fields().items()
                                                    if k in ("3", "4", "11", "41", "42", "49", "60")},
                           dialect=request.dialect)
        response["39"] = rc
        for k, v in extra.items():
            response[k] = v
        return response

    # -- the acquirer's books ----------------------------------------------------------------------
    def _new_rrn(self) -> str:
        self._seq += 1
        return f"{self._seq:012d}"

    def _find(self, **match: Any) -> dict[str, Any] | None:
        for e in reversed(list(self.ledger.values())):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        return None

    def _process(self, req: Message, action: str) -> tuple[str, dict[str, str]]:
        mti, tid = req.mti, req.tid
        if action.startswith("reject:"):
            return action.split(":")[1], {}
        if mti in ("0400", "0401"):
            if "90" in req:
                orig_stan = int(str(req["90"])[4:10])
            else:
                orig_stan = req.stan
            orig = self._find(stan=orig_stan, tid=tid, mti_class="financial")
            if orig is None:
                return "25", {}
            if orig["status"] != "reversed":
                parent = self.ledger.get(orig.get("original_rrn") or "")
                if parent is not None and orig["status"] != "declined":
                    if orig["kind"] == "void":
                        parent["status"] = "approved"
                    elif orig["kind"] == "refund":
                        parent["refunded"] = parent.get("refunded", 0) - (orig["amount"] or 0)
                orig["status"] = "reversed"
            return "00", {}
        if mti in ("0800", "0820"):
            return "00", {}
        if mti == "0500":
            if "48" not in req:  # international: RC 00 balanced / 95; 96xxxx closes after the upload
                return ("00" if str(req["3"]).startswith("96") else self.settlement_rc), {}
            f48 = str(req["48"])  # CUP: flag n1 at offset 30 of the domestic group
            return "00", {"48": f48[:30] + ("1" if self.settlement_rc == "00" else "2") + f48[31:]}
        if mti in ("0320", "0321"):
            return "00", {}
        # financial request or advice; a repeat with the same STAN is answered from the books
        same = self._find(stan=req.stan, tid=tid, mti_class="financial")
        if same is not None and mti.endswith("1"):
            return same["rc"], {"37": same["rrn"], "38": same["auth"]}
        if action.startswith("decline:") or action.startswith("rc:"):
            rc = action.split(":")[1]
        else:
            rc = "00"
        rrn = self._new_rrn()
        kind = {"000000": "sale", "030000": "preauth", "020000": "void", "200000": "refund"}.get(
            req.processing_code or "", "other")
        if "60" in req:  # CUP: field 60.1 names the transaction type
            kind = {"22": "sale", "23": "void", "25": "refund", "10": "preauth", "20": "completion"}.get(
                str(req["60"])[:2], kind)
        if mti.startswith("01"):
            kind = "preauth"
        original_rrn = str(req["37"]) if "37" in req else None
        entry = {"rrn": rrn, "auth": f"{self._seq:06d}", "stan": req.stan, "tid": tid, "kind": kind,
                 "amount": req.amount, "rc": rc, "mti_class": "financial",
                 "status": "approved" if rc == "00" else "declined", "original_rrn": original_rrn}
        self.ledger[rrn] = entry
        if rc == "00" and kind == "void" and original_rrn in self.ledger:
            self.ledger[original_rrn]["status"] = "voided"
        if rc == "00" and kind == "refund" and original_rrn in self.ledger:
            orig = self.ledger[original_rrn]
            orig["refunded"] = orig.get("refunded", 0) + (req.amount or 0)
        return rc, {"37": rrn, "38": entry["auth"]}

    # -- what the cardholder sees -----------------------------------------------------------------
    def charges_standing(self) -> list[dict[str, Any]]:
        """Sales the cardholder pays for: approved, not reversed, not voided."""
        return [e for e in self.ledger.values() if e["kind"] in ("sale", "preauth") and e["status"] == "approved"]

    def net_charged(self) -> int:
        net = 0
        for e in self.ledger.values():
            if e["status"] != "approved":
                continue
            if e["kind"] in ("sale", "preauth"):
                net += e["amount"] - e.get("refunded", 0)
        return net
