"""The example plugin package (examples/plugins/runmcp-audit), installed as a user would
install theirs, found through the `runmcp_fast.plugins` entry points by a gateway
process, and run on real requests: a sync log plugin, an async access plugin, and the
async one failing (500, or on with fail_open)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    ECHO_COUNT,
    AiohttpUpstream,
    GatewayProcess,
    LoopThread,
    RawClient,
    echo_app,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "examples" / "plugins" / "runmcp-audit"
PETSTORE = ROOT / "examples" / "petstore.yaml"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed into a directory of its own (with its entry points)."""
    target = tmp_path_factory.mktemp("site")
    # Built from a copy: pip's build would leave build/ and *.egg-info in the tree.
    source = tmp_path_factory.mktemp("source") / PACKAGE.name
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    done = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(target.glob("runmcp_audit-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture
def upstream() -> Iterator[tuple[AiohttpUpstream, Any]]:
    loop = LoopThread()
    app = echo_app()
    server = AiohttpUpstream(app, loop)
    try:
        yield server, app
    finally:
        server.close()
        loop.close()


def _serve(
    installed: Path, tmp_path: Path, upstream_url: str, allowlist: dict[str, Any]
) -> GatewayProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    config = {
        "plugins": {
            "key-auth": {},
            "audit": {"path": str(tmp_path / "audit.jsonl"), "include_headers": ["x-trace"]},
        },
        "consumers": [
            {"name": "alice", "key-auth": {"key": "alice-key-123"}},
            {"name": "root", "key-auth": {"key": "root-key-1234"}},
        ],
        "services": [
            {
                "name": "pets",
                "upstream": upstream_url,
                "openapi": str(PETSTORE),
                "validation": {"mode": "off"},
                "plugins": {"allowlist": allowlist},
            }
        ],
    }
    return GatewayProcess.from_config(config, tmp_path, env=env)


def _get(port: int, path: str, key: str | None) -> tuple[int, dict[str, str], bytes]:
    with RawClient(port) as client:
        extra = f"apikey: {key}\r\n" if key else ""
        client.send(f"GET {path} HTTP/1.1\r\nHost: h\r\nX-Trace: t-{path}\r\n{extra}\r\n".encode())
        return client.read_response()


def test_the_example_package_runs_in_a_gateway(
    installed: Path, tmp_path: Path, upstream: tuple[AiohttpUpstream, Any]
) -> None:
    server, app = upstream
    allow = {"allow": {"alice": ["listPets"], "root": ["*"]}}
    with _serve(installed, tmp_path, server.url, allow) as gateway:
        assert _get(gateway.port, "/v1/pets", "alice-key-123")[0] == 200
        status, _, body = _get(gateway.port, "/v1/pets/1", "alice-key-123")
        assert status == 403 and json.loads(body) == {"error": "alice may not call showPetById"}
        assert _get(gateway.port, "/v1/pets/1", "root-key-1234")[0] == 200
        assert _get(gateway.port, "/v1/pets", None)[0] == 401
        audit = tmp_path / "audit.jsonl"
        assert wait_until(lambda: audit.exists() and len(audit.read_text().splitlines()) == 4)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["route"], r["consumer"], r["status"]) for r in records] == [
        ("listPets", "alice", 200),
        ("showPetById", "alice", 403),
        ("showPetById", "root", 200),
        ("listPets", None, 401),
    ]
    assert records[0]["x-trace"] == "t-/v1/pets"
    assert app[ECHO_COUNT][0] == 2


@pytest.mark.parametrize("fail_open", [False, True])
def test_an_example_plugin_failing(
    installed: Path, tmp_path: Path, upstream: tuple[AiohttpUpstream, Any], fail_open: bool
) -> None:
    server, _ = upstream
    allow = {"allow": {"alice": ["*"]}, "unavailable": True, "fail_open": fail_open}
    with _serve(installed, tmp_path, server.url, allow) as gateway:
        for _ in range(3):
            status, headers, _ = _get(gateway.port, "/v1/pets", "alice-key-123")
            assert status == (200 if fail_open else 500)
            if not fail_open:
                assert headers["content-type"] == "application/problem+json"
        assert wait_until(
            lambda: any("step 'allowlist' failed" in line for line in gateway.stderr_lines)
        )
    failures = [line for line in gateway.stderr_lines if "step 'allowlist' failed" in line]
    assert len(failures) == 1  # logged at most once a second, the worker alive throughout
    assert "ConnectionError: the allow list service is down" in "\n".join(gateway.stderr_lines)
