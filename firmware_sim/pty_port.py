"""A pseudo-terminal that plays a serial port: the host opens a symlink to the slave side.

The simulator reads and writes the master side. The slave stays open here too, so the master
never reads EIO while the host is away. ``unplug()`` closes both sides and removes the link.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tty
from pathlib import Path


def default_link(name: str) -> Path:
    base = Path(tempfile.gettempdir()) / f"posguard-{name}-{os.getpid()}"
    base.mkdir(exist_ok=True)
    return base / f"tty{name.capitalize()}"


class PtyPort:
    def __init__(self, link: Path | str) -> None:
        self.link = Path(link)
        if ":" in str(self.link):
            raise ValueError(f"serial link path {self.link} must not contain ':' (pcscd splits on it)")
        self.master = -1
        self.slave = -1
        self.slave_name = ""

    @property
    def open(self) -> bool:
        return self.master >= 0

    def plug(self) -> None:
        """Create the pty, make the slave raw and point the link at it (atomically)."""
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.slave_name = os.ttyname(self.slave)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.slave_name)
        tmp.replace(self.link)

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1

    def read(self) -> bytes:
        """What the host wrote (b"" when nothing is there or the port is unplugged)."""
        if self.master < 0:
            return b""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        if self.master < 0 or not data:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master, view)
            except BlockingIOError:
                import select

                select.select([], [self.master], [], 1.0)
                continue
            view = view[written:]
