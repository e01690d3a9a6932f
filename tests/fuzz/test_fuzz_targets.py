"""The fuzz targets of this folder, bounded (opt-in: `-m fuzz`).

Each target runs under atheris for RUNMCP_FUZZ_RUNS executions (default 20,000)
from the checked-in corpus `tests/corpus/<target>/`: libFuzzer stops at the first
crash (an exception, a failed oracle or a signal) and exits non-zero. Then the
leak check replays the corpus and what the run found plus mutations of them,
four batches of RUNMCP_FUZZ_LEAK_RUNS (default 5,000), and bounds the growth of
traced Python memory, of RSS and of the GC's objects between the last two batches.

Longer runs by hand: `python tests/fuzz/fuzz_<target>.py -max_total_time=600
<new corpus dir> tests/corpus/<target>` (see harness.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TARGETS = ("http", "router", "bodycheck", "sse", "envelope", "response")
RUNS = int(os.environ.get("RUNMCP_FUZZ_RUNS", "20000"))
LEAK_RUNS = int(os.environ.get("RUNMCP_FUZZ_LEAK_RUNS", "5000"))
# Per input, between the last two batches (measured: 0.5 to 5): one leaked object per
# input is 32 bytes or more.
TRACED_BYTES_PER_INPUT = 16
RSS_KIB_LIMIT = 2048

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    script = str(HERE / f"fuzz_{target}.py")
    found = tmp_path / "corpus"
    found.mkdir()
    argv = [
        sys.executable,
        script,
        f"-runs={RUNS}",
        "-seed=1",
        "-max_len=4096",
        "-rss_limit_mb=1024",
        f"-artifact_prefix={tmp_path}/",
        str(found),
        str(HERE.parent / "corpus" / target),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-")))
    assert done.returncode == 0 and not crashes, (crashes, done.stderr[-4000:])
    assert f"Done {RUNS} runs" in done.stderr, done.stderr[-2000:]

    leak = subprocess.run(
        [sys.executable, script, "--leak", str(LEAK_RUNS), str(found)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert leak.returncode == 0, leak.stderr[-4000:]
    report = json.loads(leak.stdout.strip().splitlines()[-1])
    assert report["traced_growth_bytes"] <= TRACED_BYTES_PER_INPUT * LEAK_RUNS, report
    assert report["rss_growth_kib"] <= RSS_KIB_LIMIT, report
    assert report["gc_objects_growth"] <= LEAK_RUNS // 100, report
