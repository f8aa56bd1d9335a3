"""Replay a capture: the recorded operator actions through a real engine and an operator desk (the service's
till: ``desk=Till.for_replay``), on a virtual clock, with the host's recorded answers (no network). The incidents found are the ones the live run found.

Nothing leaves the machine: corrections run against a scratch journal and the recorded answers, and what
they would send is reported (``--json``: one object per incident).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from posguard.capture.format import Capture, CaptureError, read_capture
from posguard.capture.ops import check_op
from posguard.card import CardData
from posguard.clock import VirtualClock
from posguard.engine.chart import UNRESOLVED
from posguard.engine.detectors import Detectors
from posguard.engine.engine import EnginePolicies, TerminalConfig, TransactionEngine
from posguard.engine.hostlink import (
    ECHO_FIELDS,
    LinkEvent,
    LinkEventKind,
    late_answer_detail,
    reversal_timeout_for,
)
from posguard.engine.journal import Journal, JournalError
from posguard.engine.ports import HostLinkError, HostTimeout, InvalidResponse
from posguard.engine.profiles import Profile, get_profile
from posguard.engine.saf import SafPolicy
from posguard.incidents import IncidentReport
from posguard.iso8583 import get_dialect
from posguard.iso8583.message import Message
from posguard.iso8583.redaction import evidence_image
from posguard.presenting import CardNotPresented, CardOutcome, CardRequest, HostAnswer, StoredCard
from posguard.sensitive import TrackData, mask_digits_in_text, scrub

__all__ = ["Desk", "DeskFactory", "ReplayDiverged", "ReplayLink", "ReplayResult", "replay", "REPLAY_TOKEN_KEY"]

#: keys of the scratch engine a replay runs (the capture's PANs are test PANs already)
REPLAY_TOKEN_KEY = b"posguard-replay-token-key-000000"
REPLAY_DATA_KEY = bytes(range(32))


#: record kinds that document the card reads (the ``card`` record holds what the engine got from them)
_EVIDENCE_KINDS = ("atr", "apdu", "frame", "swipe")


class ReplayDiverged(CaptureError):
    """The replayed engine asked for something the recording does not hold at that point."""


class _Restarted(BaseException):
    """The recording's terminal stopped (and later restarted) where the replay wants to send: the replay's
    operator action ends there as the live one did, and the ``start`` record recovers."""

    def __init__(self, line: int) -> None:
        super().__init__(f"the recording restarts at line {line}")


class _Cursor:
    def __init__(self, capture: Capture, clock: VirtualClock) -> None:
        self.records = capture.records
        self.lines = capture.lines
        self.pos = 0
        self.clock = clock
        self.base = clock.monotonic()

    def at(self, rec: dict[str, Any]) -> None:
        target = self.base + float(rec["t"])
        if target > self.clock.monotonic():
            self.clock.advance(target - self.clock.monotonic())

    def line(self, index: int) -> int:
        """The file line of record ``index`` (the header is line 1)."""
        return self.lines[index] if index < len(self.lines) else index + 2


class ReplayLink:
    """A :class:`~posguard.engine.ports.HostLink` answering from the capture's ``iso``/``link`` records."""

    def __init__(self, cursor: _Cursor, dialect: str) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.exchanges = 0
        #: recorded answers that came after their request's timeout: delivered later as late answers
        self.late: set[int] = set()
        self.late_answers: list[LinkEvent] = []
        #: called for each recorded network message (08xx) the replay passes over without sending it
        self.network_skipped: Callable[[], None] = lambda: None
        self._spent: set[int] = set()  # the records of those messages, each spent once
        #: (answer MTI, STAN) of the requests that timed out, counted: a recorded answer to one, wherever the
        #: recording wrote it (next to its request or in time order, after what the terminal did meanwhile), is a
        #: late answer. A 0400 and its repeat 0401 that both timed out wait for two 0410s under the same STAN
        self.timed_out: Counter[tuple[str, int]] = Counter()

    def spend_network(self, index: int) -> None:
        """The recorded 08xx at ``index`` is not sent by the replay: spend its STAN (once)."""
        if index not in self._spent:
            self._spent.add(index)
            self.network_skipped()

    def spend_ahead(self, start: int) -> None:
        """An operator action starts at record ``start``: the sign-on the live terminal sent before the action's
        first request (a first sign-on, keys renewed by age) took its STAN before that request's; so does the
        replay, before the action allocates any."""
        records = self.cursor.records
        for i in range(start, len(records)):
            rec = records[i]
            if rec["k"] in ("op", "start"):
                return
            if rec["k"] == "iso" and rec["dir"] == "out":
                if not str(rec.get("mti", "")).startswith("08"):
                    return
                self.spend_network(i)

    def deliver_late(self, rec: dict[str, Any]) -> None:
        self.cursor.at(rec)
        self.late_answers.append(_late_event(rec, self.dialect, self.cursor.clock.now()))

    def exchange(self, request: Message, *, timeout: float) -> Message:
        self._find_out(request)
        try:
            return self._answer(request, timeout)
        except HostTimeout:
            if request.stan is not None:
                self.timed_out[(request.response_mti, request.stan)] += 1
            raise

    def hear(self, index: int, rec: dict[str, Any], after: str) -> None:
        """An ``in`` record no request of the replay's was answered from (the cursor passed over it): a late
        answer to a request that timed out, a network answer (08xx, not replayed), or a divergence."""
        if rec.get("hex"):
            _keys_describe(rec, Message.decode(bytes.fromhex(str(rec["hex"])), self.dialect), self.cursor.line(index))
        mti = _mti(rec, self.dialect)
        stan = rec.get("stan")
        if not isinstance(stan, int) or isinstance(stan, bool):
            stan = _stan_of(rec, self.dialect)
        if index in self.late:  # written next to its request, later than the request's timeout
            self.late.discard(index)
            self._heard_late(mti, stan)
            self.deliver_late(rec)
            return
        if mti.startswith("08"):
            return
        if stan is not None and self.timed_out[(mti, stan)] > 0:
            self._heard_late(mti, stan)
            self.deliver_late(rec)
            return
        raise ReplayDiverged(self.cursor.line(index), _not_answered(rec, mti, after))

    def _heard_late(self, mti: str, stan: int | None) -> None:
        """One timed-out request with this answer MTI and STAN has had its late answer."""
        if stan is not None and self.timed_out[(mti, stan)] > 0:
            self.timed_out[(mti, stan)] -= 1

    def _skip_network(self, request: Message) -> bool:
        """A recorded sign-on/sign-off (08xx) where the replay sends something else: the live terminal's keys
        (issue 12), which the replay, holding no master key, neither has nor needs. Skip it and its answer."""
        c = self.cursor
        out = c.records[c.pos - 1]
        if not str(out.get("mti", "")).startswith("08") or request.mti.startswith("08"):
            return False
        self.spend_network(c.pos - 1)
        if c.pos < len(c.records) and c.records[c.pos]["k"] == "iso" and c.records[c.pos]["dir"] == "in":
            c.pos += 1
        return True

    def _find_out(self, request: Message) -> None:
        while True:
            self._next_out(request)
            if not self._skip_network(request):
                return

    def _next_out(self, request: Message) -> None:
        c = self.cursor
        while c.pos < len(c.records):
            rec = c.records[c.pos]
            if rec["k"] == "op":
                raise ReplayDiverged(c.line(c.pos), f"the replay sends a {request.mti} where the recording has "
                                                    f"the operator action {rec['op']!r}")
            if rec["k"] == "start":  # the live terminal stopped here: the replay stops as it did
                raise _Restarted(c.line(c.pos))
            c.pos += 1
            if rec["k"] == "iso" and rec["dir"] == "in":
                self.hear(c.pos - 1, rec, f"before the replay's {request.mti}")
            if rec["k"] == "iso" and rec["dir"] == "out":
                break
        else:
            raise HostLinkError("the capture ends here: nothing more was sent")

    def _answer(self, request: Message, timeout: float) -> Message:
        c = self.cursor
        out = c.records[c.pos - 1]
        c.at(out)
        if out.get("mti") and not _same_message(str(out["mti"]), request.mti):
            raise ReplayDiverged(c.line(c.pos - 1), f"the replay sends {request.mti}, the recording {out['mti']}")
        stan = out.get("stan")
        if isinstance(stan, int) and not isinstance(stan, bool) and request.stan is not None and stan != request.stan:
            raise ReplayDiverged(c.line(c.pos - 1), f"the replay sends {request.mti} STAN {request.stan}, the "
                                                    f"recording STAN {stan}: each request carries the STAN "
                                                    "recorded for it (docs/capture-format.md, \"Sign-on\")")
        self.exchanges += 1
        if c.pos >= len(c.records):
            raise HostTimeout("no answer recorded")
        nxt = c.records[c.pos]
        if nxt["k"] == "iso" and nxt["dir"] == "in":
            waited = float(nxt["t"]) - float(out["t"])
            if waited > timeout:  # as live: the terminal stopped waiting; the answer arrives later, as a late one
                c.clock.advance(max(0.0, c.base + float(out["t"]) + timeout - c.clock.monotonic()))
                self.late.add(c.pos)
                raise HostTimeout(f"the recorded answer came {waited:.3f} s after the {request.mti}, later than its "
                                  f"{timeout:g} s timeout")
            c.pos += 1
            c.at(nxt)
            if not nxt["hex"]:
                raise InvalidResponse("the recorded answer was undecodable")
            response = Message.decode(bytes.fromhex(nxt["hex"]), self.dialect)
            _keys_describe(nxt, response, c.line(c.pos - 1))
            if request.stan is not None and "11" in response:
                response["11"] = request["11"]  # a journal of another history allocates other STANs
            _check_answer(response, request, c.line(c.pos - 1))
            return response
        if nxt["k"] == "link" and nxt.get("event") in ("timeout", "link_error", "invalid_response", "error"):
            c.pos += 1
            c.at(nxt)
            # the recorded detail is free text, maybe written by hand: it reaches the journal and the log masked
            if nxt["event"] == "timeout":
                raise HostTimeout(scrub(str(nxt.get("detail", "timeout (recorded)"))))
            if nxt["event"] == "invalid_response":
                raise InvalidResponse(scrub(str(nxt.get("detail", "invalid response (recorded)"))))
            raise HostLinkError(scrub(str(nxt.get("detail", "link error (recorded)"))),
                                maybe_sent=bool(nxt.get("maybe_sent")))
        self.cursor.clock.advance(timeout)
        raise HostTimeout("no answer recorded")


class Desk(Protocol):
    """What a replay needs of the operator desk it feeds: the cards it knows, the actions it runs, the incidents it
    met and the requests its engine sent. The service's :class:`~posguard.service.till.Till` is one."""

    cards: dict[str, CardData]
    presenter: Any  # a posguard.presenting.CardPresenter, or None
    incidents: list[IncidentReport]
    sent: list[Message]

    def do(self, op: str, **args: Any) -> Any: ...


#: builds the desk over the replay's engine: ``(engine, dialect, say)``
DeskFactory = Callable[[TransactionEngine, str, Callable[[str], None]], Desk]


@dataclass
class ReplayResult:
    capture: Capture
    incidents: list[IncidentReport]
    desk: Desk
    journal: Journal
    sent: list[Message] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    #: records kept for the reader (``atr``, ``apdu``, ``frame``, ``swipe``): counted, not replayed
    skipped: dict[str, int] = field(default_factory=dict)
    #: the scratch directory of a journal the replay made itself (removed by :meth:`close`)
    scratch: Path | None = None
    #: recorded answers that came after their request's timeout, heard late as a live terminal hears them
    late_answers: list[LinkEvent] = field(default_factory=list)
    #: operator actions the replay's till refused with nothing recorded as sent (as the live till may have):
    #: (line, action, reason), so that a hand-written action that did nothing is never a silent skip
    refused: list[tuple[int, str, str]] = field(default_factory=list)

    def close(self) -> None:
        """Close the journal; remove it when the replay made it (nothing is left in /tmp)."""
        self.journal.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> ReplayResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _late_event(rec: dict[str, Any], dialect: str, at: float) -> LinkEvent:
    try:
        msg: Message | None = Message.decode(bytes.fromhex(str(rec["hex"])), dialect) if rec.get("hex") else None
    except Exception:  # noqa: BLE001 - an undecodable late answer is still reported, without its fields
        msg = None
    approved = msg is not None and msg.get("39") == "00"
    return LinkEvent(LinkEventKind.LATE_RESPONSE, at, mti=str(rec.get("mti") or "") or None, stan=rec.get("stan"),
                     response_code=msg.get("39") if msg is not None else None, approved=approved,
                     detail=late_answer_detail(str(rec.get("mti") or "") or None,
                                               msg.get("39") if msg is not None else None,
                                               get_dialect(dialect).reversal_done_codes), message=msg)


def _keys_describe(rec: dict[str, Any], msg: Message, line: int) -> None:
    """An ``in`` record's ``mti`` and ``stan`` keys are its message's (a late answer is matched to its request by
    them): keys changed by hand without the ``hex`` are a contradiction, named, never half-used."""
    said = [f"\"mti\" {rec['mti']} but its message is a {msg.mti}"] if rec.get("mti") not in (None, msg.mti) else []
    if rec.get("stan") is not None and msg.stan is not None and rec["stan"] != msg.stan:
        said.append(f"\"stan\" {rec['stan']} but its message's field 11 is {msg.stan:06d}")
    if said:
        raise ReplayDiverged(line, f"the in record says {' and '.join(said)}: its keys describe the message in "
                                   "\"hex\"; correct whichever is wrong")


def _same_message(recorded: str, sent: str) -> bool:
    """The same MTI, or the same one but for the repeat digit (0400/0401): a replay stopped at a restart may
    have journaled one more attempt than the live terminal reached before it stopped."""
    return recorded == sent or (recorded[:3] == sent[:3] and {recorded[3:], sent[3:]} <= {"0", "1"})


def card_from_record(rec: dict[str, Any], track2: str | None = None) -> CardData:
    """The card a ``card`` record describes; ``track2``: the sanitised track 2 of its ``swipe`` record (field 35)."""
    cvm = rec.get("cvm_results")
    card = CardData.from_pan(str(rec["pan"]), REPLAY_TOKEN_KEY, expiry=rec.get("expiry"),
                             field55=bytes.fromhex(rec.get("field55") or ""),
                             cvm_results=bytes.fromhex(cvm) if cvm else None,
                             entry_mode=str(rec.get("entry_mode") or "chip"), scheme=rec.get("scheme"),
                             cvm_required=bool(rec.get("cvm_required", False)),
                             track2=TrackData(track2) if track2 else None)
    return replace(card, second_gac=True) if rec.get("second_gac") else card


@dataclass
class RecordedPresentation:
    """A card presentation as the capture recorded it: its card data and the card's recorded final answer."""

    card: CardData
    evidence: dict[str, Any]
    outcome: dict[str, Any] | None

    def complete(self, answer: HostAnswer) -> CardOutcome | None:
        if self.outcome is None:
            return None  # the capture ends before the card answered
        o = self.outcome
        kind = str(o["cryptogram"])
        return CardOutcome(kind, o.get("atc"), bytes.fromhex(o.get("field55") or ""),
                           bytes.fromhex(o.get("script_results") or ""),
                           declined_by_card=answer.approved and kind == "AAC")

    def close(self) -> None:
        return None


class RecordedCards:
    """The replay's card presenter: each presentation of a reference gets the next ``card`` record recorded for
    it (one per presentation, :meth:`Till.present <posguard.service.till.Till.present>`), and its second
    GENERATE AC the ``card_outcome`` record of the same presentation number."""

    def __init__(self, capture: Capture, swiped: dict[str, str] | None = None) -> None:
        self._swiped = swiped or {}  # card reference -> the sanitised track 2 of its swipe record
        self._queues: dict[str, list[dict[str, Any]]] = {}
        self._outcomes: dict[int, dict[str, Any]] = {}
        for rec in capture.records:
            if rec["k"] == "card":
                self._queues.setdefault(str(rec["ref"]), []).append(rec)
            elif rec["k"] == "card_outcome":
                self._outcomes[int(rec["presentation"])] = rec

    def present(self, request: CardRequest) -> RecordedPresentation:
        queue = self._queues.get(request.ref)
        if not queue:
            raise CardNotPresented(f"the capture holds no further card record for {request.ref!r} (the card was "
                                   "not read live); nothing was sent")
        rec = queue.pop(0)
        evidence: dict[str, Any] = {k: rec[k] for k in ("source", "label", "aid") if k in rec}
        return RecordedPresentation(card_from_record(rec, self._swiped.get(request.ref)), evidence,
                                    self._outcomes.get(int(rec["presentation"])))


#: the requests that carry a card's cryptogram (a purchase authorisation or financial request)
_AUTHORISATIONS = ("0100", "0200")


class ListedCards:
    """The replay's card presenter for a capture that lists each card once (written before cards were read per
    charge, or by hand): a charge of a reference gets its latest ``card`` record, with the chip data (field 55)
    the recording sent for this charge — the next outgoing authorisation before the next operator action — as the
    live terminal's own read for it; without one, the record's ``field55``. So a card used twice is two charges
    with their own cryptograms, as they were on the wire, and never one cryptogram sent twice."""

    def __init__(self, cursor: _Cursor, dialect: str, swiped: dict[str, str]) -> None:
        self._cursor, self._dialect, self._swiped = cursor, dialect, swiped
        self._records: dict[str, dict[str, Any]] = {}

    def learn(self, rec: dict[str, Any]) -> None:
        self._records[str(rec["ref"])] = rec

    def present(self, request: CardRequest) -> StoredCard:
        rec = self._records.get(request.ref)
        if rec is None:
            raise KeyError(f"no card {request.ref!r}: the capture lists no card record for it before this action")
        card = card_from_record(rec, self._swiped.get(request.ref))
        sent = self._sent_field55()
        if sent is not None:
            card = replace(card, field55=sent)
        return StoredCard(card, {k: rec[k] for k in ("source", "label", "aid") if k in rec})

    def _sent_field55(self) -> bytes | None:
        c = self._cursor
        for rec in c.records[c.pos:]:
            if rec["k"] == "op":
                return None
            if rec["k"] == "iso" and rec.get("dir") == "out" and rec.get("hex"):
                try:
                    msg = Message.decode(bytes.fromhex(str(rec["hex"])), self._dialect)
                except Exception:  # noqa: BLE001 - the link reports an undecodable record when it gets there
                    return None
                icc = msg.get("55")
                if msg.mti not in _AUTHORISATIONS or not str(msg.get("3") or "00").startswith("00") or not icc:
                    continue  # a void or refund leg of a correction comes first: the charge is the purchase
                return icc if isinstance(icc, bytes) else bytes.fromhex(str(icc))
        return None


def _recorded_send(cursor: _Cursor, dialect: str) -> tuple[int, str] | None:
    """The first request (not network management) the recording sent after the current action: (index, MTI)."""
    for i in range(cursor.pos, len(cursor.records)):
        rec = cursor.records[i]
        if rec["k"] in ("op", "start"):
            return None
        if rec["k"] != "iso" or rec.get("dir") != "out":
            continue
        mti = str(rec.get("mti") or "")
        if not mti and rec.get("hex"):  # a hand-written record may leave the MTI to its message
            try:
                mti = Message.decode(bytes.fromhex(str(rec["hex"])), dialect).mti
            except Exception:  # noqa: BLE001 - named as "a message" below
                mti = ""
        if not mti.startswith("08"):
            return i, mti or "a message"
    return None


def _check_card_outcomes(capture: Capture, cursor: _Cursor) -> None:
    """Each ``card_outcome`` answers the second GENERATE AC of a ``card`` record with its ``presentation`` and
    ``"second_gac": true`` (the recorder writes one only then): one that answers no such read would be passed over
    without a word, and the replay would then diverge where the card's answer should have acted (an AAC's 0400)."""
    awaiting = {r["presentation"] for r in capture.records if r["k"] == "card" and r.get("second_gac") is True
                and "presentation" in r}
    for i, rec in enumerate(capture.records):
        if rec["k"] == "card_outcome" and rec["presentation"] not in awaiting:
            raise CaptureError(cursor.line(i), f"card_outcome of presentation {rec['presentation']} answers no card "
                                               f"read: no card record has \"presentation\": {rec['presentation']} "
                                               "and \"second_gac\": true (a card's answer to the second GENERATE AC "
                                               "needs the per-presentation form: docs/capture-format.md, \"Writing a "
                                               "capture by hand\")")


def per_presentation(capture: Capture) -> bool:
    """True when the capture has a card record per presentation (a ``presentation`` number on each): written
    since cards are read per transaction. An older capture lists each card once, before the operator actions."""
    return any(r["k"] == "card" and "presentation" in r for r in capture.records)


#: the day a capture whose header has no ``started`` is replayed on (a fixed day: the replay stays deterministic;
#: ``posguard replay`` says which)
UNDATED_START = 1_700_000_000.0


def replay(source: str | Path | Capture, *, desk: DeskFactory, journal_path: str | Path | None = None,
           say: Callable[[str], None] | None = None) -> ReplayResult:
    """Replay ``source``; raises :class:`CaptureError` (with the line) when it cannot be read or replayed."""
    capture = source if isinstance(source, Capture) else read_capture(source)
    base = Path(source).resolve().parent if isinstance(source, str | Path) else None  # a reconcile op's report file
    started = capture.header.get("started")
    try:
        start = datetime.fromisoformat(str(started)).timestamp() if started else UNDATED_START
    except ValueError:
        raise CaptureError(1, f"header \"started\" is not ISO-8601: {started!r}") from None
    clock = VirtualClock(start=start)
    cursor = _Cursor(capture, clock)
    link = ReplayLink(cursor, capture.dialect)
    scratch = None
    if journal_path is None:  # a scratch journal, removed when the result is closed
        scratch = Path(tempfile.mkdtemp(prefix="posguard-replay-"))
        journal_path = scratch / "journal.db"
    journal = Journal(journal_path, clock=clock)
    try:
        term = capture.header["terminal"]
        if not str(term.get("mid") or "").strip() and any(r["k"] == "op" for r in capture.records):
            raise CaptureError(1, "header \"terminal\" needs \"mid\" (the merchant id, field 42): the replay runs "
                                  "the operator actions through an engine that sends it")
        terminal = TerminalConfig(str(term["tid"]), str(term.get("mid", "")), REPLAY_TOKEN_KEY, REPLAY_DATA_KEY,
                                  currency=str(term.get("currency", "156")), host_timeout=float(term.get("timeout", 30)))
        policies = _policies(capture.header.get("policies", {}), terminal.host_timeout)
        engine = TransactionEngine(journal, link, capture.dialect, terminal, clock, Detectors.default(clock), policies)
        log: list[str] = []

        def _say(line: str) -> None:
            line = scrub(line)  # card numbers masked, RRNs kept: as every live log line is (posguard/logs.py)
            log.append(line)
            if say is not None:
                say(line)

        till = desk(engine, capture.dialect, _say)
        link.network_skipped = lambda: _stan_step(journal)
        presented = per_presentation(capture)
        _check_card_outcomes(capture, cursor)
        swiped = {str(r["ref"]): str(r["track2"]) for r in capture.records if r["k"] == "swipe" and "ref" in r}
        listed: ListedCards | None = None
        if presented:  # the next card record for a reference at each presentation
            till.presenter = RecordedCards(capture, swiped)
        else:  # each card listed once: every charge of it takes the chip data the recording sent for it
            till.presenter = listed = ListedCards(cursor, capture.dialect, swiped)
        skipped: dict[str, int] = {}
        for r in capture.records:
            if r["k"] in _EVIDENCE_KINDS:
                skipped[r["k"]] = skipped.get(r["k"], 0) + 1
        if not any(r["k"] == "op" for r in capture.records):
            return ReplayResult(capture, wire_incidents(capture), till, journal, [], log, skipped, scratch)
        for i, r in enumerate(capture.records):  # every op record's arguments, before anything is replayed
            if r["k"] == "op":
                check_op(r, cursor.line(i))
        refused: list[tuple[int, str, str]] = []
        last_op: int | None = None
        while cursor.pos < len(cursor.records):
            index = cursor.pos
            rec = cursor.records[index]
            cursor.pos += 1
            kind = rec["k"]
            if kind == "iso" and rec.get("dir") == "out" and str(rec.get("mti", "")).startswith("08"):
                link.spend_network(index)  # a sign-on/echo between operator actions: its STAN, as live
            elif kind == "iso" and rec.get("dir") == "in":  # no request was answered from it: a late answer?
                link.hear(index, rec, f"after the operator action at line {cursor.line(last_op)}"
                          if last_op is not None else "before any operator action")
            elif kind == "iso" and not _network(rec, capture.dialect):
                raise ReplayDiverged(cursor.line(index), _not_replayed(rec, capture.dialect, last_op, cursor))
            elif kind == "card" and listed is not None:  # an older capture: each card listed once, before its sales
                listed.learn(rec)
            elif kind == "start":  # the live service restarted here: it recovered before anything else
                cursor.at(rec)
                report = engine.recover()
                _say(f"restart: recovery released {len(report.reversals_released)} reversal(s); "
                     f"{len(report.acknowledged)} queued message(s) acknowledged, {len(report.still_pending)} pending")
            elif kind == "op":
                last_op = index
                cursor.at(rec)
                args = {k: v for k, v in rec.items() if k not in ("t", "k", "op")}
                if "txn" in args:
                    args["txn"] = _named_txn(journal, args["txn"], cursor.line(index))
                if rec["op"] == "reconcile" and "report" in args:  # inline, or a file beside the capture
                    args["report"] = _op_report(args["report"], base, cursor.line(index))
                link.spend_ahead(cursor.pos)  # a sign-on sent before the action's first request
                try:
                    till.do(str(rec["op"]), **args)
                    refusal = getattr(till, "refusal", None)
                    refusal = _in_replay_terms(str(refusal), journal) if refusal else refusal
                    sent = _recorded_send(cursor, capture.dialect) if refusal else None
                    if sent is not None:  # the live terminal sent what the replay refused: say so, never pass
                        raise ReplayDiverged(cursor.line(index), f"the replay refused {rec['op']!r} ({refusal}) "
                                                                 f"where the recording sent {sent[1]} at line "
                                                                 f"{cursor.line(sent[0])}")
                    if refusal:
                        refused.append((cursor.line(index), str(rec["op"]), str(refusal)))
                except _Restarted:
                    _say(f"the terminal stopped during {rec['op']} (the recording restarts)")
                except ReplayDiverged:
                    raise
                except JournalError as exc:
                    raise CaptureError(cursor.line(index), f"operator action {rec['op']!r} names what the replay "
                                                           f"does not hold: {_in_replay_terms(str(exc), journal)}"
                                       ) from None
                except KeyError as exc:  # its message, not its repr (a KeyError quotes its argument)
                    raise CaptureError(cursor.line(index), f"operator action {rec['op']!r} cannot be replayed: "
                                                           f"{exc.args[0] if exc.args else exc}") from None
                except (TypeError, ValueError) as exc:
                    raise CaptureError(cursor.line(index), f"operator action {rec['op']!r} cannot be replayed: "
                                                           f"{type(exc).__name__}: {exc}") from None
        owed = owed_at_the_end(journal)
        for inc in owed:
            _say(inc.line())
        for event in link.late_answers:
            _say(f"late answer: {event.mti} STAN {event.stan} rc {event.response_code}: {event.detail}")
        return ReplayResult(capture, [*till.incidents, *owed], till, journal, list(till.sent), log, skipped, scratch,
                            list(link.late_answers), refused)
    except BaseException:
        journal.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise


def _mti(rec: dict[str, Any], dialect: str) -> str:
    """An ``iso`` record's MTI: its ``mti``, else its message's (a hand-written record may leave it out)."""
    mti = str(rec.get("mti") or "")
    if not mti and rec.get("hex"):
        try:
            mti = Message.decode(bytes.fromhex(str(rec["hex"])), dialect).mti
        except Exception:  # noqa: BLE001 - an undecodable record is named without its MTI
            mti = ""
    return mti


def _network(rec: dict[str, Any], dialect: str) -> bool:
    """A network management message (08xx: sign-on, echo, sign-off), which the replay does not send."""
    return _mti(rec, dialect).startswith("08")


def _not_replayed(rec: dict[str, Any], dialect: str, last_op: int | None, cursor: _Cursor) -> str:
    """Why an ``iso`` record the replay's engine never reached is an error: the recording sent (or heard) a
    message the replay did not, so what follows would be answered from the wrong records."""
    mti = _mti(rec, dialect) or "a message"
    stan = f" STAN {rec['stan']}" if rec.get("stan") is not None else ""
    after = f"the operator action at line {cursor.line(last_op)}" if last_op is not None else "the header"
    return (f"the recording sent {mti}{stan} here, but the replay sent nothing after {after}: a recorded "
            "request the replay does not make is a divergence (a correction awaiting the operator's "
            "\"confirm\" op, an action the replay refused, or one request too many)")


def _check_answer(response: Message, request: Message, line: int) -> None:
    """A recorded answer is checked as the live host link checks one (posguard/engine/hostlink.py; pos-flows.md
    (B) "Response validation": MTI + 10, fields 3, 4, 41, 42 echoed, a response code): one that does not answer
    its request is an invalid response, and the engine reverses, as live."""
    problems = [] if response.mti == request.response_mti else [f"MTI {response.mti}, not {request.response_mti}"]
    for f in ECHO_FIELDS:
        if f != "11" and f in request and response.get(f) != request.get(f):
            problems.append(f"field {f} {'differs from' if f in response else 'is missing, unlike'} the request's")
    if response.response_code is None:
        problems.append("field 39 (the response code) is missing")
    if problems:
        raise InvalidResponse(f"the answer at line {line} does not answer the {request.mti} STAN {request.stan}: "
                              f"{'; '.join(problems)}; the outcome is unknown: reverse")


def _not_answered(rec: dict[str, Any], mti: str, after: str) -> str:
    stan = f" STAN {rec['stan']}" if rec.get("stan") is not None else ""
    return (f"the recording received {mti or 'a message'}{stan} here, {after}, but it answers no request of the "
            "replay's: an \"in\" record follows the \"out\" record it answers, or answers late a request that "
            "timed out (same STAN)")


def _stan_of(rec: dict[str, Any], dialect: str) -> int | None:
    try:
        stan = Message.decode(bytes.fromhex(str(rec["hex"])), dialect).stan if rec.get("hex") else None
    except Exception:  # noqa: BLE001 - an undecodable record has no STAN to match
        return None
    return stan if isinstance(stan, int) else None


def _stan_step(journal: Journal) -> None:
    """The live terminal spent a STAN on a sign-on (or echo) the replay does not send (it holds no master key):
    spend it too, so the replayed transactions carry the STANs the recording shows (an ``op`` naming a STAN, an
    incident naming one)."""
    with journal.atomic("replay_network_stan"):
        journal.allocate_stan()


def owed_at_the_end(journal: Journal) -> list[IncidentReport]:
    """The capture ended while these transactions' outcomes were unknown: the live terminal owes the host their
    reversal (or, for an advice-only request such as a CUP refund, the advice) — one incident each."""
    out = []
    for txn in journal.txns_in_states(UNRESOLVED):
        queued = journal.saf_items(txn_id=txn.id)
        what = "reversal" if any(q.kind == "reversal" for q in queued) or not queued else queued[-1].kind
        out.append(IncidentReport(
            "reversal" if what == "reversal" else "outcome_unknown", "capture_ended", [txn.id], None, [],
            f"{what}_owed", f"the capture ends while the outcome of {txn.kind} {txn.id} (STAN {txn.stan}) is "
            f"unknown ({txn.state}): the {what} is owed to the host"))
    return out


def _op_report(value: Any, base: Path | None, line: int) -> Any:
    """A ``reconcile`` op's report (inline or a file, :mod:`posguard.capture.inline_report`), read now so that a
    report that cannot be read is a one-line error naming the record's line."""
    from posguard.capture.inline_report import report_of_op
    from posguard.engine.acquirer_report import ReportError

    try:
        return report_of_op(value, base=base, source=f"capture line {line}")
    except ReportError as exc:
        raise CaptureError(line, f"op reconcile: the acquirer's report cannot be read: {exc}") from None


def _in_replay_terms(text: str, journal: Journal) -> str:
    """What the till or the journal said, as a replay's output says it: the same every run (not the path of this
    run's scratch journal), no advice to run a journal command on a journal that is gone when the replay ends, and
    no card number in clear."""
    text = re.sub(r"; list them with `posguard [^`]*`", "", text.replace(f" in {journal.path}", " in the replay"))
    text = text.replace(_PRESENT_AGAIN, f"{_PRESENT_AGAIN} (in a capture: a card record of its own for each charge, "
                                        "with its presentation number and its field55; docs/capture-format.md)")
    return mask_digits_in_text(text)


#: how the engine asks for a new card read (:class:`~posguard.engine.errors.CryptogramReused`), which a capture's
#: author does by writing another card record
_PRESENT_AGAIN = "present the card again for a new one"


def _named_txn(journal: Journal, value: Any, line: int) -> str:
    """An ``op`` record's ``txn``: a transaction id, its STAN (a number, or digits), or ``"last"`` (the latest
    sale) — so a test author can write a capture by hand without knowing the ids the replay will allocate."""
    if value == "last":
        found = journal.latest_txn("sale")
        if found is None:
            raise CaptureError(line, "op names txn \"last\" but no sale was rung up before it")
        return found.id
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit():
        stan = int(value)
        if not 1 <= stan <= 999_999:
            raise CaptureError(line, f"op names STAN {value!r}; a STAN is 1 to 999999 (field 11)")
        found = journal.latest_txn(stan=stan)
        if found is None:
            raise CaptureError(line, f"op names STAN {stan:06d} but the replay holds no transaction with it")
        return found.id
    if not isinstance(value, str):
        raise CaptureError(line, f"op txn must be a transaction id, a STAN or \"last\", not {type(value).__name__}")
    try:
        journal.get_txn(value)
    except JournalError:  # its text names the scratch journal's path: a replay's output is the same every run
        raise CaptureError(line, f"op names transaction {value!r}, which the replay does not hold "
                                 "(the replay allocates the recording's ids; a hand-written op may name the STAN, "
                                 "e.g. \"txn\": 5, or \"last\")") from None
    return value


def _policies(data: dict[str, Any], host_timeout: float) -> EnginePolicies:
    """The engine policies of a header's ``policies`` (the inverse of ``format.header_policies``); what it leaves out is the live
    service's: a reversal waits ``reversal_timeout_for(host_timeout)`` (a capture ``posguard run`` wrote before it
    named its policies replays as it ran)."""
    saf = SafPolicy(timeout=float(data.get("saf_timeout", reversal_timeout_for(host_timeout))),
                    block_new_transactions=bool(data.get("block_new_transactions", True)),
                    backoff_initial=float(data.get("backoff_initial", 1.0)))
    return EnginePolicies(saf=saf, send_reversal_immediately=bool(data.get("send_reversal_immediately", True)))



def _settlement_on_wire(answer: Message, profile: Profile) -> tuple[str, str, str] | None:
    """A 0510 as the engine reads it (``posguard/engine/settlement.py``): (rule, outcome, detail) of an unbalanced
    or refused settlement, None for a balanced one. International: RC 95 is "unbalanced" (details follow), any
    other RC but 00 a refusal; CUP answers 00 and flags each card group in field 48 (2 unbalanced, 3 error)."""
    rc = answer.response_code
    if profile.uses_field_60:
        if rc != "00":
            return "settlement_not_accepted", f"rc {rc}", "the host did not accept the totals"
        flags = profile.settlement_flags(answer)
        off = sorted(side for side, flag in flags.items() if flag in ("2", "3"))
        if off:
            return ("totals_unbalanced", "unbalanced", "field 48 flags " + ", ".join(f"{side} {flags[side]}"
                                                                                 for side in off)
                    + " (2 unbalanced, 3 error)")
        return None
    if rc == "95":
        return "totals_unbalanced", "unbalanced", "rc 95: the host's totals differ; the details follow"
    if rc not in ("00", None):
        return "settlement_not_accepted", f"rc {rc}", "the host did not accept the totals"
    return None


def wire_incidents(capture: Capture, duplicate_window: float = 600.0) -> list[IncidentReport]:
    """Incidents visible on the wire alone (a capture without operator actions, e.g. an imported pcap)."""
    out: list[IncidentReport] = []
    profile = get_profile(capture.dialect)
    pending: dict[tuple[str, int | None], tuple[float, Message]] = {}
    approved: list[tuple[float, str, int | None, str | None, Message]] = []
    for rec in capture.records:
        if rec["k"] != "iso" or not rec["hex"]:
            continue
        try:
            msg = Message.decode(bytes.fromhex(rec["hex"]), capture.dialect)
        except Exception:  # noqa: BLE001 - an undecodable message is skipped, not fatal
            continue
        t = float(rec["t"])
        if rec["dir"] == "out":
            pending[(msg.mti, msg.stan)] = (t, msg)
            if msg.is_reversal and not msg.is_repeat:
                out.append(IncidentReport("reversal", "reversal_on_wire", [f"stan {msg.stan}"], None, [evidence_image(msg)],
                                    "sent", "a reversal was sent for this STAN", [msg.mti]))
            continue
        request = pending.pop((msg.mti[:2] + str(int(msg.mti[2]) - 1) + msg.mti[3], msg.stan), (t, None))[1]
        if request is None:
            continue
        if request.mti == "0500":
            found = _settlement_on_wire(msg, profile)
            if found is not None:
                out.append(IncidentReport("unsettled", found[0], [f"stan {msg.stan}"], None, [], found[1], found[2],
                                          [msg.mti]))
        if request.mti in ("0200", "0100") and msg.approved and (request.processing_code or "")[:2] == "00":
            pan = request.pan.reveal() if request.pan is not None else None
            for at, other_pan, other_amount, other_tid, other in approved:
                if (other_pan, other_amount, other_tid) == (pan or "", request.amount, request.tid) and \
                        t - at <= duplicate_window:
                    out.append(IncidentReport("duplicate_charge", "same_card_amount_terminal",
                                        [f"stan {other.stan}", f"stan {request.stan}"], None, [],
                                        "detected", f"{t - at:.1f} s apart", [request.mti]))
            approved.append((t, pan or "", request.amount, request.tid, request))
    return out
