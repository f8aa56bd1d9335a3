"""``posguard run``: the terminal service.

Start-up: read the TOML config and list *every* problem (exit 2 if any); open the journal; recover what a crash
interrupted (in-flight transactions are reversed, the queue is sent); then serve operator commands on a local
UNIX socket (``operator.socket``) or on stdin (``operator.socket = "stdin"`` or ``--stdin``), one line each:

    sale AMOUNT [order=REF]      read the card in the reader, charge AMOUNT (minor units)
    swipe AMOUNT [order=REF]     read a swipe on the magstripe reader (reader.magstripe_port), charge AMOUNT
    void TXN | refund TXN AMOUNT
    sign TXN | refuse TXN        the signature was captured / refused (the customer left)
    wrong_card TXN               read the card the customer meant, correct the charge
    wrong_amount TXN AMOUNT      AMOUNT is the order total that should have been charged
    dispute TXN                  the customer says the void/refund never arrived
    settle | flush | status | quit

Each answer is one JSON line. Logs are JSON lines on stdout (``ts``, ``level``, ``event``, ``msg``) with card
data masked. SIGTERM/SIGINT finish the command in progress, close the journal and exit 0.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from posguard.config import DEFAULT_CONFIG, Config, load_config
from posguard.sensitive import mask_digits_in_text

__all__ = ["Service", "serve"]


class JsonLog:
    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: str, msg: str = "", level: str = "info", **fields: Any) -> None:
        rec = {"ts": round(time.time(), 3), "level": level, "event": event, "msg": mask_digits_in_text(msg)}
        rec.update({k: mask_digits_in_text(v) if isinstance(v, str) else v for k, v in fields.items()})
        with self._lock:
            self.stream.write(json.dumps(rec, sort_keys=True) + "\n")
            self.stream.flush()


class Service:
    def __init__(self, cfg: Config, log: JsonLog, *, record: str | None = None) -> None:
        from posguard.capture.format import CaptureWriter
        from posguard.clock import SystemClock
        from posguard.engine.detectors import Detectors
        from posguard.engine.engine import TerminalConfig, TransactionEngine
        from posguard.engine.hostlink import HostLinkConfig, TcpHostLink
        from posguard.engine.journal import Journal
        from posguard.service.till import Till

        self.cfg, self.log = cfg, log
        self.clock = SystemClock()
        self.terminal = TerminalConfig(cfg.tid, cfg.mid, cfg.token_key, cfg.data_key, currency=cfg.currency,
                                       host_timeout=cfg.timeout)
        self.journal = Journal(cfg.journal, clock=self.clock)
        self.link = TcpHostLink(HostLinkConfig(cfg.host, cfg.port, dialect=cfg.dialect, framing=cfg.framing,
                                               response_timeout=cfg.timeout), clock=self.clock)
        self.engine = TransactionEngine(self.journal, self.link, cfg.dialect, self.terminal, self.clock,
                                        Detectors.default(self.clock))
        path = record or cfg.record
        self.writer = CaptureWriter(path, dialect=cfg.dialect, tid=cfg.tid, mid=cfg.mid, clock=self.clock,
                                    terminal_extra={"currency": cfg.currency, "timeout": cfg.timeout},
                                    append=True) if path else None
        self.till = Till(self.engine, dialect=cfg.dialect, say=lambda line: log("till", line), writer=self.writer)
        self.reader: Any = None
        self.magstripe: Any = None
        self._tap: Any = None  # the Twin link's frame observer when recording
        self._cards = 0
        self.stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        report = self.engine.recover()
        self.log("recovered", "start-up recovery done", abandoned=len(report.abandoned),
                 reversals=len(report.reversals_released), advices=len(report.advices_released),
                 still_pending=len(report.still_pending))
        self.reader = self._open_reader()
        if self.writer is not None and self.reader is not None:
            from posguard.capture.taps import tap_frames

            self._tap = tap_frames(self.reader, self.writer)
        if self.cfg.magstripe_port:
            from posguard.drivers.magstripe import MagstripeReader

            try:
                self.magstripe = MagstripeReader(self.cfg.magstripe_port)
            except Exception as exc:  # noqa: BLE001 - the service runs without a swipe reader and says so
                self.log("magstripe_unavailable", f"{type(exc).__name__}: {exc}", level="error",
                         hint=str(getattr(exc, "hint", "")))

    def _open_reader(self) -> Any:
        if self.cfg.reader_kind == "none":
            return None
        try:
            if self.cfg.reader_kind == "twin":
                from posguard.drivers.twin.reader import TwinReader

                return TwinReader(self.cfg.serial_port)
            from posguard.drivers.pcsc import PcscReader

            return PcscReader(self.cfg.reader_name or None)
        except Exception as exc:  # noqa: BLE001 - the service runs without a reader and says so
            self.log("reader_unavailable", f"{type(exc).__name__}: {exc}", level="error",
                     hint=str(getattr(exc, "hint", "")))
            return None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        if self._tap is not None:
            self._tap.flush()
        if self.magstripe is not None:
            self.magstripe.close()
        self.link.close()
        self.journal.close()
        if self.writer is not None:
            self.writer.close()
        self.log("stopped", "journal closed")

    # -- commands ----------------------------------------------------------------------------------
    def read_card(self) -> str:
        from posguard.emv.engine_card import card_data
        from posguard.emv.session import read_card
        from posguard.emv.terminal import EmvTerminal, Transaction

        if self.reader is None:
            raise RuntimeError("no card reader: check reader.* in the configuration (posguard diagnose)")
        self.reader.wait_for_card(30.0)
        session = read_card(self.reader, EmvTerminal(pan_token_key=self.terminal.token_key,
                                                     terminal_id=self.terminal.terminal_id), Transaction(amount=0))
        self.reader.power_off()
        self._cards += 1
        ref = f"c{self._cards}"
        self.till.add_card(ref, card_data(session))
        if self._tap is not None:
            self._tap.flush()  # the PAN is known now: the card read's frames can be sanitised
        self.log("card_read", f"{session.label} {session.masked_pan}", cvm=session.cvm_required)
        return ref

    def read_swipe(self) -> str:
        from posguard.drivers.magstripe import swiped_card

        if self.magstripe is None:
            raise RuntimeError("no magstripe reader: set reader.magstripe_port in the configuration")
        data = self.magstripe.read_swipe(30.0)
        card = swiped_card(data, self.terminal.token_key)
        self._cards += 1
        ref = f"c{self._cards}"
        if self.writer is not None:
            self.writer.swipe(data.track2_data(), ref=ref, has_track1=data.has_track1)
        self.till.add_card(ref, card, source="magstripe")
        self.log("card_swiped", f"{card.pan_masked}", entry_mode=card.entry_mode, service_code=data.service_code)
        return ref

    def handle(self, line: str) -> dict[str, Any]:
        words = line.split()
        if not words:
            return {"ok": False, "error": "empty command"}
        verb, args = words[0].lower(), words[1:]
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        try:
            before = len(self.till.incidents)
            result = self._dispatch(verb, pos, kw)
            incidents = [i.to_dict() for i in self.till.incidents[before:]]
            return {"ok": True, **result, "incidents": incidents}
        except Exception as exc:  # noqa: BLE001 - an operator command never takes the service down
            self.log("command_failed", f"{verb}: {type(exc).__name__}: {exc}", level="warning")
            return {"ok": False, "error": mask_digits_in_text(f"{type(exc).__name__}: {exc}")}

    def _dispatch(self, verb: str, pos: list[str], kw: dict[str, str]) -> dict[str, Any]:
        t = self.till
        if verb == "sale":
            res = t.do("sale", card=self.read_card(), amount=int(pos[0]), **({"order": kw["order"]} if "order" in kw
                                                                                 else {}))
            return _txn(res)
        if verb == "swipe":
            res = t.do("sale", card=self.read_swipe(), amount=int(pos[0]),
                       **({"order": kw["order"]} if "order" in kw else {}))
            return _txn(res)
        if verb == "void":
            return _txn(t.do("void", txn=pos[0]))
        if verb == "refund":
            return _txn(t.do("refund", txn=pos[0], amount=int(pos[1])))
        if verb == "sign":
            return _txn(t.do("sign", txn=pos[0]))
        if verb == "refuse":
            t.do("signature_refused", txn=pos[0])
            return {}
        if verb == "wrong_card":
            t.do("wrong_card", txn=pos[0], card=self.read_card())
            return {}
        if verb == "wrong_amount":
            t.do("wrong_amount", txn=pos[0], amount=int(pos[1]))
            return {}
        if verb == "dispute":
            t.do("dispute", txn=pos[0])
            return {}
        if verb in ("settle", "flush"):
            t.do(verb)
            return {}
        if verb == "status":
            rows = self.journal.query("SELECT state, COUNT(*) FROM transactions GROUP BY state")
            return {"batch": self.journal.current_batch(), "states": {r[0]: r[1] for r in rows},
                    "pending": len(self.journal.saf_items(["queued", "sent"]))}
        if verb == "quit":
            self.stopping.set()
            return {}
        raise ValueError(f"unknown command {verb!r}; see posguard run --help")

    # -- operator channels ---------------------------------------------------------------------------
    def serve_stdin(self, stream: IO[str], out: IO[str]) -> None:
        sel = selectors.DefaultSelector()
        sel.register(stream, selectors.EVENT_READ)
        while not self.stopping.is_set():
            if not sel.select(timeout=0.2):
                continue
            line = stream.readline()
            if not line:
                break
            if line.strip():
                out.write(json.dumps({"answer": self.handle(line)}, sort_keys=True) + "\n")
                out.flush()

    def serve_socket(self, path: str) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            p.unlink()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        os.chmod(path, 0o660)
        srv.listen(4)
        srv.settimeout(0.2)
        self.log("listening", f"operator socket {path}")
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                with conn, conn.makefile("rw", encoding="utf-8") as fh:
                    for line in fh:
                        fh.write(json.dumps(self.handle(line), sort_keys=True) + "\n")
                        fh.flush()
                        if self.stopping.is_set():
                            break
        finally:
            srv.close()
            p.unlink(missing_ok=True)


def _txn(res: Any) -> dict[str, Any]:
    if res is None:
        return {"refused": True}
    return {"txn": res.txn_id, "state": res.state, "rc": res.response_code, "rrn": res.rrn}


def serve(config: str = DEFAULT_CONFIG, *, stdin: bool = False, record: str | None = None,
          check_config: bool = False) -> int:
    """``posguard run`` (:mod:`posguard.cli.run` parses its arguments): 2 on configuration problems, else 0."""
    log = JsonLog()
    cfg, problems = load_config(config)
    for problem in problems:
        log("config_problem", str(problem), level="error", key=problem.key)
    if problems:
        log("not_started", f"{len(problems)} configuration problem(s) in {config}; fix them all and start "
                           "again", level="error")
        return 2
    if check_config:
        log("config_ok", f"{config} is usable")
        return 0
    service = Service(cfg, log, record=record)

    def _stop(signum: int, _frame: Any) -> None:
        log("signal", f"{signal.Signals(signum).name}: stopping")
        service.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        service.start()
        log("started", f"terminal {cfg.tid} {cfg.dialect} host {cfg.host}:{cfg.port}")
        if stdin or cfg.operator_socket == "stdin":
            service.serve_stdin(sys.stdin, sys.stdout)
        else:
            service.serve_socket(cfg.operator_socket)
    finally:
        service.close()
    return 0
