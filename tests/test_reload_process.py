"""`runmcp-fast serve -c FILE` changed while it runs: the file watcher, SIGHUP,
the admin API with several workers, and a restart that keeps the API's changes.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import GatewayProcess, Harness, RawClient, free_port, wait_until
from test_admin_api import named_app


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


def who(port: int, path: str) -> str | int:
    try:
        with RawClient(port, timeout=5) as client:
            client.send(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
            status, _, body = client.read_response()
    except OSError:
        return -1
    return str(json.loads(body)["upstream"]) if status == 200 else status


def write_atomically(path: Path, data: dict[str, Any] | str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_the_watched_file_is_reloaded_and_a_broken_one_refused(h: Harness, tmp_path: Path) -> None:
    a, b = h.aiohttp(named_app("A")), h.aiohttp(named_app("B"))
    config: dict[str, Any] = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [{"name": "one", "upstream": a.url, "prefix": "/one"}],
        "watch_interval": 0.1,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))
    with GatewayProcess(["-c", str(path)]) as gw:
        assert who(gw.port, "/one/x") == "A"
        config["services"].append({"name": "two", "upstream": b.url, "prefix": "/two"})
        write_atomically(path, config)
        assert wait_until(lambda: who(gw.port, "/two/x") == "B", 10)
        # Half a file: refused and logged; the running config stays.
        text = json.dumps({**config, "services": [*config["services"], {"name": "x"}]})
        write_atomically(path, text[: len(text) // 2])
        assert wait_until(lambda: any("refused" in line for line in gw.stderr_lines), 10)
        assert "not valid YAML" in "\n".join(gw.stderr_lines)
        assert who(gw.port, "/one/x") == "A" and who(gw.port, "/two/x") == "B"
        # An unknown key: refused with its pointer.
        write_atomically(path, {**config, "servics": []})
        assert wait_until(lambda: any("/servics" in line for line in gw.stderr_lines), 10)
        assert who(gw.port, "/two/x") == "B"
        # Fixed: applied.
        config["services"] = config["services"][1:]
        write_atomically(path, config)
        assert wait_until(lambda: who(gw.port, "/one/x") == 404, 10)
        assert who(gw.port, "/two/x") == "B"
        assert gw.stop() == 0


def test_sighup_reloads_a_file_that_is_not_watched(h: Harness, tmp_path: Path) -> None:
    a, b = h.aiohttp(named_app("A")), h.aiohttp(named_app("B"))
    config: dict[str, Any] = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [{"name": "one", "upstream": a.url, "prefix": "/one"}],
        "watch": False,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))
    with GatewayProcess(["-c", str(path)]) as gw:
        config["services"][0]["upstream"] = b.url
        write_atomically(path, config)
        assert who(gw.port, "/one/x") == "A"  # not watched: nothing yet
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: who(gw.port, "/one/x") == "B", 10)
        assert gw.stop() == 0


def test_admin_changes_reach_every_worker_and_survive_a_restart(h: Harness, tmp_path: Path) -> None:
    a, b = h.aiohttp(named_app("A")), h.aiohttp(named_app("B"))
    admin_port = free_port()
    config = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": [{"name": "one", "upstream": a.url, "prefix": "/one"}],
        "admin": {"address": f"127.0.0.1:{admin_port}", "token": "t"},
        "watch_interval": 0.1,
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))

    def put(name: str, body: dict[str, Any]) -> int:
        data = json.dumps(body).encode()
        with RawClient(admin_port) as client:
            client.send(
                f"PUT /admin/services/{name} HTTP/1.1\r\nHost: admin\r\n"
                f"Authorization: Bearer t\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            return client.read_response()[0]

    with GatewayProcess(["-c", str(path), "--workers", "2"]) as gw:
        assert wait_until(lambda: sum("listening on" in x for x in gw.stderr_lines) == 2, 10)
        assert put("two", {"upstream": b.url, "prefix": "/two"}) == 201
        # Each new connection may land on either worker: all of them answer, soon.
        assert wait_until(lambda: all(who(gw.port, "/two/x") == "B" for _ in range(10)), 10)
        assert put("one", {"upstream": b.url, "prefix": "/one"}) == 200
        assert wait_until(lambda: all(who(gw.port, "/one/x") == "B" for _ in range(10)), 10)
        assert gw.stop() == 0
    state = json.loads((tmp_path / "gateway.yaml.state.json").read_text())
    assert set(state["services"]) == {"one", "two"}
    with GatewayProcess(["-c", str(path)]) as gw:
        assert who(gw.port, "/two/x") == "B" and who(gw.port, "/one/x") == "B"
        assert gw.stop() == 0
