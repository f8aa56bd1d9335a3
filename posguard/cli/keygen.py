"""``posguard keygen``: the terminal's key files, made where the service reads them.

Writes, in DIR (``/etc/posguard`` on a POS box):

* ``token.key`` -- the PAN token key (``terminal.token_key_file``);
* ``data.key``  -- the journal's card-data key (``terminal.data_key_file``);
* ``tmk.key``   -- the terminal master key (TMK) under which the acquirer sends working keys.

Key file format: the token and data keys are 32 random bytes written as 64 hexadecimal digits and a newline
(the service also accepts a file of 32 raw bytes; at least 16 bytes are needed). The TMK is a double-length
TDES key (K1|K2, 16 bytes, odd parity on every byte) written as 32 hexadecimal digits and a newline; its key
check value (KCV: the first 3 bytes of TDES-encrypting 8 zero bytes under it) is printed so that it can be
compared with the acquirer's, and the key itself never is.

Each file is created with mode 0600 (``--owner`` gives it to the service's user when run as root), written to a
temporary file beside it, synced and then linked into place: a reader never sees half a key. An existing file is
kept unless ``--force``; a directory that every user may write to is refused.

Exit status: 0 all written; 2 refused (a file exists, an unsafe directory, an unknown owner); 1 a system error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

from posguard.cli.exits import epilog
from posguard.engine.mac import key_check_value

__all__ = ["KEY_KINDS", "add_keygen_command", "kcv", "make_tmk", "odd_parity", "write_key_file"]

# kind -> (file name, what it is)
KEY_KINDS: dict[str, tuple[str, str]] = {
    "token": ("token.key", "PAN token key, 32 bytes as 64 hex digits"),
    "data": ("data.key", "journal card-data key, 32 bytes as 64 hex digits"),
    "tmk": ("tmk.key", "terminal master key, double-length TDES as 32 hex digits"),
}


class KeygenRefused(Exception):
    """What keygen will not do, in one line."""


def odd_parity(key: bytes) -> bytes:
    """Each byte's lowest bit set so that the byte has an odd number of 1 bits (DES key parity)."""
    return bytes((b & 0xFE) | (0 if bin(b >> 1).count("1") % 2 else 1) for b in key)


def make_tmk() -> bytes:
    """A random double-length TDES key (K1 != K2), odd parity."""
    while True:
        key = odd_parity(secrets.token_bytes(16))
        if key[:8] != key[8:]:
            return key


def kcv(key: bytes) -> str:
    """Key check value: the first 3 bytes of TDES(key, 8 zero bytes), as 6 hex digits."""
    return key_check_value(key, 3).hex().upper()


def _check_directory(directory: Path) -> None:
    try:
        st = directory.stat()
    except OSError as exc:
        raise KeygenRefused(f"directory {directory} cannot be used: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise KeygenRefused(f"{directory} is not a directory")
    if st.st_mode & stat.S_IWOTH:
        raise KeygenRefused(f"directory {directory} is writable by every user (mode {oct(st.st_mode & 0o7777)}): "
                            f"anyone could replace a key; chmod o-w {directory}")


def write_key_file(path: Path, text: str, *, force: bool = False, owner: tuple[int, int] | None = None) -> None:
    """``text`` into ``path`` with mode 0600, atomically; refuse to replace a file unless ``force``."""
    _check_directory(path.parent)
    if path.exists() and not force:
        raise KeygenRefused(f"{path} exists: keep it, or pass --force to replace it (what it protected is lost)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            if owner is not None:
                os.fchown(fd, *owner)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: never replaced behind our back
            except FileExistsError as exc:
                raise KeygenRefused(f"{path} exists: keep it, or pass --force to replace it") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _owner(name: str | None) -> tuple[int, int] | None:
    if not name:
        return None
    try:
        pw = pwd.getpwnam(name)
    except KeyError as exc:
        raise KeygenRefused(f"--owner {name}: no such user (create it first: systemd-sysusers)") from exc
    return pw.pw_uid, pw.pw_gid


def add_keygen_command(sub: Any) -> None:
    p = sub.add_parser("keygen", help="make the terminal's key files (token, data, terminal master key)",
                       description=__doc__, epilog=epilog("keygen"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", metavar="DIR", help="where to write the key files (e.g. /etc/posguard)")
    p.add_argument("--only", action="append", choices=sorted(KEY_KINDS), metavar="KIND",
                   help="write only this key (token, data or tmk); may be repeated")
    p.add_argument("--owner", metavar="USER", help="give the files to USER (the service's user, e.g. posguard; "
                   "needs root)")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=_keygen)


def _keygen(ns: argparse.Namespace) -> int:
    directory = Path(ns.directory)
    kinds = [k for k in KEY_KINDS if not ns.only or k in ns.only]
    try:
        owner = _owner(ns.owner)
        _check_directory(directory)
        if not ns.force:  # refuse before writing anything, rather than leave half a set
            existing = [str(directory / KEY_KINDS[k][0]) for k in kinds if (directory / KEY_KINDS[k][0]).exists()]
            if existing:
                raise KeygenRefused(f"{', '.join(existing)} exist(s): keep them, or pass --force to replace them")
        for kind in kinds:
            name, what = KEY_KINDS[kind]
            path = directory / name
            if kind == "tmk":
                key = make_tmk()
                write_key_file(path, key.hex().upper() + "\n", force=ns.force, owner=owner)
                print(f"wrote {path} ({what}, mode 0600); KCV {kcv(key)}")
            else:
                write_key_file(path, secrets.token_bytes(32).hex() + "\n", force=ns.force, owner=owner)
                print(f"wrote {path} ({what}, mode 0600)")
    except KeygenRefused as exc:
        print(f"posguard keygen: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"posguard keygen: {exc.filename or directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
