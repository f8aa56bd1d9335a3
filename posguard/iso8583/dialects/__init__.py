"""The dialect registry: built-in dialects, and dialects users add without editing posguard.

``get_dialect(x)`` accepts

* a registered name (``iso87ascii``, ``iso87``, ``iso87bcd``, ``cup``, or one added with
  :func:`register_dialect` or through the ``posguard.dialects`` entry-point group);
* a path to a JSON or TOML file (``{"name": ..., "extends": "iso87", "fields": {...}}``);
* ``module:ATTRIBUTE`` naming a :class:`Dialect` object in an importable Python module.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from posguard.iso8583.dialects.cup import CUP
from posguard.iso8583.dialects.iso87 import ISO87, ISO87ASCII
from posguard.iso8583.dialects.iso87bcd import ISO87BCD
from posguard.iso8583.errors import SpecError
from posguard.iso8583.spec import Dialect, dialect_from_data

__all__ = ["get_dialect", "register_dialect", "dialect_names", "load_dialect_file"]

_REGISTRY: dict[str, Dialect] = {d.name: d for d in (ISO87ASCII, ISO87, ISO87BCD, CUP)}
_entry_points_loaded = False


def register_dialect(dialect: Dialect, *, replace: bool = False) -> Dialect:
    if dialect.name in _REGISTRY and not replace and _REGISTRY[dialect.name] is not dialect:
        raise SpecError(f"a dialect named {dialect.name!r} is already registered",
                        hint="pass replace=True or choose another name")
    _REGISTRY[dialect.name] = dialect
    return dialect


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="posguard.dialects"):
        obj = ep.load()
        if isinstance(obj, Dialect):
            _REGISTRY.setdefault(obj.name, obj)


def dialect_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def load_dialect_file(path: str | Path) -> Dialect:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read dialect file {p}: {e.strerror}") from None
    try:
        data: dict[str, Any]
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text.decode("utf-8"))
        else:
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise SpecError(f"dialect file {p} is not valid {p.suffix.lstrip('.').upper() or 'JSON'}: {e}") from None
    base = get_dialect(data["extends"]) if "extends" in data else None
    return dialect_from_data(data, base=base)


def get_dialect(name: str | Dialect) -> Dialect:
    if isinstance(name, Dialect):
        return name
    d = _REGISTRY.get(name)
    if d is not None:
        return d
    if name.endswith((".json", ".toml")) or "/" in name:
        d = load_dialect_file(name)
        return d
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise SpecError(f"cannot load dialect {name!r}: {e}") from None
        if not isinstance(obj, Dialect):
            raise SpecError(f"{name!r} is not a Dialect")
        return obj
    _load_entry_points()
    d = _REGISTRY.get(name)
    if d is None:
        raise SpecError(f"unknown dialect {name!r}", hint=f"known dialects: {', '.join(dialect_names())}")
    return d
