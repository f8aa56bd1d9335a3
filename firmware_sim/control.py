"""The line control channel every simulator program reads on stdin.

One command per line: ``VERB [word ...] [key=value ...]``. One answer per command on stdout:
``ok {json}`` or ``err <text>``. At start a program prints ``ready {json}`` (its port or pty
path...). Lines starting with ``#`` on stdout are logs and never answers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[[list[str], dict[str, str]], dict[str, Any] | None]


class CommandError(Exception):
    """A control command is wrong; its text is sent back as ``err <text>``."""


def parse_line(line: str) -> tuple[str, list[str], dict[str, str]]:
    words = line.split()
    if not words:
        return "", [], {}
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = value
        else:
            args.append(word)
    return words[0].lower(), args, kwargs


def emit(kind: str, payload: dict[str, Any] | str | None = None) -> None:
    if isinstance(payload, str):
        text = f"{kind} {payload}"
    else:
        text = f"{kind} {json.dumps(payload or {}, sort_keys=True)}"
    sys.stdout.write(text.replace("\n", " ") + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stdout.write(f"# {text}\n")
    sys.stdout.flush()


class ControlChannel:
    """Non-blocking line reader on a file descriptor, dispatching to handlers by verb."""

    def __init__(self, handlers: dict[str, Handler], fd: int | None = None) -> None:
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.handlers = handlers
        self._buffer = b""
        self.closed = False

    def on_readable(self) -> None:
        """Read what is available and run every complete command line."""
        chunk = os.read(self.fd, 4096)
        if not chunk:
            self.closed = True
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            self.run(raw.decode("utf-8", "replace"))

    def run(self, line: str) -> None:
        verb, args, kwargs = parse_line(line)
        if not verb:
            return
        handler = self.handlers.get(verb)
        if handler is None:
            emit("err", f"unknown command {verb!r}; known: {', '.join(sorted(self.handlers))}")
            return
        try:
            result = handler(args, kwargs)
        except (CommandError, ValueError, KeyError) as exc:
            emit("err", f"{verb}: {exc}")
            return
        emit("ok", result or {})
