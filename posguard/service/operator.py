"""The operator socket: a real server for the till's operators and their tools.

Many clients at once (a thread each, up to ``max_clients``); one client's trouble stays with that client: a line
longer than ``max_line`` bytes, bytes that are not UTF-8, an idle client past ``idle_timeout`` or one that goes
away before reading its answer never reach the others or the service. Who may talk is checked with the peer's
credentials (``SO_PEERCRED``): root, the service's own user, ``allow_uids`` and members of ``allow_groups``.

The socket's directory is created 0750 whatever the umask and must belong to the service; a path that is
not a socket, or a socket another live process is listening on, is refused — never unlinked. :meth:`stop`
closes every client and returns within a bound, so SIGTERM is never held up by an idle client.

Commands run one at a time (``handler`` is called under a lock, the engine is not shared between threads);
``quick`` commands (``status``) are answered without waiting for that lock, from what the service last knew.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OperatorServer", "OperatorClient", "SocketRefused", "Peer"]

_log = logging.getLogger("posguard.service")
Handler = Callable[[str, "Peer"], dict[str, Any]]


class SocketRefused(RuntimeError):
    """The socket cannot be set up safely; the message says what is wrong with the path."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)


class OperatorServer:
    def __init__(self, path: str | Path, handler: Handler, *, quick: Handler | None = None,
                 quick_verbs: Iterable[str] = ("status", "help"), allow_uids: Iterable[int] = (),
                 allow_groups: Iterable[str] = (), max_line: int = 4096, idle_timeout: float = 300.0,
                 max_clients: int = 64, backlog: int = 64) -> None:
        self.path = Path(path)
        self.handler = handler
        self.quick = quick
        self.quick_verbs = frozenset(quick_verbs)
        self.allow_uids = {0, os.getuid(), *allow_uids}
        self.allow_gids = {grp.getgrnam(g).gr_gid for g in allow_groups}
        self.max_line = max_line
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self.backlog = backlog
        self._lock = threading.Lock()  # one command at a time through the engine
        self._clients: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self.served = 0
        self.refused = 0

    # -- set-up ----------------------------------------------------------------------------------------
    def open(self) -> OperatorServer:
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o750)
            os.chmod(directory, 0o750)  # mkdir's mode is cut by the umask; this is not
        st = directory.stat()
        if st.st_uid != os.getuid():
            raise SocketRefused(f"{directory} belongs to uid {st.st_uid}, not to this service (uid {os.getuid()}): "
                                "another user could replace the socket")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SocketRefused(f"{directory} is writable by others (mode {oct(st.st_mode & 0o777)}): chmod 750 it")
        self._claim_path()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        sock.listen(self.backlog)
        sock.settimeout(0.2)
        self._sock = sock
        accept = threading.Thread(target=self._accept_loop, name="operator-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def _claim_path(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketRefused(f"{self.path} exists and is not a socket: it is not ours; move it away")
        if st.st_uid != os.getuid():
            raise SocketRefused(f"{self.path} belongs to uid {st.st_uid}: not ours; remove it by hand")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # ours, and nobody listens: left by a service that died
            return
        finally:
            probe.close()
        raise SocketRefused(f"another process is listening on {self.path}: is the service already running?")

    # -- serving ---------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            peer = _peer(conn)
            if not self._allowed(peer):
                self.refused += 1
                _log.warning("operator socket: refused uid %s pid %s (not in allow_uids/allow_groups)",
                             peer.uid, peer.pid)
                _send(conn, {"ok": False, "error": f"user {peer.user} may not operate this terminal "
                                                   "(operator.allow_uids / allow_groups)"})
                conn.close()
                continue
            with self._clients_lock:
                if len(self._clients) >= self.max_clients:
                    _send(conn, {"ok": False, "error": f"too many operator clients ({self.max_clients}); try again"})
                    conn.close()
                    continue
                self._clients.add(conn)
            t = threading.Thread(target=self._serve, args=(conn, peer), name=f"operator-{peer.pid}", daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _allowed(self, peer: Peer) -> bool:
        if peer.uid in self.allow_uids or peer.gid in self.allow_gids:
            return True
        try:
            name = pwd.getpwuid(peer.uid).pw_name
        except KeyError:
            return False
        return any(name in grp.getgrgid(g).gr_mem for g in self.allow_gids)

    def _serve(self, conn: socket.socket, peer: Peer) -> None:
        conn.settimeout(self.idle_timeout)
        buf = b""
        try:
            while not self._stopping.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    _send(conn, {"ok": False, "error": f"idle for {self.idle_timeout:g} s: closing"})
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    if not self._answer(conn, raw, peer):
                        return
                if len(buf) > self.max_line:
                    _send(conn, {"ok": False, "error": f"line longer than {self.max_line} bytes: closing"})
                    _drain(conn)
                    return
        except OSError:
            return  # the client went away (reset, broken pipe): its business only
        finally:
            with self._clients_lock:
                self._clients.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, conn: socket.socket, raw: bytes, peer: Peer) -> bool:
        if len(raw) > self.max_line:
            return _send(conn, {"ok": False, "error": f"line longer than {self.max_line} bytes"})
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            return _send(conn, {"ok": False, "error": f"not UTF-8 (byte {exc.start}); commands are text"})
        if not line:
            return True
        verb = line.split(None, 1)[0].lower()
        with self._clients_lock:
            self._busy.add(conn)
        try:
            if self.quick is not None and verb in self.quick_verbs:
                answer = self.quick(line, peer)
            else:
                with self._lock:
                    answer = self.handler(line, peer)
            self.served += 1
            return _send(conn, answer) and not self._stopping.is_set()
        finally:
            with self._clients_lock:
                self._busy.discard(conn)

    # -- stopping --------------------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every client (an answer in progress finishes first) and remove the socket."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        with self._clients_lock:  # idle clients now; a client being answered gets its answer first
            idle = [c for c in self._clients if c not in self._busy]
        for c in idle:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._clients_lock:
            left = list(self._clients)
        for c in left:  # past the bound: nobody waits any longer
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            if self._sock is not None:
                self.path.unlink()
        self._sock = None

    @property
    def clients(self) -> int:
        with self._clients_lock:
            return len(self._clients)

    def __enter__(self) -> OperatorServer:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _peer(conn: socket.socket) -> Peer:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid, uid, gid)


def _drain(conn: socket.socket, limit: int = 1 << 20) -> None:
    """Close our side first and read what the client is still sending (up to ``limit`` bytes, one second), so
    that it reads our last answer instead of a connection reset."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while limit > 0:
            chunk = conn.recv(65536)
            if not chunk:
                break
            limit -= len(chunk)


def _send(conn: socket.socket, answer: dict[str, Any]) -> bool:
    try:
        conn.sendall((json.dumps(answer, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
        return True
    except OSError:
        return False


class OperatorClient:
    """The client side (``posguard op``): one command, or a line mode for a person at the till."""

    def __init__(self, path: str | Path, *, timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> OperatorClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except FileNotFoundError:
            sock.close()
            raise ConnectionError(f"no operator socket at {self.path}: is `posguard run` running?") from None
        except PermissionError:
            sock.close()
            raise ConnectionError(f"no permission to use {self.path}: ask for operator.allow_groups membership"
                                  ) from None
        except OSError as exc:
            sock.close()
            raise ConnectionError(f"cannot reach {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        return self

    def ask(self, line: str) -> dict[str, Any]:
        """Send one command line; return the service's answer (a dict with ``ok``)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(line.strip().encode("utf-8") + b"\n")
            while b"\n" not in self._buf:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the service closed the connection")
                self._buf += chunk
        except TimeoutError:
            raise ConnectionError(f"no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectionError(f"the connection broke: {exc.strerror or exc}") from None
        raw, self._buf = self._buf.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(raw.decode("utf-8"))
        return answer

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> OperatorClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
