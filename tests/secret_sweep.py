"""The sweep over every file a test session wrote: no test key, PIN block or clear test PIN in any of them.

Tests register what must never reach a file (:func:`register_secret`: the TMKs and working keys they use, each
PIN block the PIN pad produced, the clear test PINs); at the end of the session ``tests/conftest.py`` walks the
session's base temporary directory (every ``tmp_path``: journals, captures, logs, configurations) and looks for
each value as raw bytes and as hex text (upper and lower case). A hit fails the session and names the file.

Files that are keys by design are skipped: a terminal master key file (``*.key``, 0600, see
``posguard/engine/keys.py``) holds a key in clear because that is where it lives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["register_secret", "secrets", "sweep", "KEY_FILE_SUFFIXES"]

_SECRETS: set[bytes] = set()
KEY_FILE_SUFFIXES = (".key",)
_CHUNK = 1 << 22


def register_secret(*values: bytes) -> None:
    """Values (keys, PIN blocks, clear PINs as ASCII digits) that no file written by a test may hold."""
    for value in values:
        if len(value) < 4:
            raise ValueError("a secret of fewer than 4 bytes would match by chance; register a longer value")
        _SECRETS.add(bytes(value))


def secrets() -> frozenset[bytes]:
    return frozenset(_SECRETS)


def _needles(values: Iterable[bytes]) -> dict[bytes, str]:
    """Each value as raw bytes and as hex text in both cases -> a label that never shows the value."""
    out: dict[bytes, str] = {}
    for n, value in enumerate(sorted(values)):
        label = f"secret #{n + 1} ({len(value)} bytes)"
        out[value] = label + " raw"
        if not value.isdigit():  # a clear PIN is its own text; keys and blocks are also looked for as hex
            out[value.hex().upper().encode()] = label + " as HEX"
            out[value.hex().encode()] = label + " as hex"
    return out


def sweep(root: Path, values: Iterable[bytes] | None = None) -> list[str]:
    """``path: label`` for every file under ``root`` holding one of ``values`` (default: the registered ones)."""
    needles = _needles(_SECRETS if values is None else values)
    if not needles or not root.exists():
        return []
    longest = max(len(n) for n in needles)
    hits: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.suffix in KEY_FILE_SUFFIXES or path.is_symlink() or not path.is_file():
                continue
            try:
                with path.open("rb") as fh:
                    tail = b""
                    found: set[str] = set()
                    while chunk := fh.read(_CHUNK):
                        data = tail + chunk
                        found.update(label for needle, label in needles.items() if needle in data)
                        tail = data[-(longest - 1):]
            except OSError:
                continue
            hits.extend(f"{path}: {label}" for label in sorted(found))
    return hits
