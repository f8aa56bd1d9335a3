"""The engine's sign-on participant: the 0800 sign-on, and the host's demand for one.

Before anything is sent, the engine signs on (0800; ISO field 70 = 001, CUP 60.3 = 001/003) when the host
demanded it — RC 77, or a CUP response header whose processing requirement is 3, on *any* response — or, with
``EnginePolicies.sign_on_at_start``, once per engine start; and, for a terminal with a master key (TMK), when
it holds no working keys or they are older than ``EnginePolicies.key_max_age`` (on the engine clock). The
demand is journaled durably (it survives a crash) and cleared only by an approved sign-on.

Working keys (``emv-keys.md`` §D; layouts in :mod:`posguard.engine.keys`) come in the profile's
``keys_field`` (CUP 62; ISO 48 as hex text), are verified against their check values under the TMK and, in the
same commit as "signed on", journaled sealed. The MAC key then goes to the link (:class:`KeyedLink`), which
MACs every message that needs it with the profile's ``mac_algorithm``. After a restart the keys of the last
sign-on are read back from the journal (:meth:`SignOn.restore`) unless a sign-off or a host demand came later,
so a kill -9 anywhere in a sign-on leaves the terminal signed on (the answer's commit happened) or not (it did
not), never half. :meth:`SignOn.sign_off` sends the sign-off (CUP 0820 60.3 = 002, ISO 0800/70 = 002) and
forgets the keys; "sign_off_started" is journaled in the commit before the send, so a kill -9 anywhere in a
sign-off leaves the terminal either signed on with keys the host still holds (killed before that commit: the host
never saw the sign-off) or not signed on (the next start signs on) — never holding keys the host has dropped.

:class:`SignOn` works on its :class:`~posguard.engine.engine.TransactionEngine` (journal, profile, terminal,
clock, link, kill points); the engine's ``sign_on``, ``sign_on_due`` and the check of every response delegate
to it.

Outside an engine (the host check of ``posguard diagnose``, link tests), :func:`sign_on_message` and
:func:`echo_message` build the 0800 sign-on and echo test for a codec dialect; send them with the link's
``exchange``. The transport builds no messages of its own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posguard.engine.errors import SignOnFailed
from posguard.engine.keys import KeyError_, WorkingKeys, parse_cup_keys
from posguard.engine.mac import MacKey, MacScheme
from posguard.engine.ports import HostError, KeyedLink
from posguard.engine.profiles import ECHO_CODE, SIGN_ON_CODE, SIGN_ON_CODE_DOUBLE_KEYS, network_fields
from posguard.engine.redact import masked_json, masked_message

if TYPE_CHECKING:
    from posguard.engine.engine import TransactionEngine
    from posguard.iso8583.message import Message
    from posguard.iso8583.spec import Dialect

__all__ = ["SignOn", "SignOnResult", "sign_on_message", "echo_message"]


@dataclass(frozen=True)
class SignOnResult:
    response_code: str | None
    stan: int
    reason: str


class SignOn:
    """Signs the engine on when due and notes the host's demands; the signed-on flag stays on the engine."""

    def __init__(self, engine: TransactionEngine) -> None:
        self.engine = engine
        #: when the working keys in use were received (engine clock), None without keys
        self.keys_at: float | None = None
        self._restore_tried = False

    def due(self) -> str | None:
        """Why a sign-on must precede the next message, or None."""
        engine = self.engine
        if engine.journal.sign_on_required():
            return "demanded by the host"
        if engine.policies.sign_on_at_start and not engine._signed_on:
            return "engine start"
        if engine.terminal.tmk is not None:
            if engine.working_keys is None and not self.restore() and not engine._signed_on:
                return "no working keys"  # (a host that signs on without keys is not asked again and again)
            max_age = engine.policies.key_max_age
            if max_age is not None and self.keys_at is not None and engine.clock.now() - self.keys_at >= max_age:
                return f"working keys older than {max_age:g} s"
        return None

    def restore(self) -> bool:
        """Take back the working keys of the last sign-on from the journal (after a restart), unless a sign-off
        came after them; True when the engine has keys afterwards. Tried once per engine start."""
        engine = self.engine
        if engine.working_keys is not None:
            return True
        if self._restore_tried:
            return False
        self._restore_tried = True
        rows = engine.journal.query("SELECT at, kind, detail FROM events WHERE kind IN ('working_keys', "
                                    "'sign_off_started', 'signed_off') ORDER BY id DESC LIMIT 1")
        if not rows or rows[0]["kind"] != "working_keys":
            return False
        detail = json.loads(rows[0]["detail"])
        clear = engine.sealer.open(bytes.fromhex(detail["sealed"]), f"working_keys:{detail['stan']}")
        keys = WorkingKeys(bytes.fromhex(clear["pin"]), bytes.fromhex(detail["pin_kcv"]),
                           MacKey(bytes.fromhex(clear["mac"])),
                           bytes.fromhex(clear["track"]) if clear.get("track") else None)
        self._install(keys, float(rows[0]["at"]))
        return True

    def _install(self, keys: WorkingKeys | None, at: float | None) -> None:
        """Use ``keys`` from now on: the MAC key goes to the link (None: forget them)."""
        engine = self.engine
        engine.working_keys = keys
        self.keys_at = at
        if isinstance(engine.link, KeyedLink):
            engine.link.use_mac_key(MacScheme(engine.profile.mac_algorithm, keys.mac) if keys is not None else None)

    def ensure(self, what: str) -> None:
        """Sign on first when one is due (see :meth:`due`); ``what`` names the message it must precede."""
        reason = self.due()
        if reason is not None:
            self.sign_on(reason=reason, before=what)

    def sign_on(self, *, reason: str = "operator", before: str = "") -> SignOnResult:
        """Send a 0800 sign-on and journal it; raise :class:`SignOnFailed` unless the host answers 00."""
        engine = self.engine
        with engine._atomic("sign_on_journaled"):
            stan = engine.journal.allocate_stan()
            fields = engine.profile.sign_on_fields(stan=stan, batch_no=engine.journal.current_batch(),
                                                   terminal_id=engine.terminal.terminal_id,
                                                   merchant_id=engine.terminal.merchant_id, now=engine.clock.now())
            engine.journal.record_message(direction="out", mti="0800", masked=masked_json("0800", fields, engine.profile.dialect), stan=stan)
            engine.journal.record_event("sign_on_started", detail={"reason": reason, "before": before, "stan": stan})
        engine._kill("host.before_send:0800")
        try:
            response = engine._wire.exchange(engine.profile.message("0800", fields),
                                             timeout=engine.terminal.host_timeout, demands=False)
        except HostError as exc:
            engine._kill("host.after_send:0800")
            with engine._atomic("sign_on_failed"):
                engine.journal.record_incident("sign_on_failed", f"sign-on ({reason}) got no answer: {exc}",
                                               detail={"stan": stan})
            raise SignOnFailed(f"{before or 'the next message'} refused: sign-on ({reason}) got no answer from the "
                               f"host ({exc}); check the host line and try again", pending_ids=(),
                               retry_in=None) from exc
        engine._kill("host.after_send:0800")
        rc = response.response_code
        keys, key_problem = self._working_keys(response) if rc == "00" else (None, None)
        with engine._atomic("sign_on_response"):
            engine.journal.record_message(direction="in", mti=response.mti, stan=response.stan,
                                          masked=masked_message(response, engine.profile.keys_field))
            if key_problem is not None:  # an approved sign-on whose keys do not check: not signed on
                engine.journal.set_sign_on_required(True)
                engine.journal.record_incident("key_check_failed", f"sign-on ({reason}): {key_problem}",
                                               severity="critical", detail={"stan": stan})
            elif rc == "00":
                engine.journal.set_sign_on_required(False)
                engine.journal.record_event("signed_on", detail={"reason": reason, "stan": stan,
                                                                 "keys_received": engine.profile.keys_field in response})
                if keys is not None:  # in the same commit: after a crash the terminal is signed on with them
                    engine.journal.record_event("working_keys", detail=self._sealed(keys, stan))
                self._adopt_batch(response)
            else:
                engine.journal.record_incident("sign_on_failed", f"sign-on ({reason}) answered RC {rc}",
                                               detail={"stan": stan, "rc": rc})
        if key_problem is not None:
            raise SignOnFailed(f"{before or 'the next message'} refused: {key_problem}", pending_ids=(),
                               retry_in=None)
        if rc != "00":
            raise SignOnFailed(f"{before or 'the next message'} refused: the host answered the sign-on ({reason}) "
                               f"with RC {rc}; check the terminal's registration with the acquirer",
                               pending_ids=(), retry_in=None)
        if keys is not None:
            self._install(keys, engine.clock.now())
        engine._signed_on = True
        return SignOnResult(rc, stan, reason)

    def sign_off(self, *, reason: str = "shutdown", timeout: float | None = None) -> SignOnResult | None:
        """Send the sign-off (CUP 0820 60.3 = 002; ISO 0800/70 = 002) and forget the working keys; None when
        the terminal is not signed on. The keys are forgotten even without an answer: the next start signs on.
        ``timeout``: how long to wait for the answer (default the host timeout)."""
        engine = self.engine
        if engine.working_keys is None and not engine._signed_on:
            return None
        with engine._atomic("sign_off_journaled"):
            stan = engine.journal.allocate_stan()
            mti, fields = engine.profile.sign_off_message(stan=stan, batch_no=engine.journal.current_batch(),
                                                          terminal_id=engine.terminal.terminal_id,
                                                          merchant_id=engine.terminal.merchant_id,
                                                          now=engine.clock.now())
            engine.journal.record_message(direction="out", mti=mti, masked=masked_json(mti, fields,
                                                                                     engine.profile.dialect), stan=stan)
            # in the same commit: from here the keys are not restored (the host may drop them any moment)
            engine.journal.record_event("sign_off_started", detail={"reason": reason, "stan": stan})
        engine._kill(f"host.before_send:{mti}")
        rc: str | None = None
        try:
            response = engine._wire.exchange(engine.profile.message(mti, fields),
                                             timeout=engine.terminal.host_timeout if timeout is None else timeout,
                                             demands=False)
            rc = response.response_code
            answer: Message | None = response
        except HostError as exc:
            answer = None
            why = str(exc)
        engine._kill(f"host.after_send:{mti}")
        with engine._atomic("signed_off"):
            if answer is not None:
                engine.journal.record_message(direction="in", mti=answer.mti, masked=masked_message(answer),
                                              stan=answer.stan)
            engine.journal.record_event("signed_off", detail={"reason": reason, "stan": stan, "rc": rc,
                                                              **({} if answer is not None else {"error": why})})
        self._install(None, None)
        engine._signed_on = False
        return SignOnResult(rc, stan, reason)

    def _adopt_batch(self, response: Message) -> None:
        """CUP: the sign-on answer's 60.2 is the acquirer's batch number for this terminal (``emv-keys.md`` §D);
        the terminal takes it when it is ahead of an empty open batch (see :meth:`Journal.adopt_batch`)."""
        engine = self.engine
        f60 = response.get("60") if engine.profile.uses_field_60 else None
        text = f60.decode("ascii", "replace") if isinstance(f60, bytes) else f60
        if not text or len(text) < 8 or not text[2:8].isdigit():
            return
        before = engine.journal.current_batch()
        if engine.journal.adopt_batch(int(text[2:8])):
            engine.journal.record_event("batch_from_sign_on", detail={"was": before, "now": int(text[2:8])})

    def _working_keys(self, response: Message) -> tuple[WorkingKeys | None, str | None]:
        """The verified working keys of an approved answer, or why they cannot be used (None, None: no keys, or
        no TMK to verify them with — the terminal then runs without MAC and PIN keys, as before)."""
        tmk = self.engine.terminal.tmk
        raw = response.get(self.engine.profile.keys_field)
        if tmk is None or raw is None:
            return None, None
        try:
            data = raw if isinstance(raw, bytes) else bytes.fromhex(raw)
        except ValueError:
            return None, (f"field {self.engine.profile.keys_field} of the sign-on answer is not hex text: "
                          "no working keys")
        try:
            return parse_cup_keys(data, tmk), None
        except KeyError_ as exc:
            return None, str(exc)

    def _sealed(self, keys: WorkingKeys, stan: int) -> dict[str, object]:
        """The working keys as the journal keeps them: sealed under the terminal's data key, check values clear."""
        blob = self.engine.sealer.seal({"pin": keys.pin_under_tmk.hex(), "mac": keys.mac.reveal().hex(),
                                        "track": keys.track_under_tmk.hex() if keys.track_under_tmk else None},
                                       f"working_keys:{stan}")
        return {"stan": stan, "sealed": blob.hex(), "pin_kcv": keys.pin_kcv.hex().upper(), "mac_kcv": keys.mac.kcv}

    def signed_on_again(self, kind: str) -> str:
        """After a request declined with the sign-on code (RC 77; ``pos-flows.md`` §B "RC 77 requires a new
        sign-on" [OP]): sign on at once and say what the operator does next. The request is **not** re-sent:
        the host did not process it (nothing was charged), and a chip sale's ARQC (9F26 over 9F02/9F37/9F36,
        EMV Book 2 A1.3) is single use — the card must be presented again for a new cryptogram, and a 0200
        re-sent with the old one would be a replay the issuer declines (``CryptogramReused`` refuses it before
        the wire). The declined transaction stays declined with RC 77; a new sale is a new transaction."""
        head = f"declined (RC {self.engine.profile.sign_on_rc}): the host asked for a new sign-on"
        try:
            self.sign_on(reason="demanded by the host", before=f"the {kind} after RC 77")
        except SignOnFailed as exc:
            return (f"{head}, which failed ({exc}); nothing was charged — sign on again (check the host line), "
                    "then present the card again")
        return f"{head}: signed on again; nothing was charged — present the card again"

    def host_demands(self, response: Message) -> None:
        """Any response may say "sign on again" (RC 77, CUP header 3): journal it durably."""
        engine = self.engine
        if response.mti in ("0810", "0830"):
            return
        why = engine.profile.sign_on_demanded(response) or _mac_refused(response)
        if why is None:
            return
        with engine._atomic("sign_on_demanded"):
            engine.journal.set_sign_on_required(True)
            engine.journal.record_event("sign_on_demanded", detail={"mti": response.mti, "stan": response.stan,
                                                                    "rc": response.response_code, "why": why})
        engine._signed_on = False


#: the host's answer to a request whose MAC it could not verify (emv-keys.md §E; our simulator in every dialect)
MAC_REFUSED_RC = "A0"


def _mac_refused(response: Message) -> str | None:
    """RC A0: the host could not verify the request's MAC, so the terminal's MAC key is not the host's — sign on
    again for fresh keys before the next message (openpos ``appinc/display.h``: A0 "check error / sign on again";
    ``docs/keys-and-mac.md`` §4)."""
    if response.response_code != MAC_REFUSED_RC:
        return None
    return "rc A0: the host could not verify the MAC"


# -- network management messages for a codec dialect ------------------------------------------------------
def sign_on_message(dialect: str | Dialect, *, stan: int, tid: str, mid: str, batch_no: int = 1,
                    operator: str = "001", when: float | None = None) -> Message:
    """An 0800 sign-on: ISO field 70 = 001; CUP-style dialects 60.3 = 003 (double-length keys), operator in 63."""
    in_60 = _network_in_field_60(dialect)
    fields = network_fields(SIGN_ON_CODE_DOUBLE_KEYS if in_60 else SIGN_ON_CODE, in_field_60=in_60, stan=stan,
                            batch_no=batch_no, terminal_id=tid, merchant_id=mid,
                            now=time.time() if when is None else when, operator=operator)
    return _message(dialect, fields)


def echo_message(dialect: str | Dialect, *, stan: int, tid: str, mid: str, batch_no: int = 1,
                 when: float | None = None) -> Message:
    """An echo test: ISO 0800 with field 70 = 301; CUP-style dialects 0820 with 60.3 = 301 (openpos ``logon.c``
    LOGON_Online: TRANS_ONLINETEST is an 0820, like the sign-off; ``docs/keys-and-mac.md`` "Second sources")."""
    in_60 = _network_in_field_60(dialect)
    fields = network_fields(ECHO_CODE, in_field_60=in_60, stan=stan, batch_no=batch_no, terminal_id=tid,
                            merchant_id=mid, now=time.time() if when is None else when)
    return _message(dialect, fields, "0820" if in_60 else "0800")


def _network_in_field_60(dialect: str | Dialect) -> bool:
    """CUP-style dialects have no field 70: network management goes in 60.3 instead."""
    from posguard.iso8583 import get_dialect

    return "70" not in get_dialect(dialect).fields


def _message(dialect: str | Dialect, fields: dict[str, str | bytes], mti: str = "0800") -> Message:
    from posguard.iso8583.message import Message

    values: dict[str | int, str | bytes] = dict(fields.items())
    return Message(mti, values, dialect)
