"""The servers of the soak: upstreams and the gateway, their configs and ports.

- GET/POST upstream: with wrk, bench/load's nginx (`return 200` with 1 KB of JSON,
  here with `X-Kind: <method>` so that wrk's script counts answers per kind);
  without, the aiohttp upstream (upstream.py) serves it too.
- aiohttp upstream (upstream.py): the SSE streams and the raw MCP server.
- the gateway: `python -m runmcp_fast.cli serve -c gateway.json [--workers N]`, the
  `runmcp-fast serve` of this checkout (PYTHONPATH: a worktree's code, not the
  venv's editable install), with an admin listener and a state file.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "load"))
import configs  # noqa: E402 - bench/load's helpers: nginx config, process control

_NGINX_UPSTREAM = """\
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        location / {{
            add_header X-Kind $request_method always;
            return 200 '{body}';
        }}
    }}"""

BODY = '{"id": 42, "name": "soak", "tags": ["a", "b"], "price": 9.5, "pad": "' + "x" * 900 + '"}'

API_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "soak api", "version": "1"},
    "servers": [{"url": "/api"}],
    "paths": {
        "/items": {
            "post": {
                "operationId": "createItem",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "maxLength": 100},
                                    "tags": {"type": "array", "items": {"type": "string"}},
                                    "price": {"type": "number", "minimum": 0},
                                    "note": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "created"}},
            }
        },
        "/items/{id}": {
            "get": {
                "operationId": "getItem",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {"200": {"description": "the item"}},
            }
        },
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Ports:
    gateway: int
    admin: int
    aiohttp: int
    nginx: int | None  # None: GET/POST go to the aiohttp upstream

    @property
    def api_upstream(self) -> str:
        return f"http://127.0.0.1:{self.nginx or self.aiohttp}"


def pick_ports(with_nginx: bool) -> Ports:
    chosen: set[int] = set()
    while len(chosen) < 4:
        chosen.add(free_port())
    gateway, admin, aio, nginx = sorted(chosen)
    return Ports(gateway, admin, aio, nginx if with_nginx else None)


def nginx_command(scratch: Path, port: int) -> list[str]:
    assert "'" not in BODY
    http = _NGINX_UPSTREAM.format(port=port, backlog=configs.BACKLOG, body=BODY)
    return configs._nginx(scratch / "upstream-nginx", http)


def aiohttp_command(port: int, events: int) -> list[str]:
    return [sys.executable, str(HERE / "upstream.py"), "--port", str(port), "--events", str(events)]


def gateway_config(scratch: Path, ports: Ports, token: str, pool_idle: float) -> Path:
    (scratch / "api.json").write_text(json.dumps(API_SPEC))
    data = {
        "listeners": [{"address": f"127.0.0.1:{ports.gateway}"}],
        "admin": {
            "address": f"127.0.0.1:{ports.admin}",
            "token": token,
            "state_file": "state.json",
        },
        "limits": {"max_connections": configs.MAX_CONNECTIONS},
        # Idle upstream connections closed after this long, so that the pool is
        # empty at the baseline and at the end: descriptors compare exactly.
        "pool": {"idle_timeout": pool_idle},
        "services": [
            {"name": "api", "upstream": ports.api_upstream, "openapi": "api.json"},
            {
                "name": "events",
                "upstream": f"http://127.0.0.1:{ports.aiohttp}",
                "prefix": "/events",
            },
            {
                "name": "tools",
                "kind": "mcp",
                "upstream": f"http://127.0.0.1:{ports.aiohttp}/mcp",
                "mcp": {"path": "/mcp"},
            },
        ],
    }
    path = scratch / "gateway.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def gateway_command(config: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "runmcp_fast.cli",
        "serve",
        "-c",
        str(config),
        "--workers",
        str(workers),
    ]


def new_token() -> str:
    return secrets.token_hex(16)
