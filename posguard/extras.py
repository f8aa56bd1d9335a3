"""Optional dependencies (``pip install 'posguard[EXTRA]'``): the one error that names the extra to install.

A leaf module (imports nothing of posguard's). :class:`MissingExtra` is a :class:`ModuleNotFoundError`, so code
that already falls back on ``ImportError`` keeps doing so; what it says is one line naming the extra.
"""

from __future__ import annotations

__all__ = ["EXTRAS", "MissingExtra", "install_hint"]

# extra -> (the distribution it brings, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "pcsc": ("pyscard", "PC/SC card readers"),
}


def install_hint(extra: str) -> str:
    return f"pip install 'posguard[{extra}]'"


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; ``hint`` is the command that installs it."""

    def __init__(self, extra: str, module: str) -> None:
        dist, purpose = EXTRAS[extra]
        self.extra = extra
        self.hint = install_hint(extra)
        super().__init__(f"{dist} is not installed ({purpose}): {self.hint}", name=module)
