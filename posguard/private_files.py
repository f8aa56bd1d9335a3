"""Files the service writes for people to pick up (notices, e-signatures): whole or not at all, owner-only.

:func:`write_private` writes to a temporary file in the same directory, flushes it to disk and renames it over
the final name, so a crash leaves the old file or the new one, never half of one; the file is mode 0600 and
the directory is created 0700 when missing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, mode 0600; returns the path."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final
