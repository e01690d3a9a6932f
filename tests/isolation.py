"""Child processes that run this checkout's runmcp_fast; checks that may crash
the interpreter, run in one.

A read outside a buffer is a segfault when the buffer sits flush against an
unreadable page (`guard_pages`): run in pytest's own process it would kill the
whole run. `run_isolated(module, function, *args)` calls `module.function(*args)`
in a fresh interpreter instead; a crash fails the calling test with the child's
signal (and the child's faulthandler traceback), an exception or a failed
assertion in the child fails it with the child's stderr. `package_env()` is the
environment for any child that imports runmcp_fast (the `runmcp-fast` command too).
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import runmcp_fast

PAGE = mmap.PAGESIZE

_CHILD = """\
import importlib, json, sys
import runmcp_fast
module = importlib.import_module(sys.argv[1])
result = getattr(module, sys.argv[2])(*json.loads(sys.argv[3]))
print(json.dumps({"package": runmcp_fast.__file__, "result": result}))
"""


PACKAGE_ROOT = Path(runmcp_fast.__file__).resolve().parents[1]
"""The directory holding the runmcp_fast this process imported."""


def package_env(*more: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (os.environ by default) for a child process that must import the
    runmcp_fast this process imported: PYTHONPATH starts with its directory (then
    `more`, then what `base` had). Without it, a child started from a worktree may
    import another checkout through the environment's editable install (the
    `runmcp-fast` script does), and test that code instead."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), *map(str, more), env.get("PYTHONPATH", "")) if p
    )
    return env


def run_isolated(module: str, function: str, *args: Any, timeout: float = 600.0) -> Any:
    """`module.function(*args)` in a child interpreter; its result (args and result
    go as JSON). The child imports the runmcp_fast this process imported (a
    worktree's build, not whatever the environment would find) and this directory's
    test modules."""
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CHILD, module, function, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=package_env(Path(__file__).resolve().parent),
        cwd=PACKAGE_ROOT,
        check=False,
    )
    call = f"{module}.{function}{tuple(args)!r}"
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"{call} killed the child process ({name}):\n{done.stderr[-4000:]}")
    if done.returncode != 0:
        pytest.fail(f"{call} failed in the child process:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["package"] == runmcp_fast.__file__, (out["package"], runmcp_fast.__file__)
    return out["result"]


@contextmanager
def guard_pages() -> Iterator[int]:
    """Three pages, the outer two unreadable (PROT_NONE): the middle page's address.
    Linux only (mprotect through ctypes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    region = mmap.mmap(-1, 3 * PAGE)  # guard | data | guard
    anchor = ctypes.c_char.from_buffer(region)
    base = ctypes.addressof(anchor)
    try:
        for page in (0, 2):
            if libc.mprotect(base + page * PAGE, PAGE, 0) != 0:  # PROT_NONE
                raise OSError(ctypes.get_errno(), "mprotect failed")
        yield base + PAGE
    finally:
        for page in (0, 2):
            libc.mprotect(base + page * PAGE, PAGE, mmap.PROT_READ | mmap.PROT_WRITE)
        del anchor
        region.close()


def flush(start: int, data: bytes, at_end: bool) -> memoryview:
    """`data` copied to the very end (or start) of the page at `start`, as a buffer
    whose first byte after (or before) is unreadable."""
    assert len(data) <= PAGE
    addr = start + (PAGE - len(data) if at_end else 0)
    ctypes.memmove(addr, data, len(data))
    return memoryview((ctypes.c_char * len(data)).from_address(addr)).cast("B")


needs_mprotect = pytest.mark.skipif(sys.platform != "linux", reason="needs mprotect (Linux)")
