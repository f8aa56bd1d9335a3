"""The terminal master key and the working keys a sign-on brings, with their check values.

The terminal master key (TMK) is injected once per terminal and lives in a file of its own (mode 0600):
32 hex digits (a double-length TDES key) and a newline; ``posguard keygen`` writes one. Working keys arrive in
the sign-on answer encrypted under the TMK, each followed by its check value (KCV: the first 4 bytes of
TDES-encrypting 8 zero bytes under the clear key). CUP field 62 (``../shared/reference/emv-keys.md`` §D):

* 24 bytes: PIN key (8) ‖ KCV (4) ‖ MAC key (8) ‖ KCV (4) — single-length keys (60.3 = 001);
* 40 bytes: PIN key (16) ‖ KCV ‖ MAC key slot (16) ‖ KCV — double-length keys (60.3 = 003); CUP's MAC key is
  single-length even then: its 8 encrypted bytes, 8 zero bytes, and the single-DES check value (openpos
  ``util.c`` UTIL_Double_StoreNewKey, cash2one ``unionpaypos.cpp`` CheckKey; ``docs/keys-and-mac.md``). A slot
  whose second half is not zero holds a double-length MAC key (the ISO dialects' field 48);
* 60 bytes: as 40, then a track key (16) ‖ KCV (60.3 = 004).

Nothing here prints a key: reprs show the length and the check value only. The PIN key stays encrypted under
the TMK (the PIN pad decrypts it inside itself); the MAC key is decrypted for the host link's MAC.
"""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from posguard.engine.mac import MacKey, des_ecb, key_check_value

__all__ = ["KeyError_", "KeyFileError", "KeyCheckMismatch", "TerminalMasterKey", "WorkingKeys", "load_tmk",
           "load_static_mac_key", "read_key_file", "parse_cup_keys", "kcv4"]


class KeyError_(ValueError):  # noqa: N801 - "KeyError" is the builtin's name
    """Base of the key problems; never carries key bytes."""


class KeyFileError(KeyError_):
    """The TMK file cannot be used (missing, readable by others, not 32 hex digits)."""


class KeyCheckMismatch(KeyError_):
    """A working key does not match its check value after decryption under the TMK: ``which`` names it."""

    def __init__(self, which: str) -> None:
        super().__init__(f"the {which} key from the sign-on does not match its check value under this terminal's "
                         "master key: the TMK differs from the acquirer's, or the answer was altered; no "
                         "transaction until a good sign-on")
        self.which = which


def kcv4(key: bytes) -> bytes:
    """The 4-byte check value CUP uses."""
    return key_check_value(key, 4)


@dataclass(frozen=True)
class TerminalMasterKey:
    _value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self._value) not in (16, 24):
            raise KeyFileError(f"a terminal master key is a double- or triple-length TDES key, not "
                               f"{len(self._value)} bytes")

    def decrypt(self, data: bytes) -> bytes:
        return des_ecb(self._value, data, decrypt=True)

    @property
    def kcv(self) -> str:
        return kcv4(self._value)[:3].hex().upper()

    def __repr__(self) -> str:
        return f"TerminalMasterKey(len={len(self._value)}, kcv={self.kcv})"


def load_tmk(path: str | os.PathLike[str]) -> TerminalMasterKey:
    """The TMK from ``path``; :class:`KeyFileError` says what is wrong with the file."""
    return TerminalMasterKey(read_key_file(path, "terminal master key", "tmk"))


def load_static_mac_key(path: str | os.PathLike[str]) -> MacKey:
    """A static MAC key (``host.mac_key_file``, for an acquirer that MACs with a fixed key instead of the
    sign-on's): the same file format as the TMK."""
    return MacKey(read_key_file(path, "static MAC key", "tmk"))


def read_key_file(path: str | os.PathLike[str], what: str, kind: str = "tmk") -> bytes:
    """A TDES key file (mode 0600, 32 or 48 hex digits); :class:`KeyFileError` names ``what`` is wrong with it
    (``kind``: the ``posguard keygen --only`` that writes one)."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(f"no {what} at {p}: inject it with `posguard keygen {p.parent} --only {kind}` "
                           "or the acquirer's key ceremony") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{p} is readable by others (mode {oct(st.st_mode & 0o777)}): chmod 600 {p}")
    if len(text) not in (32, 48) or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise KeyFileError(f"{p} must hold 32 hex digits (a double-length TDES key), got {len(text)} characters")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class WorkingKeys:
    """What a sign-on brought. ``pin_under_tmk`` goes to the PIN pad as it is; ``mac`` is clear (a MacKey)."""

    pin_under_tmk: bytes = field(repr=False)
    pin_kcv: bytes
    mac: MacKey
    track_under_tmk: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"WorkingKeys(pin kcv={self.pin_kcv.hex().upper()}, mac={self.mac!r}, "
                f"track={'yes' if self.track_under_tmk else 'no'})")


def _check(tmk: TerminalMasterKey, under_tmk: bytes, check: bytes, which: str) -> bytes:
    clear = tmk.decrypt(under_tmk)
    if not hmac.compare_digest(kcv4(clear), check):
        raise KeyCheckMismatch(which)
    return clear


def parse_cup_keys(field62: bytes, tmk: TerminalMasterKey) -> WorkingKeys:
    """Working keys of a CUP sign-on answer, each verified against its check value under ``tmk``."""
    n = len(field62)
    if n not in (24, 40, 60):
        raise KeyError_(f"field 62 of the sign-on answer is {n} bytes; working keys are 24, 40 or 60 bytes")
    size = 8 if n == 24 else 16
    parts = [field62[i:i + size + 4] for i in range(0, n, size + 4)]
    keys = [(p[:size], p[size:]) for p in parts]
    if size == 16 and parts[1][8:16] == bytes(8):  # CUP 003/004: a single-length MAC key in a 16-byte slot
        keys[1] = (parts[1][:8], parts[1][16:])
    _check(tmk, *keys[0], "PIN")
    mac = _check(tmk, *keys[1], "MAC")
    track = None
    if len(keys) == 3:
        _check(tmk, *keys[2], "track")
        track = keys[2][0]
    return WorkingKeys(keys[0][0], keys[0][1], MacKey(mac), track)
