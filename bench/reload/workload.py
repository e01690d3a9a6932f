"""The services the reload benchmark registers: spec files and config data.

Service `i` of `n` is `svc0000`...: every 100th one (0, 100, ...) serves GitHub's
REST API spec (845 operations) mounted under its own `base_path`, the others a
generated spec of 5 to 20 operations written to its own file. Every service has
its own path space (`/svc0042/...`), so no two routes conflict. One more service,
`fixed`, routes the prefix `/fixed` to the upstream: the live traffic goes there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

GITHUB_EVERY = 100
FIXED_PREFIX = "/fixed"
# The service the swapper changes (alternating two spec files).
SWAPPED = "svc0001"


def github_spec() -> Path:
    """GitHub's REST API spec, fetched from npm once (tests/public_specs.py caches it)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.public_specs import spec_path

    return spec_path("github")


def operation_count(index: int) -> int:
    """5..20 operations, spread evenly over the services."""
    return 5 + (index * 7) % 16


def small_spec(title: str, operations: int, *, version: str = "1") -> dict[str, Any]:
    """An OpenAPI 3 spec with `operations` CRUD-like operations on a few resources.

    Collections get GET (a `limit` query parameter) and POST (a JSON body with a
    schema); items `/{id}` GET, PUT and DELETE: the shapes a real small API has.
    """
    paths: dict[str, dict[str, Any]] = {}
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 100},
                        "size": {"type": "integer", "minimum": 0},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                }
            }
        },
    }
    ok = {"200": {"description": "OK"}}
    item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    made = 0
    resource = 0
    while made < operations:
        name = f"things{resource}" if version == "1" else f"items{resource}"
        collection: dict[str, Any] = {}
        item: dict[str, Any] = {"parameters": [item_id]}
        plan = [
            (collection, "get"),
            (collection, "post"),
            (item, "get"),
            (item, "put"),
            (item, "delete"),
        ]
        for where, method in plan:
            if made == operations:
                break
            operation: dict[str, Any] = {
                "operationId": f"{method}-{name}{'' if where is collection else '-item'}",
                "responses": ok,
            }
            if method in ("post", "put"):
                operation["requestBody"] = body
            if where is collection and method == "get":
                operation["parameters"] = [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}}
                ]
            where[method] = operation
            made += 1
        paths[f"/{name}"] = collection
        if len(item) > 1:
            paths[f"/{name}/{{id}}"] = item
        resource += 1
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "servers": [{"url": "https://api.example.com/"}],
        "paths": {p: v for p, v in paths.items() if v},
    }


def write_specs(directory: Path, count: int) -> list[Path | None]:
    """One small spec file per service that has one (None: a GitHub service)."""
    directory.mkdir(parents=True, exist_ok=True)
    files: list[Path | None] = []
    for index in range(count):
        if index % GITHUB_EVERY == 0:
            files.append(None)
            continue
        path = directory / f"svc{index:04d}.json"
        path.write_text(json.dumps(small_spec(f"svc{index:04d}", operation_count(index))))
        files.append(path)
    return files


def write_swap_versions(directory: Path) -> tuple[Path, Path]:
    """Two versions of the swapped service's spec: different paths, same size."""
    count = operation_count(int(SWAPPED[3:]))
    one = directory / f"{SWAPPED}.v1.json"
    two = directory / f"{SWAPPED}.v2.json"
    one.write_text(json.dumps(small_spec(SWAPPED, count, version="1")))
    two.write_text(json.dumps(small_spec(SWAPPED, count, version="2")))
    return one, two


def service(index: int, spec: Path | None, github: Path, upstream: str) -> dict[str, Any]:
    name = f"svc{index:04d}"
    return {
        "name": name,
        "upstream": upstream,
        "openapi": str(spec if spec is not None else github),
        "base_path": f"/{name}",
    }


def config_data(
    count: int,
    specs: list[Path | None],
    github: Path,
    *,
    upstream: str = "http://127.0.0.1:9",
    listen: str = "127.0.0.1:0",
    admin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config with `count` spec services plus the `fixed` prefix service."""
    services = [service(i, specs[i], github, upstream) for i in range(count)]
    services.append({"name": "fixed", "upstream": upstream, "prefix": FIXED_PREFIX})
    data: dict[str, Any] = {"listeners": [{"address": listen}], "services": services}
    if admin is not None:
        data["admin"] = admin
    return data
