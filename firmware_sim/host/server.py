"""The simulated acquirer host: a real ISO 8583 TCP server on loopback.

Run it as a program (``python -m firmware_sim.host``) or in-process in background threads for tests::

    with HostSimulator(SimConfig(dialect="cup")) as sim:
        sim.add_fault("no_response", mti="0200")
        ...                          # connect to ("127.0.0.1", sim.port)
        sim.ledger.find(kind="sale")

Either way it is a real TCP server; only the control surface differs (Python API in-process, a JSON-lines
control port for a separate process — see :mod:`firmware_sim.host.control`).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import iso8583

from . import mac as sim_mac
from .dialects import BINARY_IS_RAW, HEADER_LEN, get_spec
from .faults import Fault, FaultPlan
from .framing import Deframer, frame
from .issuer import Issuer
from .keys import TEST_TMK, KeyStore, kcv4
from .ledger import Ledger, mask_pan
from .pin import PinChecker, card_pin_table
from .processor import Doc, Processor
from .rules import DEFAULT_RULES, RuleSet

SENSITIVE_FIELDS = ("35", "36", "45", "52", "55")


#: the default local-date window: a day (issue 12 §5; CUP RC 05 condition 4, "more than 24 hours")
DAY = 24 * 3600.0


class Scheduler(Protocol):
    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...


class RealScheduler:
    """Wall-clock scheduling with daemon timers (a VirtualClock can be passed instead in tests)."""

    def now(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> threading.Timer:
        t = threading.Timer(delay, callback)
        t.daemon = True
        t.start()
        return t


class OffsetScheduler(RealScheduler):
    """The wall clock moved to start at ``start`` (epoch seconds) and run on from there: the real server's clock
    when it faces a terminal on virtual time (``--clock-start``), so its date and key-age checks agree with the
    terminal's fields 12/13 (issue 12 §5) the way the in-process harness's shared VirtualClock does."""

    def __init__(self, start: float) -> None:
        self.offset = start - time.time()

    def now(self) -> float:
        return time.time() + self.offset


@dataclass
class SimConfig:
    dialect: str = "cup"
    framing: str = "binary2"
    host: str = "127.0.0.1"
    port: int = 0
    control_port: int | None = None  # None: no control channel; 0: any free port
    mac_algorithm: str | None = None  # "x919", "cbc" or "cup-ecb"; None = no MAC checking
    mac_key: bytes | None = field(default=None, repr=False)
    mac_padding: int = 1
    require_mac: bool = False  # answer A0 to requests that carry no MAC
    working_keys_62: str = ""  # hex of field 62 in a CUP sign-on response
    issuer: bool = True  # the card issuer (issuer.py) checks sales/pre-auths of the cards in its card file
    issuer_card_file: str | None = None  # None: firmware_sim/host/cardfile.json
    issuer_strict_unknown: bool = False  # decline (RC 14) sales/pre-auths on PANs not in the card file
    # -- PIN and local time (firmware_sim.host.pin) --
    pin_key: bytes | None = field(default=None, repr=False)  # clear test PIN key until sign-on issues one
    card_pins: dict[str, str] = field(default_factory=dict, repr=False)  # PAN -> PIN (the cards' PINs)
    pin_tries: int = 3  # wrong PINs in a row before RC 75
    #: refuse a PIN CVM (CUP 22.3 = 1, or 9F34 method online PIN: 02/42, EMV Book 4 A4) that carries no field 52
    #: — on by default (issue 12 §5: a fault-free default, as a real acquirer); False only in raw tests of others
    require_pin_block: bool = True
    terminal_timezone: str = ""  # "" = Asia/Shanghai for CUP, UTC for ISO: the answers' 12/13/15
    #: seconds; refuse 13 + 12 further than this from the host's local now (its scheduler's clock: the wall clock
    #: in the real server, the terminal's VirtualClock in tests) — one day by default (emv-keys.md §F); None: off
    date_window: float | None = DAY
    #: "strict" (the default, what a real acquirer does): every non-network request needs a sign-on whose keys
    #: are younger than ``key_life`` (else RC 77, unprocessed) and, where :data:`.mac.MACED_MTIS` says, a MAC
    #: under the issued MAC key with the dialect's algorithm (missing/bad: RC A0, nothing booked); responses
    #: are MACed with the same key. "open": none of that — for tests of other concerns that talk raw messages.
    security: str = "strict"
    terminal_keys: dict[str, str] = field(default_factory=dict, repr=False)  # terminal id -> TMK hex
    default_tmk: str | None = field(default=TEST_TMK, repr=False)  # TMK of a terminal not in terminal_keys
    key_life: float = 24 * 3600.0  # seconds a sign-on's keys stay good on the host

    def __post_init__(self) -> None:
        if self.security not in ("strict", "open"):
            raise ValueError(f"SimConfig.security must be 'strict' or 'open', not {self.security!r}")


def masked_doc(doc: Doc) -> dict[str, str]:
    """A copy of a decoded message that is safe to log: PAN masked, track/PIN/ICC data summarised."""
    out = dict(doc)
    if "2" in out:
        out["2"] = mask_pan(out["2"]) or ""
    for f in SENSITIVE_FIELDS:
        if f in out:
            out[f] = f"<{len(out[f])} chars>"
    return out


class _Conn:
    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.lock = threading.Lock()
        self.closed = False
        self.stuck = False  # a hostile fault left it hanging: later requests are read and ignored

    def send(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()


class HostSimulator:
    """A simulated acquirer: ISO 8583 over TCP, its own ledger, approval rules and scripted faults."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        rules: RuleSet | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.spec = get_spec(self.config.dialect)
        self.scheduler: Scheduler = scheduler or RealScheduler()
        self.ledger = Ledger()
        self.faults = FaultPlan()
        self.keys = KeyStore(dict(self.config.terminal_keys), self.config.default_tmk, self.config.key_life,
                             self.scheduler.now)
        self.processor = Processor(
            self.config.dialect,
            ledger=self.ledger,
            rules=rules or RuleSet.from_dict(DEFAULT_RULES.to_dict()),
            now=self.scheduler.now,
            working_keys_62=self.config.working_keys_62,
            keys=self.keys,
        )
        if self.config.issuer:
            self.processor.issuer = Issuer(self.config.dialect, card_file=self.config.issuer_card_file,
                                           strict_unknown=self.config.issuer_strict_unknown)
        self._install_pin_checks()
        self.received: list[dict[str, str]] = []  # masked requests, in arrival order
        self.sent: list[dict[str, str]] = []  # masked responses actually sent (before faults that mangle bytes)
        self.errors: list[str] = []
        self._last_encoded: Doc = {}
        #: why the security gate refused a request: (mti, stan, tid, rc, reason), in order
        self.refusals: list[tuple[str, str, str, str, str]] = []
        self.port = 0
        self.control_port: int | None = None
        self._listener: socket.socket | None = None
        self._control: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._threads: list[threading.Thread] = []
        self._wake_accept = socket.socketpair()  # (read end, write end) per select loop
        self._wake_control = socket.socketpair()
        self._stopping = threading.Event()
        self._accepting = threading.Event()
        self._cond = threading.Condition()
        self.frames_in = 0
        self.frames_handled = 0
        self.connections_accepted = 0

    def _install_pin_checks(self) -> None:
        """PIN verification and the local-date check (firmware_sim.host.pin) from the configuration. The PIN
        key is the one the host issued at sign-on (``processor.working_keys(tid).pin_key``) when there is one."""
        cfg, proc = self.config, self.processor

        def pin_key(tid: str) -> bytes | None:  # the key the last sign-on of this terminal issued, else the config's
            issued = proc.working_keys(tid)
            return issued.pin_key if issued is not None else cfg.pin_key

        table = card_pin_table(cfg.card_pins)
        issuer = proc.issuer

        def pin_of(pan: str) -> str | None:  # a PIN configured for the card (a re-PINned card), else the card file's
            configured = table(pan)
            return configured if configured is not None else issuer.pin_of(pan) if issuer is not None else None

        proc.pin = PinChecker(cfg.dialect, pin_key, pin_of, tries_allowed=cfg.pin_tries,
                              require_pin_block=cfg.require_pin_block)
        proc.terminal_timezone = cfg.terminal_timezone
        proc.date_window = cfg.date_window

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> HostSimulator:
        self._open_listener(self.config.port)
        if self.config.control_port is not None:
            self._control = socket.create_server((self.config.host, self.config.control_port))
            self.control_port = self._control.getsockname()[1]
            self._spawn(self._control_loop, "host-sim-control")
        self._spawn(self._accept_loop, "host-sim-accept")
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake(self._wake_accept)
        self._wake(self._wake_control)
        for c in list(self._conns):
            c.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        for s in (self._listener, self._control):
            if s is not None:
                s.close()
        for pair in (self._wake_accept, self._wake_control):
            for s in pair:
                s.close()

    def __enter__(self) -> HostSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    @property
    def address(self) -> tuple[str, int]:
        return (self.config.host, self.port)

    # -- test controls -----------------------------------------------------------------------------
    @property
    def rules(self) -> RuleSet:
        return self.processor.rules

    def set_rules(self, rules: RuleSet | dict[str, Any]) -> None:
        self.processor.rules = rules if isinstance(rules, RuleSet) else RuleSet.from_dict(rules)

    def add_fault(self, kind: str, **kw: Any) -> Fault:
        """Script a fault: ``sim.add_fault("delay", mti="0200", delay=40)``. See :mod:`.faults`."""
        return self.faults.add(Fault(kind=kind, **kw))

    def clear_faults(self) -> None:
        self.faults.clear()

    def demand_sign_on(self, mode: str = "rc") -> None:
        """Until the terminal signs on: ``"rc"`` answer everything else RC 77 (unprocessed); ``"header"`` (CUP)
        set the response header's processing requirement to 3."""
        if mode not in ("rc", "header"):
            raise ValueError(f"sign-on demand mode must be 'rc' or 'header', not {mode!r}")
        self.processor.sign_on_demand = mode

    def refuse_connections(self) -> None:
        """Close the listening socket: new connects get ECONNREFUSED until :meth:`accept_connections`."""
        self._accepting.clear()
        self._wake(self._wake_accept)
        deadline = time.monotonic() + 2.0
        while self._listener is not None and time.monotonic() < deadline:
            time.sleep(0.001)

    def accept_connections(self) -> None:
        if self._listener is None:
            self._open_listener(self.port)
            self._spawn(self._accept_loop, "host-sim-accept")

    def drop_connections(self) -> None:
        """Close every open client connection (the listener stays up)."""
        for c in list(self._conns):
            c.close()

    def wait_handled(self, count: int, timeout: float = 2.0) -> bool:
        """Block (really) until ``count`` frames have been fully handled; for out-of-band test sync."""
        with self._cond:
            return self._cond.wait_for(lambda: self.frames_handled >= count, timeout)

    def stats(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "frames_handled": self.frames_handled,
            "connections_accepted": self.connections_accepted,
            "open_connections": sum(1 for c in self._conns if not c.closed),
        }

    # -- sockets -----------------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    @staticmethod
    def _wake(pair: tuple[socket.socket, socket.socket]) -> None:
        try:
            pair[1].send(b"x")
        except OSError:
            pass

    def _open_listener(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accepting.set()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set() and self._accepting.is_set():
            wake = self._wake_accept[0]
            ready, _, _ = select.select([listener, wake], [], [])
            if wake in ready:
                wake.recv(64)
                continue
            try:
                sock, peer = listener.accept()
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, peer)
            self._conns.append(conn)
            self.connections_accepted += 1
            self._spawn(self._serve, "host-sim-conn", conn)
        listener.close()
        if self._listener is listener:
            self._listener = None

    def _serve(self, conn: _Conn) -> None:
        deframer = Deframer(self.config.framing)
        while not conn.closed:
            try:
                data = conn.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            try:
                payloads = deframer.feed(data)
            except ValueError as exc:
                self.errors.append(f"framing: {exc}")
                break
            for payload in payloads:
                with self._cond:
                    self.frames_in += 1
                try:
                    self._handle(conn, payload)
                except Exception as exc:  # keep serving; a test reads sim.errors
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    with self._cond:
                        self.frames_handled += 1
                        self._cond.notify_all()
        conn.close()

    # -- one request -------------------------------------------------------------------------------
    def _mac_field(self, doc: Doc) -> str:
        return "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"

    def _mac_scheme(self, doc: Doc) -> tuple[str, bytes] | None:
        """(algorithm, key) of the MAC for this terminal: a configured static key, else the key its sign-on was
        issued (:mod:`.keys`) with the dialect's algorithm; None when there is neither."""
        if self.config.mac_algorithm and self.config.mac_key:
            return self.config.mac_algorithm, self.config.mac_key
        keys = self.keys.current(doc.get("41", ""))
        if keys is None:
            return None
        return self.config.mac_algorithm or sim_mac.DIALECT_ALGORITHM[self.config.dialect], keys.mac_key

    def _mac_bytes(self, raw: bytes, field_len: int, scheme: tuple[str, bytes]) -> bytes:
        data = raw[HEADER_LEN[self.config.dialect] : len(raw) - field_len]
        return sim_mac.compute(scheme[0], scheme[1], data, self.config.mac_padding)

    def _mac_wire_len(self) -> int:
        return 8 if BINARY_IS_RAW[self.config.dialect] else 16

    def _verify_mac(self, raw: bytes, doc: Doc, scheme: tuple[str, bytes] | None) -> bool | None:
        if scheme is None:
            return None
        f = self._mac_field(doc)
        if f not in doc:
            return False if self.config.require_mac else None
        expected = self._mac_bytes(raw, self._mac_wire_len(), scheme)
        return doc[f].upper() == expected.hex().upper()

    def _gate(self, raw: bytes, req: Doc, scheme: tuple[str, bytes] | None) -> tuple[str, str] | None:
        """The strict default: (RC, why) for a request a real acquirer refuses unprocessed, else None."""
        if self.config.security != "strict" or self.processor.classify(req) in ("signon", "signoff", "echo",
                                                                                   "netmgmt"):
            return None
        tid = req.get("41", "")
        state = self.keys.state(tid)
        if state == "not_signed_on" and not self.config.mac_key:
            return "77", "not signed on: no working keys issued to this terminal"
        if state == "stale" and not self.config.mac_key:
            return "77", f"the working keys are older than the host's key life ({self.config.key_life:g} s)"
        if not sim_mac.required(req.get("t", "")):
            return None
        if self._mac_field(req) not in req:
            return "A0", f"no MAC in field {self._mac_field(req)}"
        if scheme is None or not self._verify_mac(raw, req, scheme):
            return "A0", "the MAC does not verify under the terminal's working MAC key"
        return None

    def _encode(self, doc: Doc, *, scheme: tuple[str, bytes] | None, corrupt_mac: bool = False) -> bytes:
        doc = self._last_encoded = dict(doc)
        if scheme is not None or corrupt_mac:
            f = self._mac_field(doc)
            doc[f] = "0" * 16
            raw, _ = iso8583.encode(dict(doc), self.spec)
            mac = self._mac_bytes(bytes(raw), self._mac_wire_len(), scheme) if scheme is not None else bytes(8)
            if corrupt_mac:
                mac = bytes([mac[0] ^ 0x01]) + mac[1:]
            doc[f] = mac.hex().upper()
        raw, _ = iso8583.encode(doc, self.spec)
        return bytes(raw)

    def _handle(self, conn: _Conn, payload: bytes) -> None:
        try:
            req, _ = iso8583.decode(payload, self.spec)
        except iso8583.DecodeError as exc:
            self.errors.append(f"decode: {exc.msg} field {exc.field} pos {exc.pos}")
            return
        self.received.append(masked_doc(req))
        if conn.stuck:
            return
        fault = self.faults.take(req.get("t", ""), req.get("3"), req.get("11"))
        if fault is not None and fault.kind == "drop":
            return
        scheme = self._mac_scheme(req)
        refused = self._gate(payload, req, scheme)
        if refused is not None:
            self.refusals.append((req.get("t", ""), req.get("11", ""), req.get("41", ""), *refused))
            outcome = self.processor.refuse(req, refused[0])
        else:
            outcome = self.processor.handle(req, mac_ok=self._verify_mac(payload, req, scheme),
                                           fault=fault)
        resp = outcome.response
        if resp is None:
            return
        resp = self._mutate(resp, fault)
        strict_maced = self.config.security == "strict" and sim_mac.required(req.get("t", ""))
        mac_response = self._mac_field(req) in req or self.config.require_mac or strict_maced
        if resp.get("t", "")[:2] == "08" or (refused is not None and not self.config.mac_key):
            # network management carries no MAC; a refusal (77, A0) is not MACed with issued keys the request did
            # not prove (a static-key host MACs its A0 with the static key, as before)
            mac_response = False
        # the response key is the one in force when the request arrived (a sign-on does not MAC itself)
        raw = self._encode(resp, scheme=scheme if mac_response else None,
                           corrupt_mac=fault is not None and fault.kind == "corrupt_mac")
        self.sent.append(masked_doc(self._last_encoded))  # as sent, with its MAC
        self._deliver(conn, frame(self.config.framing, raw), fault)

    @staticmethod
    def _mutate(resp: Doc, fault: Fault | None) -> Doc:
        if fault is None:
            return resp
        resp = dict(resp)
        if fault.kind == "other_stan" and "11" in resp:
            resp["11"] = f"{(int(resp['11']) % 999999) + 1:06d}"
        elif fault.kind == "wrong_rc" and fault.rc:
            resp["39"] = fault.rc
        elif fault.kind == "wrong_amount" and "4" in resp:
            resp["4"] = f"{int(resp['4']) + 1:012d}"
        return resp

    def _deliver(self, conn: _Conn, framed: bytes, fault: Fault | None) -> None:
        kind = fault.kind if fault is not None else None
        if kind == "no_response":
            return
        if kind == "disconnect":
            conn.close()
        elif kind == "disconnect_mid":
            conn.send(framed[: max(1, len(framed) // 2)])
            conn.close()
        elif kind == "duplicate":
            conn.send(framed + framed)
        elif kind == "delay":
            assert fault is not None
            self.scheduler.call_later(fault.delay, lambda: conn.send(framed))
        elif kind == "garbage":
            conn.send(frame(self.config.framing, b"\x99\x99garbage"))
        elif kind == "half_then_silence":
            conn.stuck = True
            conn.send(framed[: max(1, len(framed) // 2)])
        elif kind == "drip":
            assert fault is not None
            conn.stuck = True
            self._drip(conn, framed[:-1], fault.delay or 1.0)
        elif kind == "oversized":
            conn.stuck = True
            huge = frame(self.config.framing, b"\x00" * _largest_frame(self.config.framing))
            conn.send(huge[: len(huge) - _largest_frame(self.config.framing) + 8])
        else:
            conn.send(framed)

    def _drip(self, conn: _Conn, data: bytes, every: float) -> None:
        if not data or conn.closed:
            return
        conn.send(data[:1])
        self.scheduler.call_later(every, lambda: self._drip(conn, data[1:], every))

    # -- control channel (JSON lines) --------------------------------------------------------------
    def _control_loop(self) -> None:
        assert self._control is not None
        srv = self._control
        while not self._stopping.is_set():
            wake = self._wake_control[0]
            ready, _, _ = select.select([srv, wake], [], [])
            if wake in ready:
                wake.recv(64)
                continue
            try:
                sock, _ = srv.accept()
            except OSError:
                break
            self._spawn(self._control_session, "host-sim-control-session", sock)

    def _control_session(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rwb") as fh:
            for line in fh:
                try:
                    reply = self.control(json.loads(line))
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                fh.write(json.dumps(reply).encode() + b"\n")
                fh.flush()
                if reply.get("stopping"):
                    break

    def control(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Execute one control command (the same dicts the JSON control port accepts)."""
        name = cmd.get("cmd")
        if name == "ping":
            return {"ok": True, "port": self.port, "dialect": self.config.dialect}
        if name == "ledger":
            return {"ok": True, "entries": self.ledger.to_list()}
        if name == "report":  # the acquirer's settlement report (docs/settlement-report.md)
            from .report import to_csv, to_json

            tid = cmd.get("tid")
            as_json = cmd.get("format", "csv") == "json"
            text = (to_json if as_json else to_csv)(self.ledger, self.config.dialect, tid)
            return {"ok": True, "format": "json" if as_json else "csv", "text": text}
        if name == "reset_ledger":
            self.ledger.reset()
            return {"ok": True}
        if name == "fault":
            self.faults.add(Fault.from_dict(cmd["fault"]))
            return {"ok": True}
        if name == "demand_signon":
            self.demand_sign_on(cmd.get("mode", "rc"))
            return {"ok": True}
        if name == "clear_faults":
            self.clear_faults()
            return {"ok": True}
        if name == "faults":
            return {"ok": True, "pending": [f.to_dict() for f in self.faults.pending()],
                    "applied": self.faults.applied}
        if name == "rules":
            self.set_rules(cmd["rules"])
            return {"ok": True}
        if name == "get_rules":
            return {"ok": True, "rules": self.rules.to_dict()}
        if name == "refuse":
            self.refuse_connections()
            return {"ok": True}
        if name == "accept":
            self.accept_connections()
            return {"ok": True, "port": self.port}
        if name == "drop_connections":
            self.drop_connections()
            return {"ok": True}
        if name == "keys":  # who is signed on, with which key check values (never a key)
            tid = cmd.get("tid", "")
            keys = self.keys.current(tid)
            return {"ok": True, "state": self.keys.state(tid), "serial": keys.serial if keys else None,
                    "mac_kcv": kcv4(keys.mac_key).hex().upper() if keys else None,
                    "refusals": [list(r) for r in self.refusals]}
        if name == "stats":
            return {"ok": True, **self.stats()}
        if name == "received":
            return {"ok": True, "received": self.received, "sent": self.sent, "errors": self.errors}
        if name == "issuer":
            issuer = self.processor.issuer
            return {"ok": True, "enabled": issuer is not None, "log": list(issuer.log) if issuer else []}
        if name == "stop":
            threading.Thread(target=self.stop, daemon=True).start()
            return {"ok": True, "stopping": True}
        return {"ok": False, "error": f"unknown command {name!r}"}


def _largest_frame(framing: str) -> int:
    """The largest payload the framing's length header can announce."""
    return {"binary2": 0xFFFF, "ascii4": 9999, "bcd2": 9999}.get(framing, 0xFFFF)
