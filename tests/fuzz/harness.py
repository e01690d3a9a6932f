"""What every fuzz target shares: how it runs, and the leak check.

A target is a script `fuzz_<name>.py` that defines `one_input(data: bytes)` and
calls `main("<name>", one_input)`. Run as

    python tests/fuzz/fuzz_router.py [libFuzzer flags] [corpus dirs]   # atheris
    python tests/fuzz/fuzz_router.py --leak N [corpus dirs]             # leak check

Under atheris the Python code the target imports inside `instrumented()` is
instrumented (its branches and comparisons guide the fuzzer). The compiled
modules are C: they guide it only when built with clang's coverage
(`tests/fuzz/build_instrumented.sh DIR`, then RUNMCP_FUZZ_BUILD=DIR: the script
re-executes itself with that build's libFuzzer preloaded); a normal build is
still fuzzed, just blindly inside the C parts.

`--leak N` replays the checked-in corpus (and any other directories given)
plus seeded mutations of it, four batches of N inputs, and prints the growth
of traced Python memory, of RSS and of the objects the GC tracks between the
last two batches (the first two warm bounded caches up).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
CORPUS = TESTS / "corpus"

# The compiled modules to fuzz: an instrumented build first when asked for, then
# the checkout this file is in, then the tests' helpers.
_build = os.environ.get("RUNMCP_FUZZ_BUILD")
for _path in (str(TESTS), str(ROOT), *([_build] if _build else [])):
    if _path not in sys.path:
        sys.path.insert(0, _path)
_target: Callable[[bytes], None] | None = None


def _dispatch(data: bytes) -> None:
    assert _target is not None
    _target(data)


if _build and "libfuzzer.so" not in os.environ.get("LD_PRELOAD", ""):
    # The instrumented modules' coverage hooks link against libFuzzer's symbols, which
    # must be global before they load: clang's libFuzzer, preloaded (atheris then uses
    # it instead of its own). build_instrumented.sh leaves it next to the modules.
    os.environ["LD_PRELOAD"] = str(Path(_build, "libfuzzer.so"))
    os.execv(sys.executable, [sys.executable, *sys.argv])

if "--leak" not in sys.argv:
    import atheris

    _args = sys.argv[1:]
    if not any(not a.startswith("-") for a in _args):
        # The checked-in seeds when no corpus is given.
        _args.append(str(CORPUS / Path(sys.argv[0]).stem.removeprefix("fuzz_")))
    atheris.Setup([sys.argv[0], *_args], _dispatch)


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Instrument the Python modules imported inside (when running under atheris)."""
    if _under_atheris():
        import atheris

        with atheris.instrument_imports(include=["runmcp_fast"]):
            yield
    else:
        yield


def _under_atheris() -> bool:
    return "--leak" not in sys.argv


def seeds(name: str, extra: list[str] = ()) -> list[bytes]:  # type: ignore[assignment]
    found: list[bytes] = []
    for folder in (CORPUS / name, *map(Path, extra)):
        if folder.is_dir():
            found.extend(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())
    return found or [b""]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """A few random edits: flip, insert, delete, duplicate, splice with another seed."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        at = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del buf[at : at + rng.randint(1, 16)]
        elif op == 3:
            buf[at:at] = buf[at : at + rng.randint(1, 32)]
        elif op == 4:
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            buf[at:at] = other[start : start + rng.randint(1, 64)]
        else:
            buf[at:at] = rng.choice((b"\r\n", b"\n", b"\r", b"{", b"}", b'"', b"%", b"/", b"\x00"))
    return bytes(buf[:65536])


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def leak_check(name: str, one_input: Callable[[bytes], None], n: int, extra: list[str]) -> dict:
    """Four batches of `n` inputs; what grew between the last two (the first two warm
    the bounded caches up: media types, hosts, compiled patterns)."""
    pool = seeds(name, extra)
    rng = random.Random(0)
    tracemalloc.start()
    marks: list[tuple[int, int, int]] = []
    for _batch in range(4):
        for i in range(n):
            data = pool[i % len(pool)] if i < len(pool) else mutate(rng.choice(pool), rng, pool)
            one_input(data)
        gc.collect()
        marks.append((tracemalloc.get_traced_memory()[0], _rss_kib(), len(gc.get_objects())))
    tracemalloc.stop()
    (traced3, rss3, objects3), (traced4, rss4, objects4) = marks[2:]
    return {
        "target": name,
        "executions": 4 * n,
        "traced_growth_bytes": traced4 - traced3,
        "rss_growth_kib": rss4 - rss3,
        "gc_objects_growth": objects4 - objects3,
        "traced_bytes": traced4,
        "rss_kib": rss4,
    }


def main(name: str, one_input: Callable[[bytes], None]) -> None:
    args = sys.argv[1:]
    if args[:1] == ["--leak"]:
        print(json.dumps(leak_check(name, one_input, int(args[1]), args[2:])), flush=True)
        return
    global _target
    _target = one_input
    atheris.Fuzz()
