"""Files the gateway writes for itself (the state file, the cluster's disk cache)."""

from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomically(path: str, data: bytes, prefix: str = ".tmp-") -> None:
    """Write `data` to `path` so a reader (or a crash) sees the old file or the new one,
    never a part: a temporary file beside it, fsynced, then renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
