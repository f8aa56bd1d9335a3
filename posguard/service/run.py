"""``posguard run``: the terminal service.

Start-up: read the TOML config and list *every* problem (exit 2 if any); open the journal; recover what a crash
interrupted (in-flight transactions are reversed, the queue is sent); then serve operator commands on a local
UNIX socket (``operator.socket``) or on stdin (``operator.socket = "stdin"`` or ``--stdin``), one line each:

    sale AMOUNT [order=REF]      read the card in the reader, charge AMOUNT (minor units)
    swipe AMOUNT [order=REF]     read a swipe on the magstripe reader (reader.magstripe_port), charge AMOUNT
    void TXN | refund TXN AMOUNT
    sign TXN [esig=PATH|paper=yes]   the signature was captured (the pad's file kept as evidence / re-signed copy)
    refuse TXN [contact=phone:N|email:A]   the customer left unsigned: a follow-up task (guide 004)
    contacted TXN | keep TXN | consent_void TXN sup=.. | pad_fault TXN   the follow-up's contact and outcomes
    wrong_card TXN               read the card the customer meant, correct the charge
    wrong_amount TXN AMOUNT      AMOUNT is the order total that should have been charged
    dispute TXN                  the customer says the void/refund never arrived
    cancel                       stop waiting for the card (the sale in progress ends; nothing is sent)
    settle | flush | status | help | quit
    reconcile FILE               compare the acquirer's settlement report with the journal (docs/settlement-report.md)

Every line is checked before anything acts (:mod:`posguard.service.commands`): a bad one is refused with the
reason, and the card reader and the host are never touched for it. Each answer is one JSON line with ``ok``;
a refusal carries ``error``. The socket serves many clients at once (:mod:`posguard.service.operator`: peer
credentials checked, line and idle limits); ``status`` answers at once, even while a sale waits for the host.

Only one service runs on a journal (a lock beside it; a second start names the holder's pid). Logs are JSON
lines on stdout through stdlib :mod:`logging` (:mod:`posguard.logs`: ``ts``, ``level``, ``event``, ``msg`` and
the event's fields), at ``--log-level`` and above, with journald priorities under systemd and card numbers
masked. The card reader is opened when it appears (:mod:`posguard.service.reader_slot`); a sale waits
``reader.card_wait`` seconds for the card, and ``cancel`` (answered at once on the socket) or SIGTERM ends
the wait.

Exit status: 0 after ``quit``, SIGTERM or SIGINT (the command in progress finishes, every client is closed,
the journal is closed) or the end of stdin in ``--stdin`` mode; 2 when the configuration has problems or the
journal is held by another service; 1 on any other stop, so that ``Restart=on-failure`` brings it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import sqlite3
import sys
import threading
import time
from concurrent.futures import Future
from typing import IO, Any

from posguard.config import DEFAULT_CONFIG, Config, load_config
from posguard.engine.journal import JournalError
from posguard.logs import LineHandler, event, setup_logging
from posguard.sensitive import mask_digits_in_text
from posguard.service.commands import VERBS, Command, CommandError, parse, usage
from posguard.service.notify import Heartbeat, Notifier, Watchdog, watchdog_interval

__all__ = ["Service", "serve"]


class EventLog:
    """The service's named events on the ``posguard.service`` logger (:mod:`posguard.logs` formats them):
    ``log("service.started", "terminal ...", level="warning", key=value)``."""

    def __init__(self, name: str = "posguard.service") -> None:
        self.logger = logging.getLogger(name)

    def __call__(self, name: str, msg: str = "", level: str = "info", **fields: Any) -> None:
        event(self.logger, name, msg, level=getattr(logging, level.upper()), **fields)


class Service:
    """The terminal: reader, engine, host link, till — driven from one thread (:meth:`run_loop`), fed by the
    operator channels. Nothing here talks to the engine from another thread."""

    notifier = Notifier()  # systemd's (serve() sets it from $NOTIFY_SOCKET); silent by default
    heartbeat: Heartbeat | None = None  # beaten by run_loop when a watchdog watches it

    def __init__(self, cfg: Config, log: EventLog, *, record: str | None = None) -> None:
        from posguard.capture.format import CaptureWriter, header_policies
        from posguard.clock import SystemClock
        from posguard.engine.detectors import Detectors
        from posguard.engine.engine import EnginePolicies, TerminalConfig, TransactionEngine
        from posguard.engine.hostlink import HostLinkConfig, TcpHostLink, reversal_timeout_for
        from posguard.engine.instance_lock import JournalLock
        from posguard.engine.journal import Journal
        from posguard.engine.keys import load_tmk
        from posguard.engine.saf import SafPolicy
        from posguard.service.till import Till

        self.cfg, self.log = cfg, log
        self.lock = JournalLock(cfg.journal).acquire()  # before the journal is opened: one service per journal
        try:
            self.clock = SystemClock()
            tmk = load_tmk(cfg.tmk_file) if cfg.tmk_file else None
            self.terminal = TerminalConfig(cfg.tid, cfg.mid, cfg.token_key, cfg.data_key, currency=cfg.currency,
                                           host_timeout=cfg.timeout, tmk=tmk, timezone=cfg.timezone)
            self.journal = Journal(cfg.journal, clock=self.clock)
            reversal_timeout = reversal_timeout_for(cfg.timeout)
            self.link = TcpHostLink(HostLinkConfig(cfg.host, cfg.port, dialect=cfg.dialect, framing=cfg.framing,
                                                   response_timeout=cfg.timeout, reversal_timeout=reversal_timeout,
                                                   **_static_mac(cfg)),
                                    clock=self.clock)
            # with a master key the terminal signs on at every start, for fresh working keys
            policies = EnginePolicies(saf=SafPolicy(timeout=reversal_timeout), sign_on_at_start=tmk is not None,
                                      key_max_age=cfg.key_max_age if tmk is not None else None)
            self.engine = TransactionEngine(self.journal, self.link, cfg.dialect, self.terminal, self.clock,
                                            Detectors.default(self.clock), policies)
            path = record or cfg.record
            # the policies the engine runs with, so that a replay times the reversals as this terminal does
            self.writer = CaptureWriter(path, dialect=cfg.dialect, tid=cfg.tid, mid=cfg.mid, clock=self.clock,
                                        terminal_extra={"currency": cfg.currency, "timeout": cfg.timeout},
                                        extra={"policies": header_policies(policies)},
                                        append=True) if path else None
        except BaseException:
            self.lock.release()
            raise
        self.till = Till(self.engine, dialect=cfg.dialect, writer=self.writer,  # its events: posguard.till
                         policies=_flow_policies(cfg))
        self.till.presenter = _ServicePresenter(self)  # every charge reads the card at its amount
        from posguard.service.supervisor import SupervisorGate

        self.supervisor = SupervisorGate(cfg.supervisor_id, cfg.supervisor_credential, self.clock)
        from posguard.service.reader_slot import ReaderSlot

        self.slot = ReaderSlot(cfg.reader_kind, name=cfg.reader_name, serial_port=cfg.serial_port,
                               on_open=self._reader_opened)
        self._cancel = threading.Event()  # the operator's "cancel": ends the wait for a card
        from posguard.service.pin_pad import PinPadSlot

        self.pinpad = PinPadSlot(cfg.pinpad_port, log)  # online PIN (pinpad.port); none: no PIN announced
        self.waiting_for_card = False
        self.waiting_for_pin = False  # the cardholder is at the PIN pad: "cancel" cancels the entry
        self.magstripe: Any = None
        self._tap: Any = None  # the Twin link's frame observer when recording
        self._cards = 0
        self.stopping = threading.Event()
        self.requested_stop = False
        self._work: queue.Queue[tuple[str, Future[dict[str, Any]]]] = queue.Queue()
        self._status: dict[str, Any] = {}
        self._displaced: str | None = None  # the journal's file was deleted or replaced: what was done about it
        self._displaced_why: str | None = None
        self._journal_problem: str | None = None  # the last command's journal write failed: what was said
        self.exit_status: int | None = None  # set when the service stops for a reason of its own (serve's status)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        report = self.engine.recover()
        self.log("service.recovered", "start-up recovery done", abandoned=len(report.abandoned),
                 reversals=len(report.reversals_released), advices=len(report.advices_released),
                 still_pending=len(report.still_pending), quarantined=len(report.quarantined))
        self.till.track_queued_reversals()  # their incident is recorded when the host acknowledges them
        self.till.reversed_at_start(report.reversals_released)  # their customers are told, as at the counter
        for txn_id in report.quarantined:
            self.log("journal.quarantined", f"{txn_id} could not be recovered and was left as it is; see `posguard "
                                    "incidents`", level="error", txn=txn_id)
        self.slot.poll(force=True)  # a reader missing now is opened when it appears (run_loop tends it)
        if self.cfg.magstripe_port:
            from posguard.drivers.magstripe import MagstripeReader

            try:
                self.magstripe = MagstripeReader(self.cfg.magstripe_port)
            except Exception as exc:  # noqa: BLE001 - the service runs without a swipe reader and says so
                self.log("magstripe.unavailable", f"{type(exc).__name__}: {exc}", level="error",
                         hint=str(getattr(exc, "hint", "")))
        self._refresh_status()

    @property
    def reader(self) -> Any:
        return self.slot.reader

    def _reader_opened(self, reader: Any) -> None:
        if self.writer is not None:
            from posguard.capture.taps import tap_frames

            if self._tap is not None:
                self._tap.flush()
            self._tap = tap_frames(reader, self.writer)

    def _tend_reader(self) -> None:
        """Idle: open a reader that was missing, if it is due (hot-plug)."""
        if self.slot.kind != "none" and self.slot.reader is None and self.slot.poll() is not None:
            self._refresh_status()

    #: seconds the sign-off at a stop waits for the host: a courtesy (the next start signs on anyway) that must
    #: not take the stop past systemd's TimeoutStopSec after a command that already waited for a silent host
    SIGN_OFF_WAIT = 5.0

    def _sign_off(self) -> None:
        """A clean stop signs off (CUP 0820 / ISO 0800/70 = 002) and forgets the working keys (issue 12)."""
        try:
            result = self.engine.sign_off(reason="shutdown", timeout=min(self.cfg.timeout, self.SIGN_OFF_WAIT))
        except Exception as exc:  # the stop goes on: the next start signs on anyway
            self.log("service.sign_off_failed", f"sign-off at shutdown failed: {exc}", level="warning")
            return
        if result is None:
            return
        if result.response_code is None:
            self.log("service.sign_off_unanswered", f"the sign-off (STAN {result.stan}) got no answer within "
                     f"{min(self.cfg.timeout, self.SIGN_OFF_WAIT):g} s; the working keys are forgotten and the next "
                     "start signs on", level="warning", stan=result.stan)
            return
        self.log("service.signed_off", "signed off", rc=result.response_code, stan=result.stan)

    def close(self) -> None:
        if self.requested_stop:
            self._sign_off()
        self.slot.close()
        if self._tap is not None:
            self._tap.flush()
        if self.magstripe is not None:
            self.magstripe.close()
        self.pinpad.close()
        self.till.close()
        self.link.close()
        self.journal.close()
        if self.writer is not None:
            self.writer.close()
        self.lock.release()
        self.log("service.stopped", "journal closed")

    # -- the one thread that acts ------------------------------------------------------------------
    def submit(self, line: str) -> Future[dict[str, Any]]:
        """Queue ``line`` for :meth:`run_loop` (from any thread); the future holds the answer."""
        done: Future[dict[str, Any]] = Future()
        if self.stopping.is_set():
            done.set_result({"ok": False, "error": "the service is stopping"})
        else:
            self._work.put((line, done))
        return done

    def ask(self, line: str, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`submit` and wait: what an operator channel calls."""
        return self.submit(line).result(timeout)

    def run_loop(self) -> None:
        """Run queued commands one at a time until :attr:`stopping`; then answer what is left."""
        self.notifier.ready(f"terminal {self.cfg.tid}: serving")
        next_tick = 0.0
        while not self.stopping.is_set():
            if self.heartbeat is not None:
                self.heartbeat.beat()
            try:
                line, done = self._work.get(timeout=0.2)
            except queue.Empty:
                if self._journal_displaced() is not None:
                    continue  # stopping, or holding the only copy of the journal: nothing else runs
                self._tend_reader()
                if time.monotonic() >= next_tick:  # idle: the time-driven detectors, on the engine's clock
                    next_tick = time.monotonic() + self.TICK_EVERY
                    self._tick()
                continue
            displaced = self._journal_displaced(command=True)  # nothing acts on a journal that is not on disk
            if displaced is not None:
                done.set_result({"ok": False, "error": f"{displaced}; nothing was done for this command"})
                continue
            done.set_result(self.handle(line))
        self.notifier.stopping(f"terminal {self.cfg.tid}: stopping")
        while True:
            try:
                _line, done = self._work.get_nowait()
            except queue.Empty:
                break
            done.set_result({"ok": False, "error": "the service is stopping"})

    def _journal_displaced(self, *, command: bool = False) -> str | None:
        """The journal's file deleted or replaced under the running service (SQLite would go on writing to the
        deleted file, and the day would be lost when the process ends): write the open journal back to its path
        (or beside the file now there), say so, and stop with exit 1 so that the service starts again on it.
        When the copy cannot be written the service stays up holding the only copy and refuses every command,
        trying the copy again at each one (``command``). None while the journal is in place."""
        if self._displaced is not None and (self.stopping.is_set() or not command):
            return self._displaced
        if not self.lock.still_held():
            taken = self._retake_lock()
            if taken is not None:
                return taken
        why = self._displaced_why or self.journal.displaced()
        if why is None:
            return None
        self._displaced_why = why
        path = self.journal.path
        dest = path if not path.exists() else path.with_name(f"{path.name}.displaced-{int(time.time())}")
        try:
            self.journal.copy_to(dest)
        except (OSError, sqlite3.Error) as exc:
            # the day's records now exist only in this process: stopping it would lose them
            said = (f"{why}; writing it back to {dest} failed ({exc}): every command is refused and the service "
                    f"stays up (process {os.getpid()}) holding the only copy; make room at {path.parent}, then send "
                    "any command to write it back")
        else:
            said = (f"{why}; it was written back to {dest} from the open journal" if dest == path else
                    f"{why}; the open journal was written to {dest}: put it back at {path} before the service "
                    "starts again (the file now there is not the journal it was writing)")
            said += "; the service stops (exit 1) so that it starts again on it"
            self.stopping.set()  # not a requested stop: exit 1, and no sign-off on a journal that is not on disk
        self._displaced = said
        self.log("journal.displaced", said, level="critical", journal=str(path), copy=str(dest))
        self._status["journal"] = "failing: " + said
        return said

    def _retake_lock(self) -> str | None:
        """The journal's lock file was deleted or replaced under the service (a second ``posguard run`` would
        start on the journal): hold it again. When another service took it meanwhile, stop (exit 2): one service
        per journal. None when the lock is held again."""
        from posguard.engine.instance_lock import JournalInUse

        try:
            self.lock.retake()
        except JournalInUse as exc:
            said = (f"the journal's lock file {self.lock.path} was deleted while the service ran and another process "
                    f"took the journal: {exc}; this service stops (exit 2): one service per journal")
            self._displaced = said
            self.exit_status = 2
            self.log("journal.taken", said, level="critical", holder_pid=exc.pid)
            self._status["journal"] = "failing: " + said
            self.stopping.set()
            return said
        self.log("journal.lock_retaken", f"the journal's lock file {self.lock.path} was deleted or replaced while "
                 "the service ran; it is held again", level="warning")
        return None

    #: seconds between idle ticks of the time-driven detectors (signature deadlines, queue age, batch age)
    TICK_EVERY = 5.0

    def _tick(self) -> None:
        try:
            self.till.tick()
        except Exception as exc:  # noqa: BLE001 - a detector never takes the service down
            self.log("tick_failed", f"{type(exc).__name__}: {exc}", level="warning")

    # -- commands ----------------------------------------------------------------------------------
    def next_card_ref(self) -> str:
        """The reference of the next card presented (``c1``, ``c2``...): what the capture's op record names."""
        self._cards += 1
        while f"c{self._cards}" in self.till.cards:  # a reference already holding a stored card (a swipe)
            self._cards += 1
        return f"c{self._cards}"

    def present_card(self, request: Any) -> Any:
        """The till's card presenter (:class:`posguard.presenting.CardPresenter`): wait for the card in the
        reader, then read it for ``request`` (a new EMV session at the request's amount, kept open for the
        second GENERATE AC). Raises :class:`posguard.presenting.CardNotPresented` with the reason."""
        from posguard.drivers import errors as rerr
        from posguard.emv.errors import CardSessionError
        from posguard.emv.online_pin import PinEntryAborted
        from posguard.emv.presenter import present_chip
        from posguard.emv.terminal import EmvTerminal, terminal_capabilities
        from posguard.presenting import CardNotPresented

        try:
            reader = self._wait_for_card()
        except CommandError as exc:
            raise CardNotPresented(str(exc)) from None
        try:
            online_pin = self.pinpad.entry(self.engine, cancel=self._cancel)
            self.waiting_for_pin = online_pin is not None
            terminal = EmvTerminal(pan_token_key=self.terminal.token_key, terminal_id=self.terminal.terminal_id,
                                   capabilities=terminal_capabilities(pin_pad=online_pin is not None),
                                   timezone=self.cfg.timezone)
            shown = present_chip(reader, terminal, request, online_pin=online_pin, evidence={"source": self.slot.kind})
        except PinEntryAborted as exc:
            _power_off(reader)
            self.log("card.pin_aborted", str(exc), level="info", reason=exc.reason)
            raise CardNotPresented(f"no sale: {exc}") from None
        except (rerr.ReaderUnplugged, rerr.NoReader, rerr.ServiceUnavailable) as exc:
            self.slot.lost(str(exc))
            raise CardNotPresented(f"card reader lost: {exc}") from None
        except (CardSessionError, rerr.CardMute, rerr.CardReset, rerr.TransportError) as exc:
            _power_off(reader)
            self.till.chip_failed(exc)  # the chip did not work: its stripe may be swiped now (fallback)
            raise
        except Exception:
            _power_off(reader)
            raise
        finally:
            self.waiting_for_pin = False
        if self._tap is not None:
            self._tap.flush()  # the PAN is known now: the card read's frames can be sanitised
        self.log("card.read", f"{shown.session.label} {shown.session.masked_pan} for {request.amount / 100:.2f}",
                 cvm=shown.session.cvm_required, atc=shown.session.atc)
        return shown

    def _wait_for_card(self) -> Any:
        from posguard.drivers import errors as rerr
        from posguard.drivers.waits import wait_for_card

        reader = self.slot.poll(force=True)
        if reader is None:
            where = ('reader.kind is "none"' if self.slot.kind == "none" else self.slot.state())
            raise CommandError(f"no card reader: {where}; check reader.* in the configuration (posguard diagnose)")
        self._cancel.clear()
        self.waiting_for_card = True
        try:
            wait_for_card(reader, self.cfg.card_wait,
                          cancelled=lambda: self._cancel.is_set() or self.stopping.is_set(),
                          progress=lambda s: self.log("card.waiting", f"waiting for a card: {s:.0f} s of "
                                                      f"{self.cfg.card_wait:g}", level="debug"))
            self.waiting_for_card = False
        except rerr.WaitCancelled:
            self.log("card.cancelled", "the wait for a card was cancelled; nothing was sent", level="info")
            raise CommandError("cancelled: no card was read and nothing was sent") from None
        except rerr.NoCard:
            raise CommandError(f"no card inserted within {self.cfg.card_wait:g} s (reader.card_wait); nothing was "
                               "sent") from None
        except (rerr.ReaderUnplugged, rerr.NoReader, rerr.ServiceUnavailable) as exc:
            self.slot.lost(str(exc))
            raise CommandError(f"card reader lost: {exc}") from None
        finally:
            self.waiting_for_card = False
        return reader

    def read_swipe(self) -> str:
        from posguard.card_entry import InsertChipCard

        if self.magstripe is None:
            raise CommandError("no magstripe reader: set reader.magstripe_port in the configuration")
        data = self.magstripe.read_swipe(30.0)
        try:
            card = self.till.swiped(data)  # a chip card's stripe only after its chip read failed (card_entry)
        except InsertChipCard as exc:
            self.log("card.insert_chip", str(exc), level="warning", service_code=f"{data.service_code[:1]}xx")
            raise CommandError(f"{exc}; nothing was sent") from None
        ref = self.next_card_ref()
        if self.writer is not None:
            self.writer.swipe(data.track2_data(), ref=ref, has_track1=data.has_track1)
        self.till.add_card(ref, card, source="magstripe")
        self.log("card.swiped", f"{card.pan_masked}", entry_mode=card.entry_mode, service_code=data.service_code)
        return ref

    def handle(self, line: str) -> dict[str, Any]:
        """One operator line, checked before anything acts; never raises."""
        try:
            command = parse(line, max_amount=self.cfg.max_amount)
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}
        try:
            before = len(self.till.incidents)
            if VERBS[command.verb].gives_money_back:  # guide 001: a supervisor reviews money going back
                self.till.supervisor = self.supervisor.approve(command.supervisor, command.verb)
            elif command.override and command.supervisor is not None:  # who approved charging a paid order again
                self.till.supervisor = self.supervisor.approve(command.supervisor, "override")
            result = self._dispatch(command)
            if command.verb not in ("status", "help", "cancel"):
                self._journal_problem = None  # a command that writes the journal went through
            incidents = [i.to_dict() for i in self.till.incidents[before:]]
            if self.till.refusal is not None:
                return {"ok": False, "refused": True, "error": self.till.refusal, **result, "incidents": incidents}
            return {"ok": True, **result, "incidents": incidents}
        except (CommandError, JournalError) as exc:  # a JournalError names the journal and what to do
            return {"ok": False, "error": str(exc)}
        except sqlite3.Error as exc:  # the journal refused a write (disk full, read-only, I/O error)
            said = (f"{command.verb} stopped: the journal {self.cfg.journal} cannot be written ({exc}); free disk "
                    "space or check the storage (posguard diagnose --check journal), then try again; `status` "
                    "shows what the journal holds")
            self._journal_problem = said
            self.log("journal.write_failed", said, level="error", verb=command.verb)
            return {"ok": False, "error": said}
        except Exception as exc:  # noqa: BLE001 - an operator command never takes the service down
            self.log("command.failed", f"{command.verb}: {type(exc).__name__}: {exc}", level="warning")
            return {"ok": False, "error": mask_digits_in_text(f"{type(exc).__name__}: {exc}")}
        finally:
            self.till.supervisor = None
            self._refresh_status()

    def _dispatch(self, c: Command) -> dict[str, Any]:
        t = self.till
        order: dict[str, Any] = {"order": c.order} if c.order else {}
        if c.override:
            order["override"] = True
        if c.verb in ("sale", "swipe") and c.order and not c.override:
            refusal = t.paid_order(c.order)  # before the card is read: nothing reaches the reader or the wire
            if refusal is not None:
                t.refusal = refusal
                return {}
        if c.verb == "sale":  # the card is read inside the sale, at its amount (Service.present_card)
            return _txn(t.do("sale", card=self.next_card_ref(), amount=c.amount, **order))
        if c.verb == "swipe":
            return _txn(t.do("sale", card=self.read_swipe(), amount=c.amount, **order))
        if c.verb == "void":
            return _txn(t.do("void", txn=c.txn))
        if c.verb == "refund":
            return _txn(t.do("refund", txn=c.txn, amount=c.amount))
        if c.verb in _UNSIGNED_OPS:  # guide 004: each moves the sale's one unsigned incident
            return _unsigned(t, c)
        elif c.verb == "wrong_card":
            t.do("wrong_card", txn=c.txn, card=self.next_card_ref())
        elif c.verb == "wrong_amount":
            t.do("wrong_amount", txn=c.txn, amount=c.amount)
        elif c.verb == "dispute":
            t.do("dispute", txn=c.txn)
        elif c.verb in ("confirm", "decline"):
            t.do(c.verb, incident=c.incident)
        elif c.verb == "settle":
            t.do("settle")
        elif c.verb == "reconcile":
            t.delivered = []
            found = t.do("reconcile", report=c.report) or []
            return {"reconciled": [i.incident_id for i in found], "outbox": list(t.delivered)}
        elif c.verb == "flush":
            left = self.engine.flush()
            return {"pending": len(left), **({"waiting": self._first_waiting()} if left else {})}
        elif c.verb == "status":
            return self.status()
        elif c.verb == "cancel":
            return {"cancelled": False}  # nothing was waiting for a card (a wait is cancelled by quick())
        elif c.verb == "help":
            return {"commands": {v.name: f"{usage(v)} — {v.help}" for v in VERBS.values()}}
        elif c.verb == "quit":
            self.requested_stop = True
            self.stopping.set()
        return {}

    def _first_waiting(self) -> str:
        """What the queue's first unacknowledged item waits for, and when it is tried again (the answer to a
        ``flush`` that left something)."""
        first = self.journal.saf_items(["queued", "sent"])[0]
        due = max(0.0, first.next_at - self.clock.now())
        return (f"{first.mti} for {first.txn_id}: {first.attempts} attempt(s), last "
                f"{first.last_rc or first.last_error or 'not yet sent'}; next try in {due:.0f} s (flush again then, "
                "or it goes before the next transaction)")

    # -- status, answered without waiting for the engine ---------------------------------------------
    def _refresh_status(self) -> None:
        states = {str(r["state"]): int(r["count"]) for r in self.journal.state_counts()}
        self._status = {
            "batch": self.journal.current_batch(), "states": states,
            "pending": len(self.journal.saf_items(["queued", "sent"])),
            "journal": ("failing: " + self.engine.write_failure if self.engine.write_failure else
                        "failing: " + self._journal_problem if self._journal_problem else "ok"),
            "owed_reversals": sorted(self.engine.owed_reversals),
            "reader": self.slot.state(),
            "at": round(time.time(), 3),
        }

    def status(self) -> dict[str, Any]:
        """What the service last knew (refreshed after every command and when the reader opens), with the
        reader's state now: safe from any thread."""
        return {**self._status, "reader": self.slot.state(), "waiting_for_card": self.waiting_for_card}

    def quick(self, line: str, _peer: Any = None) -> dict[str, Any]:
        """``status``, ``help`` and ``cancel`` for the socket, answered without waiting for a command in
        progress (``cancel`` ends the wait for a card of the sale in progress)."""
        verb = line.split(None, 1)[0].lower() if line.strip() else ""
        if verb == "cancel":
            waiting = self.waiting_for_card or self.waiting_for_pin
            if waiting:
                self._cancel.set()
            return {"ok": True, "cancelled": waiting, "incidents": []}
        if verb == "status":
            return {"ok": True, **self.status(), "incidents": []}
        return {"ok": True, "commands": {v.name: f"{usage(v)} — {v.help}" for v in VERBS.values()}}

    # -- operator channels ---------------------------------------------------------------------------
    def serve_stdin(self, stream: IO[str], out: IO[str]) -> None:
        """Lines from ``stream`` (a thread reads them), answers on ``out``; the end of stdin stops the service."""

        def feed() -> None:
            for line in stream:
                if self.stopping.is_set():
                    break
                if line.strip():
                    answer = self.ask(line)
                    shared = _handler_on(out)
                    if shared is not None:  # the log writes to the same stream: one whole line at a time
                        shared.line(json.dumps({"answer": answer}, sort_keys=True))
                    else:
                        out.write(json.dumps({"answer": answer}, sort_keys=True) + "\n")
                        out.flush()
            self.requested_stop = True
            self.stopping.set()

        threading.Thread(target=feed, name="operator-stdin", daemon=True).start()
        self.run_loop()

    def serve_socket(self, path: str) -> None:
        from posguard.service.operator import OperatorServer

        server = OperatorServer(path, lambda line, _peer: self.ask(line), quick=self.quick,
                                quick_verbs=("status", "help", "cancel"),
                                allow_uids=self.cfg.allow_uids, allow_groups=self.cfg.allow_groups)
        server.open()
        self.log("operator.listening", f"operator socket {path}")
        try:
            self.run_loop()
        finally:
            server.stop(timeout=5.0)


def _flow_policies(cfg: Config) -> Any:
    """The flows' policies from the configuration: notices to ``<data dir>/outbox``, e-signatures to
    ``<data dir>/signatures``, the unsigned follow-up (guide 004) as configured."""
    from posguard.config import data_dir
    from posguard.flows import FlowPolicies

    base = data_dir(cfg)
    return FlowPolicies(timezone=cfg.timezone or None, outbox=str(base / "outbox"),
                        signature_dir=str(base / "signatures"), unsigned_customer_gone=cfg.unsigned_customer_gone,
                        follow_up_deadline=cfg.follow_up_hours * 3600.0)


def _static_mac(cfg: Config) -> dict[str, Any]:
    """The link's MAC settings for ``host.mac_key_file`` (a static key the sign-on's keys do not replace)."""
    if not cfg.mac_key_file:
        return {}
    from posguard.engine.keys import load_static_mac_key
    from posguard.engine.mac import ALGORITHMS, MacScheme
    from posguard.engine.profiles import get_profile

    algorithm = next((a for a in ALGORITHMS if a == cfg.mac_algorithm), get_profile(cfg.dialect).mac_algorithm)
    return {"mac": MacScheme(algorithm, load_static_mac_key(cfg.mac_key_file)), "mac_key_source": "static"}


class _ServicePresenter:
    """The till's card presenter in the service: the card in the reader (:meth:`Service.present_card`)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def present(self, request: Any) -> Any:
        return self._service.present_card(request)


def _power_off(reader: Any) -> None:
    with contextlib.suppress(Exception):  # the card may be gone already
        reader.power_off()


def _handler_on(stream: IO[str]) -> LineHandler | None:
    for h in logging.getLogger("posguard").handlers:
        if isinstance(h, LineHandler) and h.stream is stream:
            return h
    return None


#: operator verb -> till operation for an unsigned sale (guide 004)
_UNSIGNED_OPS = {"sign": "sign", "refuse": "signature_refused", "contacted": "unsigned_contacted",
                 "keep": "unsigned_keep", "consent_void": "unsigned_void", "pad_fault": "unsigned_escalate"}


def _unsigned(till: Any, c: Command) -> dict[str, Any]:
    args: dict[str, Any] = {k: v for k, v in c.options if k != "paper"}
    if c.option("paper") == "yes":
        args["paper"] = True
    res = till.do(_UNSIGNED_OPS[c.verb], txn=c.txn, **args)
    if res is not None or till.refusal is not None:
        return _txn(res)
    txn = till.engine.journal.get_txn(c.txn)
    return {"txn": txn.id, "state": txn.state, "signature": txn.signature}


def _txn(res: Any) -> dict[str, Any]:
    if res is None:
        return {"refused": True}
    return {"txn": res.txn_id, "state": res.state, "rc": res.response_code, "rrn": res.rrn}


def serve(config: str = DEFAULT_CONFIG, *, stdin: bool = False, record: str | None = None,
          check_config: bool = False, log_level: str = "info") -> int:
    """``posguard run`` (:mod:`posguard.cli.run` parses its arguments); exit status as the module says."""
    from posguard.engine.instance_lock import JournalInUse
    from posguard.engine.journal import JournalError
    from posguard.service.operator import SocketRefused

    setup_logging(log_level, sys.stdout)
    log = EventLog()
    cfg, problems = load_config(config)
    for problem in problems:
        log("config.problem", str(problem), level="error", key=problem.key)
    if problems:
        log("service.not_started", f"{len(problems)} configuration problem(s) in {config}; fix them all and start "
                           "again", level="error")
        return 2
    if check_config:
        log("config.ok", f"{config} is usable")
        return 0
    try:
        service = Service(cfg, log, record=record)
    except JournalInUse as exc:
        log("service.not_started", str(exc), level="error", holder_pid=exc.pid)
        return 2
    except JournalError as exc:
        log("service.not_started", str(exc), level="error")
        return 2

    def _stop(signum: int, _frame: Any) -> None:
        log("service.signal", f"{signal.Signals(signum).name}: stopping")
        service.requested_stop = True
        service.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.notifier = Notifier.from_env()
    watchdog = None
    interval = watchdog_interval()
    if service.notifier.enabled and interval:
        # pinged while the acting thread moves; its longest command (a card wait, the host, a reversal) is allowed
        service.heartbeat = Heartbeat(limit=60.0 + 3 * cfg.timeout)
        watchdog = Watchdog(service.notifier, interval, service.heartbeat.alive).start()
    try:
        service.start()
        log("service.started", f"terminal {cfg.tid} {cfg.dialect} host {cfg.host}:{cfg.port}")
        if stdin or cfg.operator_socket == "stdin":
            service.serve_stdin(sys.stdin, sys.stdout)
        else:
            service.serve_socket(cfg.operator_socket)
    except SocketRefused as exc:
        log("service.not_started", str(exc), level="error")
        return 2
    except Exception as exc:  # noqa: BLE001 - say why, and exit non-zero so the supervisor restarts it
        log("service.crashed", f"{type(exc).__name__}: {exc}", level="critical")
        return 1
    finally:
        if watchdog is not None:
            watchdog.stop()
        service.close()
    if service.exit_status is not None:
        return service.exit_status
    return 0 if service.requested_stop else 1
