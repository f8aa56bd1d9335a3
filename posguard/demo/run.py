"""The demo day (:func:`run_demo`, what ``posguard demo`` runs; see :mod:`posguard.demo`)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from posguard.capture.taps import FrameTap, RecordingReader, as_reader, tap_frames
from posguard.demo.day import CARD_PIN, CARDS, DAY, PIN_CARDS, PIN_PAD, PIN_PAD_TMK, SWIPES, Step

__all__ = ["DemoResult", "run_demo", "DEMO_TERMINAL", "demo_policies"]

DEMO_TID, DEMO_MID = "POSGRD01", "MERCHANT0000001"
DEMO_TIMEOUT = 1.5  # seconds the terminal waits for the host in the demo (30 s in production)
#: the demo terminal's master key: the test TMK the acquirer simulator holds for terminals it has no other key for
#: (``firmware_sim/host/keys.py`` TEST_TMK; a test checks they agree). The demo signs on for working keys under it.
DEMO_TMK = PIN_PAD_TMK.hex().upper()  # the terminal master key, which the PIN pad shares
DEMO_TERMINAL = {"tid": DEMO_TID, "mid": DEMO_MID}
DEMO_POLICY_DATA = {"saf_timeout": 1.0, "block_new_transactions": True, "backoff_initial": 0.2,
                    "send_reversal_immediately": True}


@dataclass
class DemoResult:
    incidents: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reader: str = ""
    capture: Path | None = None


def demo_policies() -> Any:
    from posguard.capture.replay import _policies

    return _policies(DEMO_POLICY_DATA, DEMO_TIMEOUT)


def run_demo(dialect: str = "cup", *, record: str | Path | None = None, out: TextIO | None = None,
             reader_kind: str = "auto", journal_dir: str | Path | None = None,
             day: tuple[Step, ...] = DAY) -> DemoResult:
    """Run the day; returns what happened. Raises :class:`posguard.demo.rig.SimulatorsMissing` when the
    simulators are not installed, and their own error class (see :func:`load_simulators`) if one fails."""
    from posguard.capture.format import CaptureWriter
    from posguard.clock import SystemClock
    from posguard.demo.rig import load_simulators
    from posguard.engine.detectors import Detectors
    from posguard.engine.engine import TerminalConfig, TransactionEngine
    from posguard.engine.hostlink import HostLinkConfig, TcpHostLink
    from posguard.engine.journal import Journal
    from posguard.service.till import Till

    stream = out or sys.stdout
    result = DemoResult()
    t0 = time.monotonic()

    def say(line: str) -> None:
        text = f"[{time.monotonic() - t0:5.1f}s] {line}"
        result.lines.append(text)
        print(text, file=stream, flush=True)

    import secrets

    clock = SystemClock()
    token_key, data_key = secrets.token_bytes(32), secrets.token_bytes(32)
    from posguard.engine.keys import TerminalMasterKey

    terminal = TerminalConfig(DEMO_TID, DEMO_MID, token_key, data_key, currency="156", host_timeout=DEMO_TIMEOUT,
                              timezone="Asia/Shanghai", tmk=TerminalMasterKey(bytes.fromhex(DEMO_TMK)))
    scratch = None if journal_dir else Path(tempfile.mkdtemp(prefix="posguard-demo-journal-"))
    workdir = Path(journal_dir) if journal_dir else scratch
    assert workdir is not None
    journal = Journal(workdir / "journal.db", clock=clock)
    writer = None
    if record is not None:
        writer = CaptureWriter(record, dialect=dialect, tid=DEMO_TID, mid=DEMO_MID, clock=clock,
                               extra={"policies": DEMO_POLICY_DATA},
                               terminal_extra={"currency": "156", "timeout": DEMO_TIMEOUT})
        result.capture = Path(record)
    swiped = [s for s in SWIPES if any(k == "op" and d.get("card") == s[0] for k, d in day)]
    tap: FrameTap | None = None
    try:
        make_rig, _ = load_simulators()
        with make_rig(dialect, profile=CARDS[0][1], reader=reader_kind, magstripe=bool(swiped),
                      pin_pad=PIN_PAD) as rig:
            result.reader = rig.reader_kind
            say(f"simulators up: acquirer host ({dialect}) on port {rig.host_port}, "
                f"{'pcscd + vpcd card' if rig.reader_kind == 'pcsc' else 'GemPC Twin on a pty'}")
            link = TcpHostLink(HostLinkConfig("127.0.0.1", rig.host_port, dialect=dialect,
                                              response_timeout=DEMO_TIMEOUT, reversal_timeout=1.0,
                                              connect_timeout=2.0, connect_attempts=2, backoff=0.1), clock=clock)
            engine = TransactionEngine(journal, link, dialect, terminal, clock, Detectors.default(clock),
                                       demo_policies())
            till = Till(engine, dialect=dialect, say=say, writer=writer)
            reader = _open_reader(rig)
            tap = tap_frames(reader, writer)
            pad = _demo_pin_pad(rig, say)
            # every sale reads its card at its amount: one EMV session per transaction (DemoCards)
            till.presenter = DemoCards(rig, reader, dict(CARDS), terminal, say, writer, tap, pad=pad, engine=engine)
            try:
                for ref, profile, overrides in swiped:
                    _swipe_card(rig, till, ref, profile, overrides, terminal, say, writer)
                _run_steps(day, rig, till, engine, say)
            finally:
                reader.close()
                if pad is not None:
                    pad.close()
                link.close()
                if tap is not None:
                    tap.flush()  # the power-off and close frames: no card data
            _report(till, engine, say, rig)
            result.incidents = [i.to_dict() for i in till.incidents]
    finally:
        journal.close()
        if writer is not None:
            writer.close()
        if scratch is not None:  # the day's journal is kept only where asked (--journal-dir)
            shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.monotonic() - t0
    say(f"day done in {result.seconds:.1f} s; every simulator stopped")
    return result


def _open_reader(rig: Any) -> Any:
    if rig.reader_kind == "pcsc":
        from posguard.drivers.pcsc import PcscReader

        return PcscReader("Virtual PCD 00 00", apdu_timeout=5.0)
    from posguard.drivers.twin.reader import TwinReader

    return TwinReader(str(rig.twin_path))


def _demo_pin_pad(rig: Any, say: Callable[[str], None]) -> Any:
    """The rig's encrypting PIN pad, held as the service holds it (:class:`posguard.service.pin_pad.PinPadSlot`):
    each card session asks the slot, which loads the working PIN key of the engine's sign-on into the pad (as the
    sign-on brought it, encrypted under the TMK the pad shares with the terminal) before the first PIN and again
    after every new sign-on — the key the host checks field 52 with."""
    if getattr(rig, "pad", None) is None:
        return None
    from posguard.service.pin_pad import PinPadSlot

    def log(event: str, msg: str, level: str = "info", **fields: Any) -> None:
        if event == "pinpad.key_loaded":
            say(f"PIN pad: the sign-on's working PIN key loaded under the terminal's TMK (check value "
                f"{fields.get('kcv', '?')})")
        elif level != "info":
            say(f"PIN pad: {msg}")

    return PinPadSlot(str(rig.pad.link), log)


def _cardholder_keys_pin(rig: Any, pin: str) -> None:
    """The customer at the pad: waits for "enter PIN", keys the PIN (on the simulator's control channel)."""
    import threading

    def run() -> None:
        deadline = time.monotonic() + 10
        while not rig.pad.pad_status()["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        rig.pad.key_pin(pin)

    threading.Thread(target=run, daemon=True).start()


class DemoCards:
    """The demo's card presenter (:class:`posguard.presenting.CardPresenter`): the card a reference names
    (``c1`` -> its simulator profile) goes into the reader and is read for this sale, at its amount; the
    session stays open for the second GENERATE AC. The capture gets the ATR and APDUs of each read."""

    def __init__(self, rig: Any, reader: Any, profiles: dict[str, str], terminal: Any, say: Callable[[str], None],
                 writer: Any = None, tap: FrameTap | None = None, *, pad: Any = None, engine: Any = None) -> None:
        self.rig, self.reader, self.profiles, self.terminal = rig, reader, profiles, terminal
        self.say, self.writer, self.tap, self.pad, self.engine = say, writer, tap, pad, engine
        self.reads = 0
        self.atc: dict[str, int] = {}  # card reference -> the ATC of its last GENERATE AC

    def present(self, request: Any) -> Any:
        from posguard.drivers.errors import ReaderError
        from posguard.emv.presenter import present_chip
        from posguard.emv.terminal import EmvTerminal, terminal_capabilities
        from posguard.presenting import CardNotPresented

        profile = self.profiles.get(request.ref)
        if profile is None:
            raise CardNotPresented(f"the demo has no card {request.ref!r}; nothing was sent")
        # a real card keeps its ATC between insertions: the simulated one is put back where it stopped
        last = self.atc.get(request.ref)
        self.rig.swap(profile, **({"atc": str(last)} if last is not None else {}))
        self.reader.wait_for_card(10.0)
        rec = RecordingReader(self.reader)
        deadline = time.monotonic() + 3.0
        while True:  # a card just inserted may not be powered yet when the reader first reports it
            try:
                atr = rec.power_on()
                break
            except ReaderError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        started = time.monotonic()
        online_pin = self.pad.entry(self.engine) if self.pad is not None else None
        if online_pin is not None and profile in PIN_CARDS:
            _cardholder_keys_pin(self.rig, CARD_PIN)
        written = 0

        def write_apdus() -> None:
            nonlocal written
            if self.writer is not None:
                if self.tap is not None:
                    self.tap.flush()
                for c, r in rec.apdus[written:]:
                    self.writer.apdu(c, r)
            written = len(rec.apdus)

        emv_terminal = EmvTerminal(pan_token_key=self.terminal.token_key, terminal_id=self.terminal.terminal_id,
                                   capabilities=terminal_capabilities(pin_pad=online_pin is not None),
                                   timezone=self.terminal.timezone)
        shown = present_chip(as_reader(rec), emv_terminal, request, atr=atr, online_pin=online_pin,
                             evidence={"source": self.rig.reader_kind}, after_complete=write_apdus)
        ms = (time.monotonic() - started) * 1000
        session = shown.session
        if self.writer is not None:
            self.writer.learn_pan(session.pan.reveal())
            self.writer.record("atr", atr=rec.atr.hex().upper())
        write_apdus()
        self.reads += 1
        self.atc[request.ref] = session.atc
        self.say(f"card read for sale {self.reads} ({request.ref}, {request.amount / 100:.2f}): "
                 f"{session.label or session.aid} {session.masked_pan}, CVM {session.cvm_required}, "
                 f"9F34 {session.cvm_results.hex().upper()}, {session.cryptogram_type} atc={session.atc}, "
                 f"{session.apdu_count} APDUs in {ms:.0f} ms"
                 + (", PIN entered on the PIN pad (encrypted block for field 52)" if session.pin_block else ""))
        return shown


def _swipe_card(rig: Any, till: Any, ref: str, profile: str, overrides: dict[str, str], terminal: Any,
                say: Callable[[str], None], writer: Any) -> None:
    from posguard.drivers.magstripe import MagstripeReader, swiped_card

    mag = MagstripeReader(str(rig.mag_path))
    try:
        rig.swipe(profile, **overrides)
        data = mag.read_swipe(5.0)
    finally:
        mag.close()
    card = swiped_card(data, terminal.token_key)
    if writer is not None:
        writer.swipe(data.track2_data(), ref=ref, has_track1=data.has_track1)
    till.add_card(ref, card, source="magstripe")
    say(f"card {ref}: swiped {card.pan_masked}, service code {data.service_code}, entry mode {card.entry_mode}, "
        "signature")


def _run_steps(day: tuple[Step, ...], rig: Any, till: Any, engine: Any, say: Callable[[str], None]) -> None:
    sales: list[str] = []
    for kind, data in day:
        if kind == "say":
            say(f"-- {data['text']}")
        elif kind == "fault":
            spec = engine.profile.spec(data["txn"])
            extra = {k: v for k, v in data.items() if k not in ("kind", "txn")}
            rig.host_fault(data["kind"], mti=spec.mti, proc_prefix=spec.proc[:2], times=1, **extra)
            say(f"(simulator) host fault armed: {data['kind']} on the next {data['txn']}")
        elif kind == "op":
            args = {k: _resolve(v, sales) for k, v in data.items() if k != "op"}
            res = till.do(data["op"], **args)
            if data["op"] == "sale" and res is not None:
                sales.append(res.txn_id)
        else:
            raise ValueError(f"unknown demo step {kind!r}")


def _resolve(value: Any, sales: list[str]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return sales[-1]
    return value


def _report(till: Any, engine: Any, say: Callable[[str], None], rig: Any = None) -> None:
    say("== incident report")
    incidents = till.incidents
    rule_width = max((len(inc.rule) for inc in incidents), default=0)  # columns as wide as the longest entry
    txns_width = max((len(", ".join(inc.transactions)) for inc in incidents), default=0)
    for n, inc in enumerate(incidents, 1):
        say(f"{n:2}. {inc.kind:17} {inc.rule:{rule_width}} {', '.join(inc.transactions):{txns_width}} -> "
            f"{inc.outcome} ({len(inc.messages)} message(s))")
    if rig is not None and any(i.kind == "unsettled" for i in till.incidents):  # what the acquirer's report shows
        _acquirer_findings(engine, say, rig, till)
    say("journal: " + ", ".join(f"{r['state']} {r['count']}" for r in engine.journal.state_counts()))


def _acquirer_findings(engine: Any, say: Callable[[str], None], rig: Any, till: Any = None) -> None:
    """The acquirer's settlement report (from the simulator's books) against the journal, both ways; then the
    operator's ``reconcile`` with it, so the batch's incident keeps the record and a recorded day carries the
    report inline (docs/capture-format.md "The reconcile op")."""
    from posguard.engine.acquirer_report import parse_report
    from posguard.flows.unsettled import finding_line, reconcilable_batches

    tid = engine.terminal.terminal_id
    report = parse_report(rig.settlement_report(tid), source="the acquirer's settlement report")
    for batch in reconcilable_batches(engine.journal, report, tid):
        found = engine.detectors.reconciliation.compare(engine.journal, report, terminal_id=tid, batches=(batch,))
        say(f"{report.source}, batch {batch}: {len(found)} finding(s)")
        for d in found:
            say(f"    {finding_line(d)}")
    if till is not None:
        till.do("reconcile", report=report)
