"""The worked example of docs/architecture.md: a header-stamping step in Python and in Cython.

The Cython one is built here from examples/steps/stamp.pyx, as a user would
build their own compiled step: a separate extension that cimports the data
plane's declarations (`_dataplane.pxd`). If a field moves in a `.pxd` without
the other side, this build or this test fails.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runmcp_fast._dataplane import PyStep, Step
from runmcp_fast.snapshot import RouteInfo
from tests.servers import Harness, echo_app, refused_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "steps"

_BUILD = """
import sys
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    name="stamp",
    ext_modules=cythonize(
        [Extension("stamp", [sys.argv[1]])],
        include_path=[sys.argv[2]],
        language_level=3,
        quiet=True,
    ),
    script_args=["build_ext", "--build-lib", sys.argv[3], "--build-temp", sys.argv[4]],
)
"""


@pytest.fixture(scope="module")
def compiled_stamp(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    work = tmp_path_factory.mktemp("stamp")
    source = work / "stamp.pyx"
    source.write_text((EXAMPLES / "stamp.pyx").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _BUILD,
            str(source),
            str(ROOT),
            str(work / "lib"),
            str(work / "tmp"),
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = next((work / "lib").glob("stamp*.so"))
    spec = importlib.util.spec_from_file_location("stamp", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _python_stamp() -> Any:
    spec = importlib.util.spec_from_file_location("stamp_py", EXAMPLES / "stamp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Stamp


@pytest.mark.parametrize("kind", ["python", "cython"])
def test_the_stamp_step_marks_proxied_and_gateway_answers(
    harness: Harness, kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "python":
        step: Step = PyStep(_python_stamp()("edge-1"))
    else:
        step = request.getfixturevalue("compiled_stamp").StampStep("edge-1")
    assert isinstance(step, Step) and step.name == "stamp"

    def steps(route: RouteInfo) -> Sequence[Step]:
        return [step]

    upstream = harness.aiohttp(echo_app())
    dead = f"http://127.0.0.1:{refused_port()}"  # nothing listens there
    gateway = harness.gateway(
        {
            "services": [
                {"name": "echo", "upstream": upstream.url, "prefix": "/api"},
                {"name": "gone", "upstream": dead, "prefix": "/gone"},
            ]
        },
        steps=steps,
    )
    client = harness.client(gateway.port)
    client.send(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, _ = client.read_response()
    assert status == 200 and headers["x-served-by"] == "edge-1"
    # An answer the gateway makes itself (the upstream refuses connections): stamped too.
    client.send(b"GET /gone/x HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, body = client.read_response()
    assert status == 502 and headers["x-served-by"] == "edge-1"
    assert headers["content-length"] == str(len(body))
    # No route, no chain: a 404 is not stamped.
    client.send(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
    status, headers, _ = client.read_response()
    assert status == 404 and "x-served-by" not in headers
