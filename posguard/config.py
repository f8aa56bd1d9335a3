"""The service's TOML configuration (``/etc/posguard/posguard.toml`` by default).

:func:`load_config` reads the whole file and returns *every* problem it finds, so a technician fixes them in one
go; the service refuses to start while any remains. Keys live in their own files (mode 0600), never in the TOML.

.. code-block:: toml

    [terminal]
    tid = "POSGRD01"
    mid = "MERCHANT0000001"
    currency = "156"                      # ISO 4217 numeric
    timezone = "Asia/Shanghai"            # IANA: fields 12/13, tags 9A/9F21, notices ("" = the box's zone)
    dialect = "cup"                       # cup | iso87ascii | iso87 | iso87bcd
    token_key_file = "/etc/posguard/token.key"
    data_key_file = "/etc/posguard/data.key"
    tmk_file = "/etc/posguard/tmk.key"    # the terminal master key ("" = none: no sign-on keys, no PIN, no MAC)
    key_max_age = 86400.0                 # with a TMK: sign on again for fresh working keys after this many seconds

    [reader]
    kind = "pcsc"                         # pcsc | twin | none
    name = "Virtual PCD"                  # pcsc: reader name or prefix ("" = first reader)
    serial_port = "/dev/ttyUSB0"          # twin
    magstripe_port = ""                   # a serial swipe reader for "swipe AMOUNT" ("" = none)
    card_wait = 30.0                      # seconds a sale waits for the card (operator "cancel" ends it early)

    [pinpad]
    port = ""                             # the encrypting PIN pad's serial port ("" = none: 9F33 has no PIN)

    [host]
    address = "10.1.2.3"
    port = 5000
    framing = "binary2"                   # binary2 | ascii4 | bcd2
    timeout = 30.0
    mac_key_file = ""                     # a static MAC key (0600, 32 hex) for an acquirer that uses one; "" = the
                                          # MAC key of each sign-on (needs terminal.tmk_file)
    mac_algorithm = ""                    # x919 | cbc | cup-ecb; "" = the dialect's (CUP cup-ecb, ISO x919)

    max_amount = 10000000                 # the largest sale, refund or correction in minor units (100000.00)

    [journal]
    path = "/var/lib/posguard/journal.db"
    data_dir = ""                         # e-signatures (signatures/) and the notice outbox (outbox/);
                                          # "" = the journal's directory

    [unsigned]                            # guide 004: a sale the customer left without signing
    customer_gone = "follow_up"           # follow_up (contact them to sign afterwards) | keep (merchant's risk)
    follow_up_hours = 24.0                # then the sale is kept at the merchant's risk (one clearing day)

    [operator]
    socket = "/run/posguard/operator.sock"   # or "stdin"
    allow_uids = []                       # who may talk to the socket, besides root and the service's own user
    allow_groups = ["posguard-operators"] # ... and members of these groups

    [capture]
    record = ""                           # a capture file to append the day to ("" = none)

    [supervisor]                          # void, refund and corrections that give money back need it
    id = "S01"
    credential = "scrypt$32768$8$1$..."   # `posguard supervisor-hash` makes it; never the secret itself
"""

from __future__ import annotations

import grp
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_CONFIG", "Config", "ConfigProblem", "load_config", "data_dir"]

DEFAULT_CONFIG = "/etc/posguard/posguard.toml"
DIALECTS = ("cup", "iso87ascii", "iso87", "iso87bcd")
FRAMINGS = ("binary2", "ascii4", "bcd2")


@dataclass(frozen=True)
class ConfigProblem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass
class Config:
    tid: str = ""
    mid: str = ""
    currency: str = "156"
    timezone: str = ""
    dialect: str = "cup"
    token_key_file: str = ""
    data_key_file: str = ""
    tmk_file: str = ""
    key_max_age: float = 86400.0
    reader_kind: str = "pcsc"
    reader_name: str = ""
    serial_port: str = ""
    magstripe_port: str = ""
    pinpad_port: str = ""
    card_wait: float = 30.0
    host: str = ""
    port: int = 0
    framing: str = "binary2"
    timeout: float = 30.0
    mac_key_file: str = ""
    mac_algorithm: str = ""
    journal: str = "/var/lib/posguard/journal.db"
    data_dir: str = ""
    unsigned_customer_gone: str = "follow_up"
    follow_up_hours: float = 24.0
    operator_socket: str = "/run/posguard/operator.sock"
    allow_uids: list[int] = field(default_factory=list)
    allow_groups: list[str] = field(default_factory=list)
    max_amount: int = 10_000_000
    record: str = ""
    supervisor_id: str = ""
    supervisor_credential: str = field(default="", repr=False)
    source: str = ""
    token_key: bytes = field(default=b"", repr=False)
    data_key: bytes = field(default=b"", repr=False)


_SCHEMA: dict[str, dict[str, tuple[str, type]]] = {
    "terminal": {"tid": ("tid", str), "mid": ("mid", str), "currency": ("currency", str), "dialect": ("dialect", str),
                 "token_key_file": ("token_key_file", str), "data_key_file": ("data_key_file", str),
                 "tmk_file": ("tmk_file", str), "key_max_age": ("key_max_age", float),
                 "max_amount": ("max_amount", int), "timezone": ("timezone", str)},
    "reader": {"kind": ("reader_kind", str), "name": ("reader_name", str), "serial_port": ("serial_port", str),
               "magstripe_port": ("magstripe_port", str), "card_wait": ("card_wait", float)},
    "pinpad": {"port": ("pinpad_port", str)},
    "host": {"address": ("host", str), "port": ("port", int), "framing": ("framing", str),
             "timeout": ("timeout", float), "mac_key_file": ("mac_key_file", str),
             "mac_algorithm": ("mac_algorithm", str)},
    "journal": {"path": ("journal", str), "data_dir": ("data_dir", str)},
    "unsigned": {"customer_gone": ("unsigned_customer_gone", str), "follow_up_hours": ("follow_up_hours", float)},
    "operator": {"socket": ("operator_socket", str), "allow_uids": ("allow_uids", list),
                 "allow_groups": ("allow_groups", list)},
    "capture": {"record": ("record", str)},
    "supervisor": {"id": ("supervisor_id", str), "credential": ("supervisor_credential", str)},
}


def data_dir(cfg: Config) -> Path:
    """Where the service keeps e-signatures and the notice outbox: ``journal.data_dir``, else the journal's
    directory."""
    return Path(cfg.data_dir) if cfg.data_dir else Path(cfg.journal).parent


def _check_mac(cfg: Config, problems: list[ConfigProblem], *, read_keys: bool) -> None:
    """``host.mac_algorithm`` and ``host.mac_key_file`` (issue 12: a static MAC key where the acquirer uses one)."""
    from posguard.engine.mac import ALGORITHMS

    if cfg.mac_algorithm and cfg.mac_algorithm not in ALGORITHMS:
        problems.append(ConfigProblem("host.mac_algorithm", f"{cfg.mac_algorithm!r} is not one of "
                                                            f"{', '.join(ALGORITHMS)} (or \"\" for the dialect's)"))
    _check_key_file(cfg.mac_key_file, "host.mac_key_file", "static MAC key", problems, read_keys=read_keys)


def _check_key_file(path: str, key: str, what: str, problems: list[ConfigProblem], *, read_keys: bool) -> None:
    """A TDES key file (the TMK, a static MAC key): its directory, and with ``read_keys`` the file itself
    (0600, 32 hex digits: :func:`posguard.engine.keys.read_key_file`)."""
    if not path:
        return
    _check_place(Path(path).parent, key, "holds a key", problems, write=False)
    if read_keys:
        from posguard.engine.keys import KeyFileError, read_key_file

        try:
            read_key_file(path, what)
        except KeyFileError as exc:
            problems.append(ConfigProblem(key, str(exc)))


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _read_key(path: str, key: str, problems: list[ConfigProblem]) -> bytes:
    if not path:
        problems.append(ConfigProblem(key, "missing: a file holding the key (32 random bytes, or 64 hex digits)"))
        return b""
    p = Path(path)
    try:
        st = p.stat()
        raw = p.read_bytes()
    except OSError as exc:
        problems.append(ConfigProblem(key, f"cannot read {path}: {exc.strerror}"))
        return b""
    if st.st_mode & 0o077:
        problems.append(ConfigProblem(key, f"{path} is readable by others (mode {oct(st.st_mode & 0o777)}): "
                                           f"chmod 600 {path}"))
    text = raw.strip()
    try:
        value = bytes.fromhex(text.decode()) if len(text) == 64 else raw
    except (UnicodeDecodeError, ValueError):
        value = raw
    if len(value) < 16:
        problems.append(ConfigProblem(key, f"{path} holds {len(value)} bytes; at least 16 are needed"))
    return value


def _check_place(directory: Path, key: str, role: str, problems: list[ConfigProblem], *, write: bool) -> None:
    """A directory the service uses: it exists, nobody else may replace what is in it, and (``write``) this user
    can create files there."""
    try:
        st = directory.stat()
    except OSError as exc:
        problems.append(ConfigProblem(key, f"directory {directory} ({role}) cannot be used: {exc.strerror}"))
        return
    if not stat.S_ISDIR(st.st_mode):
        problems.append(ConfigProblem(key, f"{directory} ({role}) is not a directory"))
        return
    if st.st_mode & stat.S_IWOTH:
        problems.append(ConfigProblem(key, f"directory {directory} ({role}) is writable by every user (mode "
                                           f"{oct(st.st_mode & 0o7777)}): anyone could replace its files; "
                                           f"chmod o-w {directory}"))
    if write and not os.access(directory, os.W_OK | os.X_OK):
        problems.append(ConfigProblem(key, f"directory {directory} ({role}) is not writable by this user"))


def load_config(path: str | os.PathLike[str] = DEFAULT_CONFIG, *, read_keys: bool = True
                ) -> tuple[Config, list[ConfigProblem]]:
    """Parse ``path``; returns the config and every problem found (empty list = usable)."""
    cfg = Config(source=str(path))
    problems: list[ConfigProblem] = []
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        return cfg, [ConfigProblem("config", f"{path} not found: create it (every key is described in `python -m pydoc posguard.config`)")]
    except tomllib.TOMLDecodeError as exc:
        return cfg, [ConfigProblem("config", f"{path} is not valid TOML: {exc}")]
    except UnicodeDecodeError as exc:
        return cfg, [ConfigProblem("config", f"{path} is not UTF-8 text (byte {exc.start}: 0x{exc.object[exc.start]:02X}); "
                                             "save it as UTF-8")]
    except OSError as exc:
        return cfg, [ConfigProblem("config", f"cannot read {path}: {exc.strerror}")]
    for section, value in data.items():
        if section not in _SCHEMA:
            problems.append(ConfigProblem(section, f"unknown section; known: {', '.join(_SCHEMA)}"))
            continue
        if not isinstance(value, dict):
            problems.append(ConfigProblem(section, "must be a table ([section])"))
            continue
        for key, v in value.items():
            spec = _SCHEMA[section].get(key)
            if spec is None:
                problems.append(ConfigProblem(f"{section}.{key}", f"unknown key; known: "
                                                                  f"{', '.join(_SCHEMA[section])}"))
                continue
            attr, typ = spec
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, typ) or isinstance(v, bool):
                problems.append(ConfigProblem(f"{section}.{key}", f"must be {typ.__name__}, not {type(v).__name__}"))
                continue
            setattr(cfg, attr, v)
    if not cfg.tid or len(cfg.tid) != 8:
        problems.append(ConfigProblem("terminal.tid", "must be 8 characters (field 41)"))
    if not cfg.mid or len(cfg.mid) != 15:
        problems.append(ConfigProblem("terminal.mid", "must be 15 characters (field 42)"))
    if not (cfg.currency.isdigit() and len(cfg.currency) == 3):
        problems.append(ConfigProblem("terminal.currency", "must be the 3-digit ISO 4217 code, e.g. \"156\""))
    if cfg.key_max_age <= 0:
        problems.append(ConfigProblem("terminal.key_max_age", f"must be a positive number of seconds, got "
                                                              f"{cfg.key_max_age:g}"))
    if cfg.timezone and not _is_zone(cfg.timezone):
        problems.append(ConfigProblem("terminal.timezone", f"{cfg.timezone!r} is not an IANA time zone name, "
                                                           "e.g. \"Asia/Shanghai\" (\"\" = the box's local zone)"))
    if cfg.supervisor_credential:
        from posguard.service.supervisor import check_stored

        weak = check_stored(cfg.supervisor_credential)
        if weak is not None:
            problems.append(ConfigProblem("supervisor.credential", weak))
        if not cfg.supervisor_id:
            problems.append(ConfigProblem("supervisor.id", "required with supervisor.credential (who approved)"))
    if cfg.dialect not in DIALECTS:
        problems.append(ConfigProblem("terminal.dialect", f"{cfg.dialect!r}; choose one of {', '.join(DIALECTS)}"))
    if cfg.reader_kind not in ("pcsc", "twin", "none"):
        problems.append(ConfigProblem("reader.kind", "choose pcsc, twin or none"))
    if cfg.reader_kind == "twin" and not cfg.serial_port:
        problems.append(ConfigProblem("reader.serial_port", "required when reader.kind = \"twin\""))
    if not 0 < cfg.card_wait <= 600:
        problems.append(ConfigProblem("reader.card_wait", "seconds a sale waits for the card, between 0 and 600"))
    if not cfg.host:
        problems.append(ConfigProblem("host.address", "missing: the acquirer's host name or IP address"))
    if not 0 < cfg.port < 65536:
        problems.append(ConfigProblem("host.port", "missing or out of range (1-65535)"))
    if cfg.framing not in FRAMINGS:
        problems.append(ConfigProblem("host.framing", f"choose one of {', '.join(FRAMINGS)}"))
    if not 0 < cfg.timeout <= 300:
        problems.append(ConfigProblem("host.timeout", "seconds, between 0 and 300"))
    if not 0 < cfg.max_amount < 10**12:
        problems.append(ConfigProblem("terminal.max_amount", "minor units, between 1 and 999999999999 (field 4)"))
    if any(not isinstance(u, int) or isinstance(u, bool) or u < 0 for u in cfg.allow_uids):
        problems.append(ConfigProblem("operator.allow_uids", "a list of numeric user ids"))
    for g in cfg.allow_groups:
        if not isinstance(g, str):
            problems.append(ConfigProblem("operator.allow_groups", "a list of group names"))
            break
        try:
            grp.getgrnam(g)
        except KeyError:
            problems.append(ConfigProblem("operator.allow_groups", f"no group {g!r} on this machine"))
    _check_place(Path(str(path)).parent, "config", "holds the configuration", problems, write=False)
    _check_place(Path(cfg.journal).parent, "journal.path", "holds the journal", problems, write=True)
    if cfg.operator_socket != "stdin":
        sock_dir = Path(cfg.operator_socket).parent
        if sock_dir.exists():
            _check_place(sock_dir, "operator.socket", "holds the operator socket", problems, write=True)
        else:  # the service creates it (0750): its parent must let it
            _check_place(sock_dir.parent, "operator.socket", f"must let the service create {sock_dir}", problems,
                         write=True)
    if cfg.unsigned_customer_gone not in ("follow_up", "keep"):
        problems.append(ConfigProblem("unsigned.customer_gone", "choose follow_up or keep"))
    if not 0 < cfg.follow_up_hours <= 24 * 90:
        problems.append(ConfigProblem("unsigned.follow_up_hours", "hours, between 0 and 2160 (90 days)"))
    if cfg.data_dir:
        place = Path(cfg.data_dir)
        _check_place(place if place.exists() else place.parent, "journal.data_dir",
                     "holds e-signatures and the notice outbox", problems, write=True)
    if cfg.record:
        _check_place(Path(cfg.record).parent, "capture.record", "holds the capture", problems, write=True)
    for key_file, key in ((cfg.token_key_file, "terminal.token_key_file"), (cfg.data_key_file, "terminal.data_key_file")):
        if key_file:
            _check_place(Path(key_file).parent, key, "holds a key", problems, write=False)
    _check_key_file(cfg.tmk_file, "terminal.tmk_file", "terminal master key", problems, read_keys=read_keys)
    _check_mac(cfg, problems, read_keys=read_keys)
    if read_keys:
        cfg.token_key = _read_key(cfg.token_key_file, "terminal.token_key_file", problems)
        cfg.data_key = _read_key(cfg.data_key_file, "terminal.data_key_file", problems)
    return cfg, problems
