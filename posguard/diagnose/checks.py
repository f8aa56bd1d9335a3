"""The checks of ``posguard diagnose`` (listed in :mod:`posguard.diagnose`) and :func:`run_checks`."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from posguard.diagnose.report import CheckResult

__all__ = ["CHECKS", "DiagnoseConfig", "run_checks"]


@dataclass
class DiagnoseConfig:
    reader: str | None = None  # PC/SC reader name or prefix; None: the first reader
    serial_port: str | None = None  # GemPC Twin serial device
    pinpad_port: str | None = None  # the encrypting PIN pad's serial device
    host: str | None = None
    port: int | None = None
    dialect: str = "cup"
    framing: str = "binary2"
    tid: str = "POSGRD01"
    mid: str = "MERCHANT0000001"
    journal: str | None = None
    #: terminal.timezone (IANA; "" = the box's zone): the zone of fields 12/13 in the host's echo answer
    timezone: str = ""
    #: reader.kind: pcsc, twin or none; auto (no configuration): check whatever is given
    reader_kind: str = "auto"
    #: the running service's operator socket: when it answers, the service holds the reader and is asked
    service_socket: str | None = None
    #: the service's configuration file, checked as ``posguard run`` reads it (None: no file, the check skips)
    config_path: str | None = None
    apdu_samples: int = 20
    apdu_timeout: float = 3.0
    soak_seconds: float = 1.0
    serial_timeout: float = 1.0  # the Twin's answer to one frame (tried 3 times)
    pinpad_timeout: float = 2.0  # the PIN pad's answer to one command
    host_timeout: float = 5.0
    latency_warn_ms: float = 50.0
    drift_warn_s: float = 60.0
    drift_fail_s: float = 300.0
    batch_age_warn_h: float = 24.0
    #: seconds one check may take, whatever hangs under it (pcscd on a blocked reader, a stuck tty, a dead NFS)
    check_deadline: float = 30.0
    # filled by the host check for the clock check
    _echo: dict[str, Any] = field(default_factory=dict, repr=False)


SELECT_PSE = bytes.fromhex("00A404000E315041592E5359532E444446303100")


def _hint(exc: BaseException) -> str:
    hint = getattr(exc, "hint", None)
    return str(hint) if hint else ""


def _what(exc: BaseException) -> str:
    """The error without its hint: the report prints the hint on its own "->" line, once.

    >>> from posguard.drivers.errors import ServiceUnavailable
    >>> _what(ServiceUnavailable("PC/SC service not running"))
    'PC/SC service not running'
    """
    hint = _hint(exc)
    return str(exc).removesuffix(f" — {hint}") if hint else str(exc)


# -- config -------------------------------------------------------------------------------------------
def check_config(cfg: DiagnoseConfig) -> CheckResult:
    """The configuration as ``posguard run`` reads it, key files included: the service starts only when it has no
    problem (diagnose itself runs on a half-configured box). Key files are read as this user, which may not be
    the service's."""
    import getpass

    from posguard.config import load_config

    path = cfg.config_path
    if not path:
        return CheckResult("config", "skip", "no configuration file (--config FILE, or /etc/posguard/posguard.toml)",
                           "give the service's file with --config to check it as `posguard run` reads it")
    user = getpass.getuser()
    _service, problems = load_config(path)
    data: dict[str, Any] = {"path": path, "user": user, "problems": [str(p) for p in problems]}
    if not problems:
        return CheckResult("config", "ok", f"{path}: usable by `posguard run` (key files read as {user})", data=data)
    shown = "; ".join(str(p) for p in problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return CheckResult("config", "fail", f"{path}: `posguard run` refuses to start on {len(problems)} problem(s) "
                                         f"(read as {user}): {shown}",
                       "fix every key named (each is described in `python -m pydoc posguard.config`); "
                       f"`posguard run --check-config --config {path}` says the same", data)


# -- pcsc ---------------------------------------------------------------------------------------------
def check_pcsc(cfg: DiagnoseConfig) -> CheckResult:
    try:
        from posguard.drivers import pcsc
    except ImportError:
        return CheckResult("pcsc", "fail", "pyscard not installed",
                           "install the pcsc extra: .venv/bin/pip install 'posguard[pcsc]'")
    from posguard.drivers.errors import NoReader, ReaderError, ServiceUnavailable

    try:
        readers = pcsc.list_readers()
    except ServiceUnavailable:
        return CheckResult("pcsc", "fail", "pcscd not running",
                           "start it: systemctl start pcscd (or pcscd --foreground --debug to see why it stops)")
    except ReaderError as exc:
        return CheckResult("pcsc", "fail", f"pcscd error: {_what(exc)}", _hint(exc) or "restart pcscd")
    names = [r.name for r in readers]
    if not names:
        return CheckResult("pcsc", "fail", "pcscd running, no reader",
                           "plug the reader in; check its driver in /etc/reader.conf.d (serial readers) or lsusb")
    if cfg.reader and not any(n == cfg.reader or n.startswith(cfg.reader) for n in names):
        # the driver waits for a named reader that is absent (hot-plug): here its absence is the finding
        return CheckResult("pcsc", "fail", f"reader {cfg.reader!r} not among {names}",
                           "plug that reader in, or fix reader.name in the configuration to one listed",
                           {"readers": names})
    try:
        reader = pcsc.PcscReader(cfg.reader, apdu_timeout=cfg.apdu_timeout)
    except NoReader:
        return CheckResult("pcsc", "fail", f"reader {cfg.reader!r} not among {names}",
                           "fix the reader name in the configuration", {"readers": names})
    try:
        if not reader.card_present():
            return CheckResult("pcsc", "warn", f"{len(names)} reader(s) ({reader.name}); no card",
                               "insert a card to measure the ATR and APDU latency", {"readers": names})
        atr = reader.power_on()
        proto = reader.protocol
        times = []
        for _ in range(cfg.apdu_samples):
            t0 = time.perf_counter()
            reader.transmit_raw(SELECT_PSE)
            times.append((time.perf_counter() - t0) * 1000)
        median = statistics.median(times)
        figure = (f"{len(names)} reader(s); {reader.name}: card present, ATR {atr.hex().upper()} ({proto}); "
                  f"APDU median {median:.2f} ms over {len(times)}")
        data = {"readers": names, "atr": atr.hex().upper(), "protocol": proto, "apdu_median_ms": round(median, 3)}
        if median > cfg.latency_warn_ms:
            return CheckResult("pcsc", "warn", figure, "APDUs are slow: check the USB cable/hub, the reader "
                               "driver; for vpcd set TCP_QUICKACK in the card", data)
        return CheckResult("pcsc", "ok", figure, "", data)
    except ReaderError as exc:
        return CheckResult("pcsc", "fail", f"{reader.name}: {type(exc).__name__}: {_what(exc)}",
                           _hint(exc) or "re-insert the card; if it persists try another card")
    finally:
        reader.close()


# -- serial ------------------------------------------------------------------------------------------
def check_serial(cfg: DiagnoseConfig) -> CheckResult:
    if not cfg.serial_port:
        return CheckResult("serial", "skip", "no serial reader configured", "set reader.serial_port to check one")
    from posguard.drivers.errors import ReaderError, ReaderTimeout
    from posguard.drivers.twin.reader import TwinReader

    if not Path(cfg.serial_port).exists():
        return CheckResult("serial", "fail", f"{cfg.serial_port} does not exist: the reader (or its USB-serial "
                           "adapter) is unplugged, or reader.serial_port is wrong",
                           "plug the reader in; check reader.serial_port against ls -l /dev/serial/by-id/")
    try:
        reader = TwinReader(cfg.serial_port, timeout=cfg.serial_timeout, retries=2)
    except ReaderTimeout as exc:
        return CheckResult("serial", "fail", f"{cfg.serial_port}: nothing answers as a GemPC Twin ({_what(exc)})",
                           "check that reader.serial_port is the GemPC Twin's port (not the PIN pad's), its cable "
                           "and power; the line is 115200 8N2")
    except (OSError, ReaderError) as exc:
        return CheckResult("serial", "fail", f"{cfg.serial_port}: {_what(exc)}",
                           _hint(exc) or "check the cable and the device path; is another program (pcscd) using "
                           "the port?")
    try:
        firmware = reader.firmware()
        deadline = time.monotonic() + cfg.soak_seconds
        polls = errors = 0
        while time.monotonic() < deadline:
            polls += 1
            try:
                reader.card_present()
            except ReaderError:
                errors += 1
        c = reader.counters.snapshot()
        bad = c["lrc_errors"] + c["broken_frames"] + c["garbage_bytes"] + c["naks_received"] + c["timeouts"]
        figure = (f"{cfg.serial_port}: firmware {firmware!r}; {polls} polls in {cfg.soak_seconds:.1f} s, "
                  f"{errors} failed; LRC errors {c['lrc_errors']}, retransmissions {c['retransmissions']}, "
                  f"garbage bytes {c['garbage_bytes']}, timeouts {c['timeouts']}")
        data = {"firmware": firmware, "polls": polls, "failed": errors, "counters": c}
        if errors * 10 > polls or polls == 0:
            return CheckResult("serial", "fail", figure, "the line is too noisy to use: replace the cable, move it "
                               "away from power lines, check the baud rate (115200 8N2)", data)
        if bad or c["retransmissions"]:
            return CheckResult("serial", "warn", figure, "the line has errors the protocol recovered from: check "
                               "the cable and its shielding", data)
        return CheckResult("serial", "ok", figure, "", data)
    except ReaderError as exc:
        return CheckResult("serial", "fail", f"{cfg.serial_port}: the reader does not answer: {_what(exc)}",
                           _hint(exc) or "power-cycle the reader; check it is a GemPC Twin at 115200 baud")
    finally:
        reader.close()


# -- PIN pad ------------------------------------------------------------------------------------------
def check_pinpad(cfg: DiagnoseConfig) -> CheckResult:
    if not cfg.pinpad_port:
        return CheckResult("pinpad", "skip", "no PIN pad configured", "set pinpad.port to check one (without it "
                           "the terminal must not offer online PIN)")
    from posguard.drivers.pinpad import PinPadError, open_pin_pad

    try:
        pad = open_pin_pad(cfg.pinpad_port, command_timeout=cfg.pinpad_timeout)
    except PinPadError as exc:
        return CheckResult("pinpad", "fail", str(exc), exc.hint)
    try:
        t0 = time.perf_counter()
        info = pad.info()
        ms = (time.perf_counter() - t0) * 1000
        keys = info.get("keys", "-")
        figure = (f"{cfg.pinpad_port}: {info.get('model', '?')} serial {info.get('serial', '?')}, working keys in "
                  f"slot(s) {keys}; answered in {ms:.0f} ms")
        data = {"info": info, "ms": round(ms, 1), "counters": pad.counters.__dict__}
        if keys in ("", "-"):
            return CheckResult("pinpad", "warn", figure, "no working PIN key loaded: sign on (the keys come with "
                               "the sign-on answer)", data)
        return CheckResult("pinpad", "ok", figure, "", data)
    except PinPadError as exc:
        return _pinpad_failed(cfg, pad, exc)
    finally:
        pad.close()


def _pinpad_failed(cfg: DiagnoseConfig, pad: Any, exc: Exception) -> CheckResult:
    """The pad opened but gave no good answer: garbled frames (the line), or nothing (the wrong device/port)."""
    from posguard.drivers.pinpad import PinPadNotResponding

    if not isinstance(exc, PinPadNotResponding):  # it answered, with a refusal of its own: its hint says what
        return CheckResult("pinpad", "fail", f"{cfg.pinpad_port}: {_what(exc)}", _hint(exc))
    counters = dict(pad.counters.__dict__)
    errors = dict(counters.get("errors") or {})
    bad = int(errors.get("frame", 0)) + int(counters.get("naks_received", 0))
    if bad:
        return CheckResult("pinpad", "fail", f"{cfg.pinpad_port}: the PIN pad's answers arrive garbled ({bad} bad "
                           f"frame(s)/NAK(s)): {_what(exc)}", "replace or reseat the PIN pad's cable; keep it away "
                           "from power lines", {"counters": counters})
    return CheckResult("pinpad", "fail", f"{cfg.pinpad_port}: the PIN pad does not answer: {_what(exc)}",
                       "check that pinpad.port is the PIN pad's port (not the card reader's), its cable and power",
                       {"counters": counters})


# -- card --------------------------------------------------------------------------------------------
def check_card(cfg: DiagnoseConfig) -> CheckResult:
    from posguard.drivers.errors import ReaderError
    from posguard.emv.errors import CardSessionError
    from posguard.emv.session import read_card
    from posguard.emv.terminal import EmvTerminal, Transaction

    try:
        if cfg.serial_port and not cfg.reader:
            from posguard.drivers.twin.reader import TwinReader

            reader: Any = TwinReader(cfg.serial_port)
        else:
            from posguard.drivers.pcsc import PcscReader

            reader = PcscReader(cfg.reader, apdu_timeout=cfg.apdu_timeout)
    except (ImportError, OSError, ReaderError) as exc:
        return CheckResult("card", "fail", f"no reader: {_what(exc)}", _hint(exc) or "run the pcsc/serial checks first")
    try:
        if not reader.card_present():
            return CheckResult("card", "warn", "no card in the reader", "insert a chip card for a full EMV read")
        t0 = time.perf_counter()
        import secrets

        session = read_card(reader, EmvTerminal(pan_token_key=secrets.token_bytes(16)), Transaction(amount=1))
        ms = (time.perf_counter() - t0) * 1000
        figure = (f"{session.label or session.aid} {session.masked_pan}: {session.apdu_count} APDUs in "
                  f"{ms:.0f} ms, CVM {session.cvm_required}, {session.cryptogram_type}")
        data = {"aid": session.aid, "apdus": session.apdu_count, "ms": round(ms, 1), "cvm": session.cvm_required}
        if ms > 3000:
            return CheckResult("card", "warn", figure, "the read is slow: try another card; check the reader", data)
        return CheckResult("card", "ok", figure, "", data)
    except (ReaderError, CardSessionError) as exc:
        return CheckResult("card", "fail", f"EMV read failed: {type(exc).__name__}: {_what(exc)}",
                           _hint(exc) or "re-insert the card; try another card; if every card fails, the reader")
    finally:
        reader.close()


# -- host --------------------------------------------------------------------------------------------
def check_host(cfg: DiagnoseConfig) -> CheckResult:
    if not cfg.host or not cfg.port:
        if cfg.host:
            return CheckResult("host", "fail", f"host {cfg.host} has no port", "set host.port (or --host HOST:PORT)")
        return CheckResult("host", "skip", "no host configured", "set host.address and host.port")
    from posguard.engine.hostlink import HostLinkConfig, TcpHostLink
    from posguard.engine.ports import HostError
    from posguard.engine.signon import echo_message

    t0 = time.perf_counter()
    try:
        with socket.create_connection((cfg.host, cfg.port), timeout=cfg.host_timeout):
            connect_ms = (time.perf_counter() - t0) * 1000
    except OSError as exc:
        return CheckResult("host", "fail", f"{cfg.host}:{cfg.port}: cannot connect ({exc.strerror or exc})",
                           "check the network (ping the host, the default route, the APN/SIM for 4G) and that "
                           "the acquirer's address and port are right")
    link = TcpHostLink(HostLinkConfig(cfg.host, cfg.port, dialect=cfg.dialect, framing=cfg.framing,
                                      response_timeout=cfg.host_timeout, connect_timeout=cfg.host_timeout,
                                      connect_attempts=1, net_attempts=1))
    try:
        t1 = time.perf_counter()
        sent_at = time.time()
        echo = echo_message(cfg.dialect, stan=1, tid=cfg.tid, mid=cfg.mid)  # CUP 0820, ISO 0800
        response = link.exchange(echo)
        rtt = (time.perf_counter() - t1) * 1000
        cfg._echo = {"response": response, "sent_at": sent_at, "rtt_s": rtt / 1000}
        figure = f"{cfg.host}:{cfg.port}: connect {connect_ms:.1f} ms, {echo.mti} echo {rtt:.1f} ms, rc " \
                 f"{response.response_code}"
        data = {"connect_ms": round(connect_ms, 2), "echo_ms": round(rtt, 2), "rc": response.response_code}
        if response.response_code not in ("00", None):
            return CheckResult("host", "warn", figure, "the host answers but refuses the echo: sign on again, "
                               "check the terminal id", data)
        if rtt > 2000:
            return CheckResult("host", "warn", figure, "the host is slow: check the line quality", data)
        return CheckResult("host", "ok", figure, "", data)
    except HostError as exc:
        return _no_echo(cfg, exc)
    finally:
        link.close()


def _no_echo(cfg: DiagnoseConfig, exc: BaseException) -> CheckResult:
    """The host took the connection but gave no usable echo answer: what it did, and what to check for that.
    (The link's "the outcome is unknown: reverse" is for a sale; an echo moves no money, so it is left out.)"""
    from posguard.engine.hostlink import LinkDropped, UndecodableResponse
    from posguard.engine.ports import HostTimeout

    what = str(exc).removesuffix("; the outcome is unknown: reverse").removesuffix(", the outcome is unknown: reverse")
    settings = f"host.dialect ({cfg.dialect}) and host.framing ({cfg.framing})"
    if isinstance(exc, HostTimeout):
        said, advice = "does not answer the echo", (f"check {settings} against the acquirer's specification; ask "
                                                    f"the acquirer whether terminal {cfg.tid} is enabled")
    elif isinstance(exc, LinkDropped):
        said, advice = "closes the connection on the echo", (f"check host.framing ({cfg.framing}) and the TPDU; ask "
                                                             f"the acquirer whether terminal {cfg.tid} is enabled")
    elif isinstance(exc, UndecodableResponse):
        said, advice = "answers in another format", f"check {settings} against the acquirer's specification"
    else:
        said, advice = "gives no valid echo answer", (f"check {settings} and the TPDU; ask the acquirer whether "
                                                      f"terminal {cfg.tid} is enabled")
    return CheckResult("host", "fail", f"{cfg.host}:{cfg.port}: TCP connects but the host {said} ({what})", advice,
                       {"error": type(exc).__name__})


# -- journal -----------------------------------------------------------------------------------------
def check_journal(cfg: DiagnoseConfig) -> CheckResult:
    """The journal read as it stands: opened read-only (:meth:`Journal.open_read_only`), so diagnose never
    creates, migrates or locks it and a running service keeps writing while it is looked at."""
    if not cfg.journal:
        return CheckResult("journal", "skip", "no journal configured", "set journal.path")
    path = Path(cfg.journal)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return CheckResult("journal", "warn", f"{path} does not exist yet", "normal before the first transaction; "
                           "otherwise check journal.path")
    except OSError as exc:  # a directory on the way this user may not enter
        return CheckResult("journal", "fail", f"{path}: cannot look at it as uid {_euid()}: {exc.strerror}",
                           "run diagnose as root or as the service's user; the service's user must be able to reach, "
                           "read and write the journal and its directory")
    if not path.is_dir() and not _readable(path):
        return CheckResult("journal", "fail", f"{path}: not readable as uid {_euid()} (owner uid "
                           f"{path.stat().st_uid}, mode {path.stat().st_mode & 0o777:o})",
                           "run diagnose as root or as the service's user; the service's user must read and write "
                           "the journal")
    from posguard.engine.chart import IN_DOUBT
    from posguard.engine.journal import Journal, JournalError
    from posguard.engine.schema import LATEST_VERSION

    holder = _journal_holder(path)
    held = f"; in use by the running service (pid {holder})" if holder else ""
    if path.is_dir():
        return CheckResult("journal", "fail", f"{path} is a directory, not a journal file",
                           "set journal.path to the journal file (e.g. /var/lib/posguard/journal.db)")
    if size == 0:
        return CheckResult("journal", "warn", f"{path} is empty (0 bytes){held}", "normal if the service has "
                           "never started; otherwise check journal.path (a backup restored as an empty file?)")
    try:
        journal = Journal.open_read_only(path)
    except JournalError as exc:
        what = str(exc).partition("): ")[0] + ")" if "damaged (" in str(exc) else str(exc)  # its advice: below
        return CheckResult("journal", "fail", f"{what}{held}", _journal_open_advice(str(exc)))
    try:
        version = journal.schema_version()
        if version == 0:
            return CheckResult("journal", "fail", f"{path} is an SQLite file but not a posguard journal (no "
                               "schema_version table)", "check journal.path: it names another program's database")
        if version != LATEST_VERSION:
            newer = version > LATEST_VERSION
            return CheckResult("journal", "fail" if newer else "warn", f"{path}: schema version {version}, this "
                               f"posguard reads version {LATEST_VERSION}{held}",
                               "install the newer posguard that wrote it" if newer else "the service upgrades the "
                               "journal when it starts: start it, then diagnose again", {"schema_version": version})
        problems = [p for p in journal.integrity_check() if p != "ok"]
        pending = journal.saf_items(["queued", "sent"])
        expired = journal.saf_items(["expired"])
        in_doubt = journal.txns_in_states(IN_DOUBT)
        first = journal.batch_opened_at()
        age_h = (time.time() - first) / 3600 if first is not None else 0.0
        figure = (f"integrity {'ok' if not problems else '; '.join(problems[:3])}; {len(pending)} reversal(s)/"
                  f"advice(s) pending, {len(expired)} expired; {len(in_doubt)} transaction(s) of unknown outcome; "
                  f"open batch {journal.current_batch()} {age_h:.1f} h old{held}")
        data = {"integrity": problems, "pending": len(pending), "expired": len(expired), "in_doubt": len(in_doubt),
                "batch_age_h": round(age_h, 2), "service_pid": holder}
        if problems or expired:
            return CheckResult("journal", "fail", figure, "integrity errors: stop trading, copy the journal, restore "
                               "from backup" if problems else "expired reversals/advices: reconcile them with the "
                               "acquirer by hand (posguard incidents)", data)
        if pending or in_doubt or age_h > cfg.batch_age_warn_h:
            advice = ("pending items go out before the next sale; check the host line" if pending else
                      "transactions whose outcome the host has not told: the service reverses them when it starts; "
                      "keep the host line up (posguard incidents lists them)" if in_doubt else
                      "run settlement: the batch is older than a day")
            return CheckResult("journal", "warn", figure, advice, data)
        return CheckResult("journal", "ok", figure, "", data)
    finally:
        journal.close()


def _euid() -> int:
    import os

    return os.geteuid()


def _readable(path: Path) -> bool:
    import os

    return os.access(path, os.R_OK, effective_ids=os.access in os.supports_effective_ids)


def _journal_open_advice(problem: str) -> str:
    """What to do about a journal that cannot be read, by what SQLite said (the journal's own wording)."""
    if "damaged" in problem:
        return "stop trading, keep the file for the acquirer, restore the journal from its backup"
    if "locked" in problem:
        return "another program holds the journal for writing: wait and diagnose again; if it stays locked, stop " \
               "that program (fuser -v on the journal file names it)"
    return "check journal.path and the file's owner and mode: the service's user must read and write it"


def _journal_holder(path: Path) -> int | None:
    """The pid of the running service that holds the journal (``<journal>.lock``, see
    :mod:`posguard.engine.instance_lock`), read without taking the lock; None when nobody holds it."""
    import os

    try:
        text = path.with_name(path.name + ".lock").read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a stale pid left by a killed service: nobody holds it
    except PermissionError:
        pass  # alive, another user's
    return pid


# -- clock -------------------------------------------------------------------------------------------
def check_clock(cfg: DiagnoseConfig) -> CheckResult:
    echo = cfg._echo
    if not echo:
        if not cfg.host or not cfg.port:
            return CheckResult("clock", "skip", "no host configured: the clock is compared with the host's",
                               "set host.address and host.port")
        return CheckResult("clock", "skip", "no echo answer from the host: the clock is compared with the host's",
                           "fix what the host check says, then diagnose again")
    response = echo["response"]
    host_time = _host_time(response, echo["sent_at"], cfg.timezone)
    if host_time is None:
        return CheckResult("clock", "warn", "the host's echo answer carries no time (field 7, or 12/13)",
                           "check the clock against NTP instead: timedatectl status")
    local = echo["sent_at"] + echo["rtt_s"] / 2
    drift = local - host_time
    zone = cfg.timezone or "the box's zone"
    read_as = "7, GMT" if "7" in response else f"12/13, local time in {zone}"
    figure = f"local - host = {drift:+.1f} s (field {read_as})"
    data = {"drift_s": round(drift, 2)}
    hours = round(drift / 3600)
    if "7" not in response and hours and abs(drift - hours * 3600) <= cfg.drift_warn_s:
        return CheckResult("clock", "fail", figure, f"a whole {abs(hours)} h apart: most likely the time zone, not "
                           "the clock — set terminal.timezone to the zone the acquirer expects in fields 12/13 (CUP: "
                           "Asia/Shanghai); if it is right, set the clock (timedatectl set-ntp true)", data)
    if abs(drift) > cfg.drift_fail_s:
        return CheckResult("clock", "fail", figure, "set the clock (timedatectl set-ntp true); messages and "
                           "settlement dates are wrong", data)
    if abs(drift) > cfg.drift_warn_s:
        return CheckResult("clock", "warn", figure, "enable NTP: timedatectl set-ntp true", data)
    return CheckResult("clock", "ok", figure, "", data)


def _host_time(response: Any, near: float, timezone: str = "") -> float | None:
    """The host's time in its echo answer: field 7 (MMDDhhmmss, GMT), else 12 (hhmmss) and 13 (MMDD), local
    time in ``timezone`` (terminal.timezone, as the engine writes them: ``posguard.engine.localtime``; ISO
    8583:1987 fields 7/12/13). Neither carries the year: the one that puts it nearest ``near`` (31 Dec/1 Jan).

    >>> from datetime import datetime, UTC
    >>> near = datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC).timestamp()
    >>> _host_time({"7": "1231235950"}, near) - near
    -15.0
    >>> _host_time({"12": "080000", "13": "0101"}, near, "Asia/Shanghai") - near
    -5.0
    """
    from datetime import tzinfo

    from posguard.notices import terminal_zone

    tz: tzinfo = UTC
    try:
        if "7" in response:
            v = str(response["7"])
            month, day, hms = int(v[0:2]), int(v[2:4]), (int(v[4:6]), int(v[6:8]), int(v[8:10]))
        elif "12" in response and "13" in response:
            t, d = str(response["12"]), str(response["13"])
            month, day, hms = int(d[0:2]), int(d[2:4]), (int(t[0:2]), int(t[2:4]), int(t[4:6]))
            tz = terminal_zone(timezone) or datetime.now().astimezone().tzinfo or UTC
        else:
            return None
        year = datetime.fromtimestamp(near, UTC).year
        stamps = []
        for y in (year - 1, year, year + 1):
            try:
                stamps.append(datetime(y, month, day, *hms, tzinfo=tz).timestamp())
            except ValueError:  # 29 February of a year that has none
                continue
        return min(stamps, key=lambda s: abs(s - near)) if stamps else None
    except (ValueError, IndexError):
        return None


CHECKS: dict[str, Callable[[DiagnoseConfig], CheckResult]] = {
    "config": check_config,
    "pcsc": check_pcsc,
    "serial": check_serial,
    "pinpad": check_pinpad,
    "card": check_card,
    "host": check_host,
    "journal": check_journal,
    "clock": check_clock,
}


def run_checks(cfg: DiagnoseConfig, names: list[str] | None = None) -> list[CheckResult]:
    wanted = names or list(CHECKS)
    unknown = [n for n in wanted if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    if "clock" in wanted and "host" not in wanted:
        wanted = ["host", *wanted]  # the clock is read from the host's echo
    service = service_status(cfg) if any(n in wanted for n in _READER_CHECKS) else None
    results: list[CheckResult] = []
    for name in CHECKS:  # fixed order
        if name in wanted:
            try:
                gated = _reader_gate(cfg, name, service) if name in _READER_CHECKS else None
                gated = gated or (_card_gate(cfg, results) if name == "card" else None)
                results.append(gated or _bounded(cfg, name))
            except Exception as exc:  # noqa: BLE001 - a broken check is a failure, never a crash
                results.append(_crashed(name, exc))
    if names and "host" not in names and "clock" in names:
        results = [r for r in results if r.name != "host"]
    return results



def _crashed(name: str, exc: BaseException) -> CheckResult:
    return CheckResult(name, "fail", f"check crashed: {type(exc).__name__}: {exc}",
                       "report this to posguard support with the output of --json")


#: what hangs under a check that never returns, and what the technician does about it
_STUCK = {
    "config": ("reading the configuration or a key file is stuck (its disk or a network file system)",
               "check the disk (dmesg); keep the configuration and keys on a local disk"),
    "pcsc": ("pcscd or the reader is stuck (a card that stops answering holds the reader for every program)",
             "remove the card; if it stays stuck, unplug and replug the reader or restart pcscd"),
    "serial": ("the serial port is stuck", "unplug and replug the reader (or its USB-serial adapter)"),
    "pinpad": ("the PIN pad's serial port is stuck", "unplug and replug the PIN pad"),
    "card": ("pcscd or the reader is stuck (a card that stops answering holds the reader for every program)",
             "remove the card; if it stays stuck, unplug and replug the reader or restart pcscd"),
    "host": ("the host link is stuck", "check the network; diagnose again"),
    "journal": ("reading the journal is stuck (its disk or a network file system)",
                "check the disk (dmesg); keep the journal on a local disk"),
    "clock": ("the clock check is stuck", "report this to posguard support with the output of --json"),
}


def _bounded(cfg: DiagnoseConfig, name: str) -> CheckResult:
    """Run one check in a daemon thread for ``cfg.check_deadline`` seconds at most: diagnose always ends, and
    says which part hung (the thread is left behind, blocked in the driver; the process exits without it)."""
    import threading

    box: list[CheckResult] = []

    def run() -> None:
        try:
            box.append(CHECKS[name](cfg))
        except Exception as exc:  # noqa: BLE001 - a broken check is a failure, never a crash
            box.append(_crashed(name, exc))

    worker = threading.Thread(target=run, name=f"diagnose-{name}", daemon=True)
    worker.start()
    worker.join(cfg.check_deadline)
    if box:
        return box[0]
    what, advice = _STUCK[name]
    return CheckResult(name, "fail", f"no answer within {cfg.check_deadline:g} s: {what}", advice,
                       {"deadline_s": cfg.check_deadline})


# -- the reader as the configuration and the running service see it ------------------------------------------
_READER_CHECKS = ("pcsc", "serial", "card")
#: which reader check belongs to which reader.kind
_CHECK_KIND = {"pcsc": "pcsc", "serial": "twin"}


def service_status(cfg: DiagnoseConfig) -> dict[str, Any] | None:
    """The running service's ``status`` over its operator socket; None when no service answers."""
    if not cfg.service_socket or not Path(cfg.service_socket).exists():
        return None
    from posguard.service.operator import OperatorClient

    client = OperatorClient(cfg.service_socket, timeout=3.0)
    try:
        answer = client.ask("status")
    except (ConnectionError, OSError, ValueError):
        return None
    finally:
        client.close()
    return answer if answer.get("ok") else None


def _card_gate(cfg: DiagnoseConfig, before: list[CheckResult]) -> CheckResult | None:
    """The card check is not run on a reader its own check just failed: the read would fail the same way (a
    second wait on a silent serial line), or hang — a mute card leaves a PC/SC reader blocked for every client
    until it is removed (``reader-rig.md``, vpcd has no timeouts). None: run it."""
    reader_check = "serial" if cfg.serial_port and not cfg.reader else "pcsc"
    failed = next((r for r in before if r.name == reader_check and r.verdict == "fail"), None)
    if failed is None:
        return None
    return CheckResult("card", "skip", f"not read: the {reader_check} check failed (above)",
                       "fix what the " + reader_check + " check says, then diagnose again")


def _reader_gate(cfg: DiagnoseConfig, name: str, service: dict[str, Any] | None) -> CheckResult | None:
    """A result for a reader check that must not open the reader itself: a kind the configuration does not
    use, or a reader the running service holds (then its own view is the answer). None: run the check."""
    kind = cfg.reader_kind
    if kind == "none":
        return CheckResult(name, "skip", 'reader.kind = "none": no card reader configured', "")
    if kind != "auto" and _CHECK_KIND.get(name, kind) != kind:
        other = "the GemPC Twin on its serial port" if kind == "twin" else "PC/SC (pcscd)"
        return CheckResult(name, "skip", f'reader.kind = "{kind}": the reader is driven through {other}', "")
    if service is None:
        return None
    state = str(service.get("reader", "?"))
    where = f"the running service ({cfg.service_socket})"
    if name == "card":
        return CheckResult(name, "skip", f"{where} holds the reader; not opened here",
                           "read a card through the service: posguard op sale AMOUNT (or stop it and diagnose)",
                           {"service_reader": state})
    if state == "open":
        return CheckResult(name, "ok", f"{where} holds the reader: open", "", {"service_reader": state})
    return CheckResult(name, "fail", f"{where} reports the reader {state}",
                       "plug the reader in / check its cable and power; the service opens it when it appears",
                       {"service_reader": state})
