"""``posguard demo``: a scripted trading day through the real stack against the simulators.

reader (pcscd + vpcd card, or the serial GemPC Twin) -> EMV card session -> transaction engine -> TCP host link
-> acquirer host simulator (a subprocess). A serial magstripe reader (on a pty) swipes the day's stripe card.
Normal sales, then each error kind; what was detected and what was done is printed as it happens, then the
day's incident report. Every simulator is stopped on the way out.

With ``record``, the capture also holds the raw reader frames (``frame`` records) when the reader is the
serial Twin, and every swipe (``swipe`` records), sanitised like everything else.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from posguard.demo.day import CARDS, DAY, SWIPES, Step

__all__ = ["DemoResult", "run_demo", "DEMO_TERMINAL", "demo_policies"]

DEMO_TID, DEMO_MID = "POSGRD01", "MERCHANT0000001"
DEMO_TIMEOUT = 1.5  # seconds the terminal waits for the host in the demo (30 s in production)
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

    return _policies(DEMO_POLICY_DATA)


class _RecordingReader:
    """Wraps a reader; keeps the ATR and APDUs of one card read so they can be written once the PAN is known."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.atr = b""
        self.apdus: list[tuple[bytes, bytes]] = []

    def power_on(self) -> bytes:
        self.atr = bytes(self.inner.power_on())
        self.apdus = []
        return self.atr

    def transmit_raw(self, apdu: bytes) -> bytes:
        r = bytes(self.inner.transmit_raw(apdu))
        self.apdus.append((bytes(apdu), r))
        return r

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _FrameTap:
    """The Twin link's frame observer: holds the frames of a card read until its PAN is known, then writes
    them (sanitised, with the time they crossed the line) on :meth:`flush`."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.held: list[tuple[float, str, bytes]] = []

    def __call__(self, direction: str, frame: bytes) -> None:
        self.held.append((self.writer.now(), direction, bytes(frame)))

    def flush(self) -> None:
        held, self.held = self.held, []
        for at, direction, frame in held:
            self.writer.frame(direction, frame, at=at)


def tap_frames(reader: Any, writer: Any) -> _FrameTap | None:
    """Attach a :class:`_FrameTap` to ``reader`` when it is a GemPC Twin (its link reports raw frames)."""
    link = getattr(reader, "link", None)
    if writer is None or link is None or not hasattr(link, "on_frame"):
        return None
    tap = _FrameTap(writer)
    link.on_frame = tap
    return tap


def _as_reader(wrapper: _RecordingReader) -> Any:
    """A :class:`~posguard.drivers.reader.Reader` subclass instance delegating to ``wrapper``."""
    from posguard.drivers.reader import CardEvent, Reader

    class _Delegate(Reader):
        name = wrapper.name

        def card_present(self) -> bool:
            return bool(wrapper.inner.card_present())

        def wait_for_event(self, timeout: float) -> CardEvent | None:
            event: CardEvent | None = wrapper.inner.wait_for_event(timeout)
            return event

        def wait_for_card(self, timeout: float) -> None:
            wrapper.inner.wait_for_card(timeout)

        def wait_for_removal(self, timeout: float) -> None:
            wrapper.inner.wait_for_removal(timeout)

        def power_on(self) -> bytes:
            return wrapper.power_on()

        def transmit_raw(self, apdu: bytes) -> bytes:
            return wrapper.transmit_raw(apdu)

        def power_off(self) -> None:
            wrapper.inner.power_off()

        def close(self) -> None:
            wrapper.inner.close()

    return _Delegate()


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
    terminal = TerminalConfig(DEMO_TID, DEMO_MID, token_key, data_key, currency="156", host_timeout=DEMO_TIMEOUT)
    workdir = Path(journal_dir) if journal_dir else Path(tempfile.mkdtemp(prefix="posguard-demo-journal-"))
    journal = Journal(workdir / "journal.db", clock=clock)
    writer = None
    if record is not None:
        writer = CaptureWriter(record, dialect=dialect, tid=DEMO_TID, mid=DEMO_MID, clock=clock,
                               extra={"policies": DEMO_POLICY_DATA},
                               terminal_extra={"currency": "156", "timeout": DEMO_TIMEOUT})
        result.capture = Path(record)
    swiped = [s for s in SWIPES if any(k == "op" and d.get("card") == s[0] for k, d in day)]
    tap: _FrameTap | None = None
    try:
        make_rig, _ = load_simulators()
        with make_rig(dialect, profile=CARDS[0][1], reader=reader_kind, magstripe=bool(swiped)) as rig:
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
            try:
                for ref, profile in CARDS:
                    _read_card(rig, reader, till, ref, profile, terminal, say, writer, tap)
                for ref, profile, overrides in swiped:
                    _swipe_card(rig, till, ref, profile, overrides, terminal, say, writer)
                _run_steps(day, rig, till, engine, say)
            finally:
                reader.close()
                link.close()
                if tap is not None:
                    tap.flush()  # the power-off and close frames: no card data
            _report(till, engine, say)
            result.incidents = [i.to_dict() for i in till.incidents]
    finally:
        journal.close()
        if writer is not None:
            writer.close()
    result.seconds = time.monotonic() - t0
    say(f"day done in {result.seconds:.1f} s; every simulator stopped")
    return result


def _open_reader(rig: Any) -> Any:
    if rig.reader_kind == "pcsc":
        from posguard.drivers.pcsc import PcscReader

        return PcscReader("Virtual PCD 00 00", apdu_timeout=5.0)
    from posguard.drivers.twin_serial import TwinReader

    return TwinReader(str(rig.twin_path))


def _read_card(rig: Any, reader: Any, till: Any, ref: str, profile: str, terminal: Any,
               say: Callable[[str], None], writer: Any, tap: _FrameTap | None = None) -> None:
    from posguard.drivers.errors import ReaderError
    from posguard.emv.session import read_card
    from posguard.emv.terminal import TerminalConfig as EmvTerminal
    from posguard.emv.terminal import Transaction
    from posguard.engine.card import CardData

    rig.swap(profile)
    reader.wait_for_card(10.0)
    rec = _RecordingReader(reader)
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
    session = read_card(_as_reader(rec), EmvTerminal(pan_token_key=terminal.token_key,
                                                     terminal_id=terminal.terminal_id),
                        Transaction(amount=0), atr=atr)
    ms = (time.monotonic() - started) * 1000
    reader.power_off()
    card = CardData(session.pan, session.pan_token, expiry=session.expiry, field55=session.field55,
                    cvm_results=session.cvm_results, entry_mode="chip", scheme=session.scheme)
    if writer is not None:
        writer.learn_pan(session.pan.reveal())
        if tap is not None:
            tap.flush()
        writer.record("atr", atr=rec.atr.hex().upper())
        for c, r in rec.apdus:
            writer.apdu(c, r)
    till.add_card(ref, card, source=rig.reader_kind, label=session.label, aid=session.aid)
    say(f"card {ref}: {session.label or session.aid} {session.masked_pan}, CVM {session.cvm_required}, "
        f"9F34 {session.cvm_results.hex().upper()}, {session.apdu_count} APDUs in {ms:.0f} ms")


def scheme_of(pan: str) -> str | None:
    """The card scheme from the PAN's leading digits (a swipe has no AID to tell it)."""
    if pan.startswith("62"):
        return "unionpay"
    if pan[:1] == "4":
        return "visa"
    if pan[:2] in ("51", "52", "53", "54", "55") or "2221" <= pan[:4] <= "2720":
        return "mastercard"
    return None


def swiped_card(data: Any, token_key: bytes) -> Any:
    """The engine's card for a good swipe: entry mode ``swipe`` (``fallback`` for a chip card's stripe, service
    code 2xx/6xx), and a signature (there is no 9F34 and no PIN pad in this terminal)."""
    from posguard.engine.card import CardData

    return CardData.from_pan(data.pan, token_key, expiry=data.expiry, cvm_required=True,
                             entry_mode="fallback" if data.chip_card else "swipe", scheme=scheme_of(data.pan.reveal()))


def _swipe_card(rig: Any, till: Any, ref: str, profile: str, overrides: dict[str, str], terminal: Any,
                say: Callable[[str], None], writer: Any) -> None:
    from posguard.drivers.magstripe import MagstripeReader

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


def _report(till: Any, engine: Any, say: Callable[[str], None]) -> None:
    say("== incident report")
    for n, inc in enumerate(till.incidents, 1):
        say(f"{n:2}. {inc.kind:17} {inc.rule:28} {', '.join(inc.transactions):40} -> {inc.outcome}"
            f" ({len(inc.messages)} message(s))")
    rows = engine.journal.query("SELECT state, COUNT(*), SUM(amount_minor) FROM transactions GROUP BY state "
                                "ORDER BY state")
    say("journal: " + ", ".join(f"{r[0]} {r[1]}" for r in rows))
