"""The supervisor's credential: money going back (void, refund, and the corrections that send them) needs it.

Guide 001 asks for the refund request to be reviewed by a supervisor. The credential is configured as a
scrypt hash (``supervisor.credential`` — never the secret itself), checked in constant time, and rate-limited:
after :attr:`SupervisorGate.max_failures` wrong attempts in a row the gate stays shut for
:attr:`SupervisorGate.lockout` seconds on the service's clock. Who approved is recorded with what was done
(the supervisor's id, never the secret).

>>> stored = hash_credential("4321", salt=bytes(16), n=2**4)
>>> stored.split("$")[:4]
['scrypt', '16', '8', '1']
>>> verify("4321", stored), verify("1234", stored)
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from posguard.clock import Clock
from posguard.service.commands import CommandError

__all__ = ["SupervisorRefused", "SupervisorGate", "hash_credential", "verify", "check_stored", "MIN_N"]

#: the smallest scrypt cost accepted in a configuration (the OWASP floor for interactive logins)
MIN_N = 2**14
_SCHEME = "scrypt"


class SupervisorRefused(CommandError):
    """The supervisor credential was missing, wrong, not configured, or the gate is shut after failures."""


def hash_credential(secret: str, *, salt: bytes | None = None, n: int = 2**15, r: int = 8, p: int = 1) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex): what ``supervisor.credential`` holds."""
    if not secret:
        raise ValueError("the supervisor credential is empty")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
    return f"{_SCHEME}${n}${r}${p}${salt.hex()}${digest.hex()}"


def _parts(stored: str) -> tuple[int, int, int, bytes, bytes]:
    words = stored.split("$")
    if len(words) != 6 or words[0] != _SCHEME:
        raise ValueError("not a scrypt$N$r$p$salt$hash line (make one with `posguard supervisor-hash`)")
    try:
        n, r, p = int(words[1]), int(words[2]), int(words[3])
        salt, digest = bytes.fromhex(words[4]), bytes.fromhex(words[5])
    except ValueError:
        raise ValueError("scrypt$N$r$p$salt$hash: N, r, p are numbers, salt and hash hexadecimal") from None
    return n, r, p, salt, digest


def check_stored(stored: str) -> str | None:
    """What is wrong with a configured credential line, or None."""
    try:
        n, r, p, salt, digest = _parts(stored)
    except ValueError as exc:
        return str(exc)
    if n < MIN_N or n & (n - 1) or r < 8 or p < 1 or len(salt) < 16 or len(digest) < 32:
        return f"too weak or malformed: N must be a power of two >= {MIN_N}, r >= 8, a 16-byte salt, a 32-byte hash"
    return None


def verify(secret: str, stored: str) -> bool:
    n, r, p, salt, digest = _parts(stored)
    got = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=len(digest))
    return hmac.compare_digest(got, digest)


@dataclass
class SupervisorGate:
    """Checks the supervisor's credential for an action that gives money back; returns who approved."""

    supervisor_id: str
    stored: str  # "" when no supervisor is configured: money never goes back from the service
    clock: Clock
    max_failures: int = 3
    lockout: float = 60.0
    _failures: int = field(default=0, init=False)
    _shut_until: float = field(default=0.0, init=False)

    def approve(self, secret: str | None, what: str) -> str:
        """The supervisor id when ``secret`` is right; :class:`SupervisorRefused` (one line, no secret) else."""
        if not self.stored:
            raise SupervisorRefused(f"{what} gives money back and needs a supervisor, but none is configured: set "
                                    "supervisor.id and supervisor.credential (posguard supervisor-hash)")
        now = self.clock.now()
        if now < self._shut_until:
            raise SupervisorRefused(f"{what} refused: too many wrong supervisor credentials; try again in "
                                    f"{int(self._shut_until - now) + 1} s")
        if not secret:
            raise SupervisorRefused(f"{what} gives money back: add the supervisor's credential (sup=...)")
        if not verify(secret, self.stored):
            self._failures += 1
            if self._failures >= self.max_failures:
                self._failures = 0
                self._shut_until = now + self.lockout
                raise SupervisorRefused(f"{what} refused: wrong supervisor credential; {self.max_failures} wrong in "
                                        f"a row, the supervisor gate is shut for {int(self.lockout)} s")
            raise SupervisorRefused(f"{what} refused: wrong supervisor credential "
                                    f"({self.max_failures - self._failures} attempt(s) left)")
        self._failures = 0
        return self.supervisor_id
