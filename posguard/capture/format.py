"""The capture file: JSON Lines, one header then one record per line (see ``docs/capture-format.md``)."""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from posguard.capture.errors import CaptureError
from posguard.capture.ops import OPERATOR_ACTIONS
from posguard.capture.sanitize import Sanitiser, blank_names, blank_verify
from posguard.clock import Clock, SystemClock
from posguard.engine.pos_entry import ENTRY_MODES
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import parse_tlv
from posguard.sensitive import luhn_ok, mask_digits_in_text

if TYPE_CHECKING:
    from posguard.engine.engine import EnginePolicies
    from posguard.engine.observe import Exchange

__all__ = ["CAPTURE_VERSION", "HEADER_POLICIES", "KINDS", "OP_ARGUMENTS", "RECORD_KEYS", "Capture", "CaptureError",
           "CaptureWriter", "header_policies", "read_capture", "sanitise_frame"]

CAPTURE_VERSION = 1
#: record keys that hold hex (sanitised against learnt PANs only, never pattern-scrubbed)
HEX_KEYS = frozenset({"hex", "c", "r", "atr", "field55", "cvm_results", "messages", "script_results"})
#: the arguments of the operator actions (:data:`~posguard.capture.ops.OPERATOR_ACTIONS`): the keys an ``op`` record
#: may carry besides ``op``; which of them its own action takes is checked when it is replayed (``check_op``)
OP_ARGUMENTS = tuple(sorted({name for action in OPERATOR_ACTIONS.values() for name in action.args}))
#: record kind -> the keys it defines besides ``t`` and ``k`` (docs/capture-format.md, "Records" and "The keys of
#: each record kind"); the reader refuses any other key
RECORD_KEYS: dict[str, tuple[str, ...]] = {
    "card": ("ref", "pan", "expiry", "entry_mode", "scheme", "cvm_results", "field55", "presentation", "second_gac",
             "cvm_required", "source", "label", "aid"),
    "atr": ("atr",),
    "apdu": ("c", "r"),
    "swipe": ("track2", "ref", "has_track1"),
    "frame": ("dir", "hex"),
    "iso": ("dir", "hex", "mti", "stan", "removed", "undecodable"),
    "link": ("event", "maybe_sent", "detail", "kind", "rule", "txn_ids"),
    "op": ("op", *OP_ARGUMENTS),
    "start": ("started",),
    "card_outcome": ("presentation", "cryptogram", "atc", "script_results", "field55"),
}
KINDS = tuple(RECORD_KEYS)
#: records a recorder may write after later ones, with the time they crossed the line (a Twin read's frames are
#: held until its PAN is known): exempt from the time-order check, as are ``in`` records (a late answer may be
#: written next to its request, docs/capture-format.md "A late answer is a timeout")
_HELD_KINDS = ("atr", "apdu", "swipe", "frame")


@dataclass
class Capture:
    """A capture as read: the first header, every record in order, and the file line of each record.

    A file a service appended to after a restart holds one segment per start; each later segment's header
    becomes a ``start`` record (its ``t`` continues the time line) so a replay restarts where the live
    terminal did.
    """

    header: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    #: (line, key) of each key the reader ignored: no record kind defines it and it is no near-spelling of one
    #: (an author's ``"comment"``); the key masked where it holds digits
    ignored: list[tuple[int, str]] = field(default_factory=list)

    @property
    def dialect(self) -> str:
        return str(self.header["dialect"])

    @property
    def tid(self) -> str:
        return str(self.header["terminal"]["tid"])

    @property
    def mid(self) -> str:
        return str(self.header["terminal"]["mid"])

    def of_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r["k"] == kind)


def _check_field55(rec: Mapping[str, Any], line: int) -> None:
    """``field55`` as hex (:func:`_check_hex`) holding BER-TLV objects as field 55 carries them (no padding between
    them), or empty (a swiped card): a hand-written value that is no TLV would go on the wire as written."""
    _check_hex(rec, "field55", line)
    data = bytes.fromhex(rec["field55"])
    try:
        parse_tlv(data, path="55", skip_padding=False)
    except TLVError as exc:
        raise CaptureError(line, f"{rec.get('k')} record's \"field55\" is not BER-TLV (tag, length, value; field 55): "
                                 f"{exc}") from None


def _check_frame(raw: bytes, line: int) -> None:
    """A ``frame`` record's bytes as the recorder writes them (:func:`sanitise_frame`): a whole GemPC Twin frame,
    ``03 06``, a CCID header of 10 bytes, its payload and the LRC, or zeros (what was no whole frame)."""
    from posguard.drivers.twin.frames import ACK, CCID_HEADER, SYNC, lrc

    if not any(raw):
        return
    if raw[:2] != bytes((SYNC, ACK)):
        raise CaptureError(line, f"frame record: a frame starts 03 06, this one {raw[:2].hex(' ').upper()} (byte 0); "
                                 "what was no whole frame is written as zeros of its length")
    if len(raw) < 3 + CCID_HEADER:
        raise CaptureError(line, f"frame record: {len(raw)} bytes, shorter than a frame (03 06, a {CCID_HEADER}-byte "
                                 "CCID header, the LRC)")
    want = lrc(raw[2:-1]) ^ SYNC ^ ACK
    if raw[-1] != want:
        raise CaptureError(line, f"frame record: the LRC (byte {len(raw) - 1}) is {raw[-1]:02X}, the frame's bytes give "
                                 f"{want:02X}")


def _check_hex(rec: Mapping[str, Any], key: str, line: int) -> None:
    value = rec.get(key)
    if not isinstance(value, str):
        raise CaptureError(line, f"{rec.get('k')} record needs {key!r} as a hex string")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise CaptureError(line, f"{rec.get('k')} record: {key!r} is not hex: {_why_not_hex(value)}") from None


def _why_not_hex(value: str) -> str:
    """What is wrong with a string ``bytes.fromhex`` refused, and where (the character offset in the value)."""
    digits = 0
    for i, ch in enumerate(value):
        if ch.isspace():
            if digits % 2:
                return f"a space at character {i} splits a byte"
        elif ch not in "0123456789abcdefABCDEF":
            return f"{json.dumps(ch)} at character {i} is not a hex digit"
        else:
            digits += 1
    return f"{digits} hex digits, an odd number: two make a byte, so one is missing or one too many"


#: every key some record kind defines
_DEFINED_KEYS = frozenset({"t", "k"}.union(*RECORD_KEYS.values()))


def _written(value: Any) -> str:
    """A key or value as the author wrote it (JSON), for a message: quoted, card numbers masked, cut at 40
    characters (a key may be anything, even a PAN)."""
    return mask_digits_in_text(json.dumps(value))[:40]


def _whole(value: Any) -> bool:
    """A JSON whole number (``true`` is no number, though Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(rec: Mapping[str, Any], kind: str, line: int) -> list[str]:
    """The keys of ``rec`` its kind does not define and that are the author's own (a ``"comment"``), for the reader
    to drop and list. A key that looks like a mistake is refused instead, never dropped without a word: a key of
    another kind (``txn`` on an ``iso`` record) or a near-spelling of one of this kind's keys (``"amout"``)."""
    keys = RECORD_KEYS[kind]
    ignored: list[str] = []
    for key in rec:
        if key in ("t", "k") or key in keys:
            continue
        near = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
        if key not in _DEFINED_KEYS and not near:
            ignored.append(key)
            continue
        a = "an" if kind[0] in "aeiou" else "a"
        defined = (f"op, and an operator action's arguments: {', '.join(keys[1:])}" if kind == "op"
                   else ", ".join(keys))
        hint = f"; did you mean {near[0]!r}?" if near and key not in _DEFINED_KEYS else ""
        raise CaptureError(line, f"{kind} record has the key {_written(key)}, which {a} {kind} record does not define (its "
                                 f"keys: t, k, {defined}{hint}; docs/capture-format.md, \"The keys of each record "
                                 "kind\")")
    return ignored


def _validate(rec: Any, line: int, ignored: list[tuple[int, str]]) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise CaptureError(line, "a record must be a JSON object")
    t, k = rec.get("t"), rec.get("k")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
        raise CaptureError(line, "record needs \"t\" (seconds since start, a finite number >= 0)")
    if k not in KINDS:
        raise CaptureError(line, f"unknown record kind {k!r}; expected one of {', '.join(KINDS)}")
    for key in _check_keys(rec, k, line):  # the author's own: dropped, and listed (masked) for the replay to say
        del rec[key]
        ignored.append((line, _written(key)))
    if k == "apdu":
        _check_hex(rec, "c", line)
        _check_hex(rec, "r", line)
    elif k == "iso":
        _check_hex(rec, "hex", line)
        if rec.get("dir") not in ("out", "in"):
            raise CaptureError(line, "iso record needs \"dir\": \"out\" or \"in\"")
        _check_mti_stan(rec, line)
    elif k == "atr":
        _check_hex(rec, "atr", line)
    elif k == "frame":
        _check_hex(rec, "hex", line)
        if rec.get("dir") not in ("out", "in"):
            raise CaptureError(line, "frame record needs \"dir\": \"out\" or \"in\"")
        _check_frame(bytes.fromhex(rec["hex"]), line)
    elif k == "swipe":
        _check_track2(rec.get("track2"), line)
    elif k == "link":
        if rec.get("event") not in LINK_EVENTS:
            raise CaptureError(line, f"link record's \"event\" is {_json_type(rec.get('event'))} "
                                     f"{_written(rec.get('event'))}; it must be one of {', '.join(LINK_EVENTS)}")
        if "maybe_sent" in rec and not isinstance(rec["maybe_sent"], bool):
            raise CaptureError(line, f"link record's \"maybe_sent\" is {_json_type(rec['maybe_sent'])} "
                                     f"{_written(rec['maybe_sent'])}; it must be true or false (whether the request may "
                                     "have reached the host)")
    elif k == "op" and not isinstance(rec.get("op"), str):
        raise CaptureError(line, "op record needs \"op\" (the operator action)")
    elif k == "card":
        if not isinstance(rec.get("ref"), str) or not rec["ref"]:
            raise CaptureError(line, "card record needs \"ref\" (what op records name, e.g. \"c1\")")
        pan = rec.get("pan")
        if isinstance(pan, str) and "*" in pan:
            raise CaptureError(line, "card record's \"pan\" is masked; a capture holds the card's whole test PAN "
                                     "(12 to 19 digits, Luhn-valid): the replay charges it")
        if not isinstance(pan, str) or not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise CaptureError(line, "card record needs \"pan\": 12 to 19 digits (a test PAN)")
        if not luhn_ok(pan):
            raise CaptureError(line, "card record's \"pan\" fails the Luhn check (its last digit is not the check "
                                     "digit of the others): a test PAN is Luhn-valid, as the recorder writes it; a "
                                     "digit may be mistyped")
        expiry = rec.get("expiry")
        if expiry is not None and not (isinstance(expiry, str) and len(expiry) == 4 and expiry.isdigit()
                                       and 1 <= int(expiry[2:]) <= 12):
            raise CaptureError(line, f"card record's \"expiry\" is {_json_type(expiry)} {_written(expiry)}; it must "
                                     "be YYMM in a string, e.g. \"2812\" (field 14)")
        if rec.get("entry_mode") is not None and rec["entry_mode"] not in ENTRY_MODES:
            raise CaptureError(line, f"card record's \"entry_mode\" is {_written(rec['entry_mode'])}; it must be one "
                                     f"of {', '.join(ENTRY_MODES)} (field 22)")
        _check_field55(rec, line)
        if rec.get("cvm_results") is not None:
            _check_hex(rec, "cvm_results", line)
        if "presentation" in rec and not _count(rec["presentation"]):
            raise CaptureError(line, f"card record's \"presentation\" is {_json_type(rec['presentation'])} "
                                     f"{_written(rec['presentation'])}; it must be a number (1, 2...)")
        for flag in ("second_gac", "cvm_required"):
            if flag in rec and not isinstance(rec[flag], bool):
                raise CaptureError(line, f"card record's \"{flag}\" is {_json_type(rec[flag])} {_written(rec[flag])}; "
                                         "it must be true or false")
    elif k == "card_outcome":
        if not _count(rec.get("presentation")):
            raise CaptureError(line, "card_outcome record needs \"presentation\" (the number of its card record: 1, "
                                     "2...)")
        if rec.get("cryptogram") not in ("TC", "AAC"):
            raise CaptureError(line, "card_outcome record needs \"cryptogram\": \"TC\" or \"AAC\"")
        _check_field55(rec, line)
        if rec.get("script_results"):
            _check_hex(rec, "script_results", line)
        atc = rec.get("atc")
        if atc is not None and not (_whole(atc) and 0 <= atc <= 0xFFFF):
            raise CaptureError(line, f"card_outcome record's \"atc\" is {_json_type(atc)} {_written(atc)}; it must be "
                                     "the card's transaction counter (9F36), a number 0 to 65535")
    return rec


def read_capture(path: str | Path | IO[str]) -> Capture:
    """Parse and validate a capture; :class:`CaptureError` names the line of the first problem."""
    if isinstance(path, str | Path):
        try:
            # utf-8-sig: a byte order mark an editor put first is not part of the header (a strict refusal would
            # only annoy a hand-writer); CRLF line ends and blank lines are tolerated by _read
            with open(path, encoding="utf-8-sig") as fh:
                return read_capture(fh)
        except OSError as exc:
            raise CaptureError(0, f"cannot open {path}: {exc.strerror}") from None
    try:
        return _read(path)
    except UnicodeDecodeError as exc:
        raise CaptureError(0, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02X} in a line); a capture is "
                              "JSON Lines in UTF-8") from None


def _read(path: IO[str]) -> Capture:
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    ignored: list[tuple[int, str]] = []
    offset = last_t = 0.0  # a later segment's times continue the first one's
    ordered: tuple[float, int] | None = None  # (t, line) of the latest record that must be in time order
    for n, raw in enumerate(path, 1):
        if n == 1:
            raw = raw.removeprefix("\ufeff")  # a stream opened without utf-8-sig
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw, object_pairs_hook=_once_each)
        except json.JSONDecodeError as exc:
            raise CaptureError(n, f"not JSON ({exc.msg} at column {exc.colno})") from None
        except _KeyTwice as exc:
            raise CaptureError(n, f"the key {_written(exc.key)} is written twice in one object (JSON keeps only the "
                                  "last value, which may not be the one meant): write it once") from None
        except RecursionError:
            raise CaptureError(n, "JSON nested too deeply to be a capture record") from None
        if header is None or (isinstance(obj, dict) and "posguard_capture" in obj):
            segment = _header(obj, n)
            if header is None:
                header = segment
                continue
            if (segment["dialect"], segment["terminal"].get("tid")) != (header["dialect"], header["terminal"]["tid"]):
                raise CaptureError(n, "a later segment of a capture must have the first one's dialect and terminal "
                                      f"({header['dialect']}, {header['terminal']['tid']})")
            offset = max(last_t, _seconds_between(header.get("started"), segment.get("started")))
            records.append({"t": offset, "k": "start", "started": segment.get("started")})
            lines.append(n)
            continue
        rec = _validate(obj, n, ignored)
        if rec["k"] == "iso" and rec["hex"]:
            _check_decodes(rec, header["dialect"], n)
        if offset:
            rec["t"] = round(float(rec["t"]) + offset, 6)
        if rec["k"] not in _HELD_KINDS and not (rec["k"] == "iso" and rec["dir"] == "in"):
            if ordered is not None and float(rec["t"]) < ordered[0]:
                raise CaptureError(n, f"{rec['k']} record's \"t\" {rec['t']} is earlier than the {ordered[0]} of "
                                      f"line {ordered[1]}: records are in the order they happened (\"t\" "
                                      "non-decreasing)")
            ordered = (float(rec["t"]), n)
        last_t = max(last_t, float(rec["t"]))
        records.append(rec)
        lines.append(n)
    if header is None:
        raise CaptureError(1, "empty file: no capture header")
    return Capture(header, records, lines, ignored)


class _KeyTwice(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each written once (``json``'s own reading keeps the last of a repeated key
    without a word: a hand-edited ``"amount"`` written twice would replay with the value the author did not mean)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _KeyTwice(key)
        obj[key] = value
    return obj


#: the ``event`` of a ``link`` record: a host-link failure (``HostLinkError.event``) or the start of a correction
LINK_EVENTS = ("timeout", "link_error", "invalid_response", "error", "flow")


def _check_track2(track2: Any, line: int) -> None:
    """A ``swipe`` record's ``track2`` as the recorder writes it: PAN, separator, expiry and service code (7
    digits), then zeros; the discretionary data (PVV, CVV) is card data a capture never holds."""
    if not isinstance(track2, str):
        raise CaptureError(line, "swipe record needs \"track2\" (the sanitised track 2)")
    pan, sep, rest = track2.partition("=") if "=" in track2 else track2.partition("D")
    if sep and rest[7:].strip("0"):
        raise CaptureError(line, f"swipe record's \"track2\" holds discretionary data (CVV, PVV) at character "
                                 f"{len(pan) + 1 + 7 + len(rest[7:]) - len(rest[7:].lstrip('0'))}: a capture keeps "
                                 "PAN=YYMMSSS and zeros after it (docs/capture-format.md, \"Sanitised as written\")")


def _check_mti_stan(rec: Mapping[str, Any], line: int) -> None:
    """An ``iso`` record's ``mti`` and ``stan``, what the replay checks each request it sends against: of the type
    the recorder writes, and present on an ``out`` record whose message is not written (``"hex": ""``)."""
    mti, stan = rec.get("mti"), rec.get("stan")
    if mti is not None and not (isinstance(mti, str) and len(mti) == 4 and mti.isdigit()):
        raise CaptureError(line, f"iso record's \"mti\" is {_json_type(mti)} {_written(mti)}; it must be the message "
                                 "type as 4 digits in a string, e.g. \"0200\"")
    if stan is not None and not (_whole(stan) and 0 <= stan <= 999_999):
        raise CaptureError(line, f"iso record's \"stan\" is {_json_type(stan)} {_written(stan)}; it must be the STAN "
                                 "(field 11) as a whole number up to 999999, e.g. 1")
    if rec["dir"] == "out" and not rec["hex"] and "undecodable" not in rec and (mti is None or stan is None):
        raise CaptureError(line, "iso record (out) with \"hex\": \"\" needs \"mti\" and \"stan\": the replay checks "
                                 "the request it sends against them")


def _check_decodes(rec: Mapping[str, Any], dialect: str, n: int) -> None:
    """An ``iso`` record's message decodes with the header's dialect: a recorder writes one it could not decode as
    ``"hex": ""`` with its length in ``undecodable``, so any other is the writer's mistake (a message cut short,
    encoded for another dialect), named here with its line and the codec's field and byte offset, not met later as
    the failure of whichever operator action first reads it."""
    from posguard.iso8583 import Iso8583Error, Message

    try:
        Message.decode(bytes.fromhex(rec["hex"]), dialect)
    except Iso8583Error as exc:
        raise CaptureError(n, f"iso record ({rec['dir']}): its \"hex\" does not decode as {dialect}: "
                              f"{type(exc).__name__}: {exc}") from None


def _seconds_between(first: Any, later: Any) -> float:
    """Seconds from one segment's ``started`` to a later one's (0 when either is missing or not ISO-8601)."""
    try:
        return max(0.0, (datetime.fromisoformat(str(later)) - datetime.fromisoformat(str(first))).total_seconds())
    except ValueError:
        return 0.0


def _header(obj: Any, n: int) -> dict[str, Any]:
    if isinstance(obj, dict) and "posguard_capture" in obj and obj["posguard_capture"] != CAPTURE_VERSION:
        raise CaptureError(n, f"capture format version {obj['posguard_capture']!r}: this posguard reads version "
                              f"{CAPTURE_VERSION} (\"posguard_capture\": {CAPTURE_VERSION}, docs/capture-format.md)")
    if not isinstance(obj, dict) or obj.get("posguard_capture") != CAPTURE_VERSION:
        raise CaptureError(n, f"not a posguard capture: the first line must be a header with "
                              f"\"posguard_capture\": {CAPTURE_VERSION}")
    term = obj.get("terminal")
    if not isinstance(obj.get("dialect"), str) or not isinstance(term, dict) or "tid" not in term:
        raise CaptureError(n, "header needs \"dialect\" and \"terminal\": {\"tid\", \"mid\"}")
    from posguard.iso8583 import Iso8583Error, dialect_names, get_dialect

    try:
        get_dialect(obj["dialect"])
    except (Iso8583Error, KeyError, ValueError):
        raise CaptureError(n, f"unknown dialect {obj['dialect']!r}; known: {', '.join(dialect_names())}") from None
    _check_terminal(term, get_dialect(obj["dialect"]), n)
    _check_policies(obj.get("policies"), n)
    return obj


def _count(value: Any) -> bool:
    """A whole number from 1 (a presentation's number)."""
    return _whole(value) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_terminal(term: Mapping[str, Any], dialect: Any, n: int) -> None:
    """The header's ``terminal``: what the replay's engine is configured with, so a wrong type is named here (the
    key and what it must be), not met later as a traceback or a message field of the wrong length."""
    for key, f in (("tid", "41"), ("mid", "42")):
        value = term.get(key)
        if value is None:
            continue
        size = dialect.fields[f].max_len
        if not isinstance(value, str) or len(value) > size:
            raise CaptureError(n, f"header \"terminal\" key \"{key}\" is {_json_type(value)} {_written(value)}; it "
                                  f"must be a string of at most {size} characters (field {f})")
    currency = term.get("currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3 and currency.isdigit()):
        raise CaptureError(n, f"header \"terminal\" key \"currency\" is {_json_type(currency)} {_written(currency)}; it must "
                              "be the ISO 4217 numeric code as 3 digits, e.g. \"156\"")
    timeout = term.get("timeout")
    if timeout is not None and not (_number(timeout) and timeout > 0):
        raise CaptureError(n, f"header \"terminal\" key \"timeout\" is {_json_type(timeout)} {_written(timeout)}; it must be "
                              "the host timeout in seconds, a number > 0, e.g. 1.5")


#: the engine policies a header may name (``policies``: the live run's, which its replay uses) and what each is
HEADER_POLICIES: dict[str, str] = {
    "saf_timeout": "seconds a queued reversal or advice waits for its answer, a number > 0",
    "backoff_initial": "seconds before the first retry of a queued message, a number >= 0",
    "block_new_transactions": "true or false",
    "send_reversal_immediately": "true or false",
}


def header_policies(policies: EnginePolicies) -> dict[str, Any]:
    """The header's ``policies`` for an engine that runs with ``policies`` (what a replay reads back, so that it
    times reversals and retries as the recorded terminal did)."""
    return {"saf_timeout": policies.saf.timeout, "backoff_initial": policies.saf.backoff_initial,
            "block_new_transactions": policies.saf.block_new_transactions,
            "send_reversal_immediately": policies.send_reversal_immediately}


def _check_policies(policies: Any, n: int) -> None:
    if policies is None:
        return
    if not isinstance(policies, dict):
        raise CaptureError(n, f"header \"policies\" is {_json_type(policies)}; it must be an object: "
                              f"{{{', '.join(HEADER_POLICIES)}}}, each optional")
    for key, value in policies.items():
        if key not in HEADER_POLICIES:
            near = difflib.get_close_matches(str(key), HEADER_POLICIES, n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CaptureError(n, f"header \"policies\" has the key {_written(str(key))}, which is no engine policy "
                                  f"(known: {', '.join(HEADER_POLICIES)}{hint})")
        ok = (isinstance(value, bool) if HEADER_POLICIES[key] == "true or false"
              else _number(value) and (value > 0 if key == "saf_timeout" else value >= 0))
        if not ok:
            raise CaptureError(n, f"header \"policies\" key \"{key}\" is {_json_type(value)} {_written(value)}; it must be "
                                  f"{HEADER_POLICIES[key]}")


def _json_type(value: Any) -> str:
    """The JSON type of ``value`` as an author wrote it (a message names what was written, not a Python type)."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class CaptureWriter:
    """Writes a capture as it happens, sanitised before anything reaches the file (mode 0600).

    With ``append`` (what the service uses) an existing file is never truncated: a new header starts a new
    segment, so a service restarted after a crash keeps the evidence from before it. Without it (a demo day or a
    pcap import, each starting from nothing) the file is written anew.
    """

    def __init__(self, path: str | Path, *, dialect: str, tid: str, mid: str, clock: Clock | None = None,
                 sanitiser: Sanitiser | None = None, extra: Mapping[str, Any] | None = None,
                 terminal_extra: Mapping[str, Any] | None = None, append: bool = False) -> None:
        self.path = Path(path)
        self.dialect = dialect
        self.clock = clock or SystemClock()
        self.sanitiser = sanitiser or Sanitiser()
        self._start = self.clock.monotonic()
        self._last_t = 0.0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        started = datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="milliseconds")
        self._write({"posguard_capture": CAPTURE_VERSION, "dialect": dialect,
                     "terminal": {"tid": tid, "mid": mid, **(terminal_extra or {})}, "started": started,
                     **(extra or {})})

    # -- plumbing -------------------------------------------------------------------------------------
    def _write(self, obj: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self._fh.flush()

    def _now(self) -> float:
        return round(self.clock.monotonic() - self._start, 6)

    def record(self, kind: str, /, **data: Any) -> None:
        """Write one record; string values are sanitised against every PAN learnt so far."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        at = data.pop("_at", None)
        undefined = [key for key in data if key not in RECORD_KEYS[kind]]
        if undefined:  # the reader would refuse the file: a recorder's bug, said before the file is spoilt
            raise ValueError(f"{kind} record: keys {', '.join(map(_written, undefined))} are not defined for it "
                             f"(RECORD_KEYS[{kind!r}])")
        clean = {k: self._clean(v, k in HEX_KEYS) for k, v in data.items()}
        t = self._now() if at is None else round(at - self._start, 6)
        t = self._last_t = max(t, self._last_t)  # records stay in time order
        self._write({"t": t, "k": kind, **clean})

    def _clean(self, value: Any, is_hex: bool = False) -> Any:
        if _whole(value) and 13 <= len(str(abs(value))) <= 19:
            return int(self.sanitiser.scrub_unknown(str(value)))  # a card number keyed where a number belongs
        if isinstance(value, str):  # hex: only PANs learnt from decoded data; text: any Luhn-valid PAN too
            return self.sanitiser.text(value) if is_hex else self.sanitiser.scrub_unknown(value)
        if isinstance(value, dict):
            return {k: self._clean(v, k in HEX_KEYS) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v, is_hex) for v in value]
        return value

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- typed records ---------------------------------------------------------------------------------
    def learn_pan(self, pan: str) -> str:
        return self.sanitiser.learn(pan)

    def apdu(self, command: bytes, response: bytes) -> None:
        """One APDU pair; a VERIFY (INS 20: the PIN block) keeps its header and loses its data."""
        self.sanitiser.learn_from_response(response)
        self.record("apdu", c=blank_verify(command).hex().upper(), r=blank_names(response).hex().upper())

    def frame(self, direction: str, raw: bytes, *, at: float | None = None) -> None:
        """A raw GemPC Twin frame (``03 06 <CCID> LRC``), sanitised like an ``apdu`` record: see
        :func:`sanitise_frame`. ``at``: when it crossed the line (the clock's monotonic time), if buffered."""
        clean = sanitise_frame(raw, self.sanitiser)
        self.record("frame", dir=direction, hex=clean.hex().upper(), **({"_at": at} if at is not None else {}))

    def swipe(self, track2: str, **extra: Any) -> None:
        """A magnetic stripe read: track 2 (``PAN=YYMMSSS...``) keeps PAN (replaced by its test PAN), separator,
        expiry and service code; the discretionary data (PVV, CVV) is zeroed. Track 1 is never written."""
        pan, sep, rest = track2.partition("=") if "=" in track2 else track2.partition("D")
        test = self.sanitiser.learn(pan) if sep else ""
        clean = test + sep + rest[:7] + "0" * max(0, len(rest) - 7) if sep else "0" * len(track2)
        self.record("swipe", track2=clean, **extra)

    def now(self) -> float:
        """The clock's monotonic time (what ``frame(at=...)`` takes)."""
        return self.clock.monotonic()

    def on_exchange(self, exchange: Exchange) -> None:
        """The engine's exchange listener: an ``iso`` record for each request and response, and for a failure a
        ``link`` record (``timeout``, ``link_error``, ``invalid_response``) so that a replay raises the same
        failure at the same point."""
        if exchange.event == "sent":
            self.iso("out", exchange.request.encode())
        elif exchange.event == "received" and exchange.response is not None:
            self.iso("in", exchange.response.encode())
        elif exchange.event == "failed" and exchange.error is not None:
            self.record("link", event=exchange.error.event, maybe_sent=exchange.error.maybe_sent,
                        detail=mask_digits_in_text(str(exchange.error))[:200])

    def iso(self, direction: str, raw: bytes) -> None:
        """An ISO 8583 message without framing: decoded, the fields its dialect keeps out of captures (PIN
        blocks, keys: :func:`~posguard.iso8583.redaction.capture_drops`) removed, PANs replaced."""
        from posguard.iso8583 import Message
        from posguard.iso8583.redaction import capture_drops

        try:
            msg = Message.decode(raw, self.dialect)
        except Exception:  # noqa: BLE001 - an undecodable frame is kept only as its length
            self.record("iso", dir=direction, hex="", undecodable=len(raw))
            return
        pan = msg.pan
        if pan is not None:
            self.sanitiser.learn(pan.reveal())
        removed = capture_drops(msg)
        keys = _keys_field(self.dialect) if msg.mti.startswith("08") else None
        if keys is not None and keys in msg and keys not in removed:  # a sign-on answer's working keys
            removed.append(keys)
        for f in removed:
            del msg[f]
        icc = msg.get("55")
        raw55 = icc if isinstance(icc, bytes) else _hex_or_none(icc)
        clean55 = blank_names(raw55) if raw55 is not None else None
        if clean55 is not None and clean55 != raw55:  # the cardholder's name never reaches a capture
            msg["55"] = clean55 if isinstance(icc, bytes) else clean55.hex().upper()
            removed.append("55.name")
        track2 = msg.get("35")
        if isinstance(track2, str):  # keep PAN, expiry and service code; discretionary data (CVV) zeroed
            cut = next((i for i, c in enumerate(track2) if c in "=D"), len(track2)) + 8
            msg["35"] = track2[:cut] + "0" * max(0, len(track2) - cut)
            removed.append("35.discretionary")
        track3 = msg.get("36")
        if isinstance(track3, str):  # keep format code and PAN (replaced below); the rest zeroed
            cut = next((i for i, c in enumerate(track3) if c in "=D"), len(track3)) + 1
            msg["36"] = track3[:cut] + "0" * max(0, len(track3) - cut)
            removed.append("36.discretionary")
        if removed:
            raw = msg.encode()
        self.record("iso", dir=direction, mti=msg.mti, stan=msg.stan, hex=raw.hex().upper(),
                    **({"removed": removed} if removed else {}))


def _keys_field(dialect: str) -> str | None:
    """Where the dialect's sign-on answer carries the working keys (CUP 62, declared as keys in its field table;
    ISO 48 by private agreement, which the field table cannot say): never in a capture, even under the TMK."""
    from posguard.engine.profiles import UnknownProfile, get_profile

    try:
        return get_profile(dialect).keys_field
    except UnknownProfile:  # a dialect posguard has no profile for: its field table decides alone
        return None


def _hex_or_none(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def sanitise_frame(raw: bytes, sanitiser: Sanitiser) -> bytes:
    """A Twin frame with its APDU sanitised like an ``apdu`` record, and its LRC recomputed.

    An XfrBlock command (6F) that is a VERIFY loses its PIN data; PANs (learnt, and any a data block carries in
    tags 5A/57) are replaced by their test PANs in every spelling. Lengths never change, so the CCID header
    stays right; the LRC is computed again so the record is still a valid frame. Anything that is not a
    whole ``03 06`` frame is kept only as zeros of its length.
    """
    from posguard.drivers.twin.frames import (
        CCID_HEADER,
        PC_TO_RDR_XFR_BLOCK,
        RDR_TO_PC_DATA_BLOCK,
        encode_frame,
    )

    if len(raw) < 3 + CCID_HEADER or raw[:2] != b"\x03\x06":
        return bytes(len(raw))
    ccid = raw[2:-1]
    header, payload = ccid[:CCID_HEADER], ccid[CCID_HEADER:]
    if header[0] == PC_TO_RDR_XFR_BLOCK:
        payload = blank_verify(payload)
    elif header[0] == RDR_TO_PC_DATA_BLOCK:
        sanitiser.learn_from_response(payload)
    if payload:
        payload = bytes.fromhex(sanitiser.text(blank_names(payload).hex().upper()))
    return encode_frame(header + payload)
