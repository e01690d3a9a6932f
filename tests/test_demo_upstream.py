"""The demo upstream (`runmcp_fast.demo`) against examples/petstore.yaml.

Each test serves a fresh app on 127.0.0.1 (a free port) with aiohttp's
TestServer inside `asyncio.run`, and every response goes through `Api.call`:
its status must be one the spec declares for the operation (or `default`), its
Content-Type the spec's media type, and its body must fit the spec's schema
(a structural check: types, required and declared properties, lengths, ranges,
int32/int64 formats).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from runmcp_fast.demo import PetStore, main, make_app

ROOT = Path(__file__).resolve().parents[1]
SPEC: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "petstore.yaml").read_text())
BASE = urlsplit(SPEC["servers"][0]["url"]).path  # /v1
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: dict[str, Any]


OPERATIONS: dict[str, Operation] = {
    op["operationId"]: Operation(method.upper(), template, op)
    for template, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in METHODS
}


# --- a structural JSON Schema check (the subset petstore.yaml uses) -----------


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = SPEC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def declared_properties(schema: Any) -> set[str]:
    schema = resolve(schema)
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= declared_properties(part)
    return names


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_INT_RANGES = {"int32": 2**31, "int64": 2**63}


def schema_errors(schema: Any, value: Any, where: str = "$", *, strict: bool = True) -> list[str]:
    """What is wrong with `value` against `schema`; `strict` also refuses
    properties the schema does not declare (the spec allows them, the demo
    should not send them: a typo like `owner_id` would slip through)."""
    schema = resolve(schema)
    errors: list[str] = []
    for part in schema.get("allOf", []):
        errors += schema_errors(part, value, where, strict=False)
    kind = schema.get("type")
    if kind is not None and not _TYPES[kind](value):
        return [*errors, f"{where}: expected {kind}, got {type(value).__name__} {value!r}"]
    if isinstance(value, dict):
        errors += [
            f"{where}: missing {name!r}" for name in schema.get("required", []) if name not in value
        ]
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(properties[name], item, f"{where}.{name}")
        if strict and (extra := set(value) - declared_properties(schema)):
            errors.append(f"{where}: undeclared properties {sorted(extra)}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{where}[{index}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if schema.get("format") == "email" and "@" not in value:
            errors.append(f"{where}: {value!r} is not an email address")
        if schema.get("format") == "uri" and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
            errors.append(f"{where}: {value!r} is not a URI")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: above {schema['maximum']}")
        bound = _INT_RANGES.get(schema.get("format", ""))
        if bound is not None and not -bound <= value < bound:
            errors.append(f"{where}: out of {schema['format']} range")
    return errors


def test_the_schema_check_catches_mistakes() -> None:
    pet = SPEC["components"]["schemas"]["Pet"]
    assert schema_errors(pet, {"id": 1, "name": "Rex", "tag": "dog", "ownerId": 2}) == []
    assert schema_errors(pet, {"id": 1, "name": "Rex", "owner_id": 2}) == [
        "$: undeclared properties ['owner_id']"
    ]
    assert schema_errors(pet, {"name": ""}) == ["$.name: shorter than 1", "$: missing 'id'"]
    assert schema_errors(pet, {"id": True, "name": "x"}) == [
        "$.id: expected integer, got bool True"
    ]
    assert schema_errors(pet, {"id": 2**63, "name": "x"}) == ["$.id: out of int64 range"]
    error = SPEC["components"]["schemas"]["Error"]
    assert schema_errors(error, {"title": "x", "status": 404, "type": "nope"}) == [
        "$.type: 'nope' is not a URI"
    ]


# --- calling the demo through the spec ----------------------------------------


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDict[str]


_UNSET: Any = object()


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    # (operationId, status) of every call, for the coverage check.
    seen: set[tuple[str, int]] = field(default_factory=set)

    async def call(
        self,
        operation_id: str,
        *,
        path: Mapping[str, object] | None = None,
        query: list[tuple[str, str]] | None = None,
        json_body: Any = _UNSET,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        undeclared: bool = False,
    ) -> Reply:
        """Call an operation; check the reply against the spec.

        `undeclared`: the status may be one the operation does not declare
        (the demo's 400/412/415/422 where the spec has no `default`); the
        body must then be a problem+json `Error`.
        """
        op = OPERATIONS[operation_id]
        url = BASE + op.template.format(**(path or {}))
        kwargs: dict[str, Any] = {"params": query or [], "headers": headers or {}}
        if json_body is not _UNSET:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        async with self.client.request(op.method, url, **kwargs) as resp:
            raw = await resp.read()
            reply = Reply(resp.status, None, CIMultiDict(resp.headers))
            content_type = resp.content_type
        self.seen.add((operation_id, reply.status))
        responses = op.spec["responses"]
        response = responses.get(str(reply.status)) or responses.get("default")
        if response is None:
            assert undeclared, f"{operation_id}: status {reply.status} is not in the spec: {raw!r}"
            assert reply.status >= 400
            response = SPEC["components"]["responses"]["Error"]
        response = resolve(response)
        content = response.get("content")
        if content is None:
            assert raw == b"", f"{operation_id} {reply.status}: the spec declares no body"
            return reply
        assert content_type in content, f"{operation_id} {reply.status}: {content_type}"
        reply.body = json.loads(raw)
        errors = schema_errors(content[content_type]["schema"], reply.body)
        assert errors == [], f"{operation_id} {reply.status}: {errors}"
        if content_type == "application/problem+json":
            assert reply.body["status"] == reply.status
        return reply


def run(test: Callable[[Api], Awaitable[None]], app: web.Application | None = None) -> Api:
    """Serve `app` (a fresh, seeded demo) on 127.0.0.1 and run `test` against it."""

    async def go() -> Api:
        server = TestServer(app or make_app(), host="127.0.0.1", port=0)
        async with TestClient(server) as client:
            api = Api(client)
            await test(api)
            return api

    return asyncio.run(go())


# --- the tests ----------------------------------------------------------------


def test_every_operation_and_every_declared_status() -> None:
    async def tour(api: Api) -> None:
        pets = (await api.call("listPets")).body
        assert [p["name"] for p in pets] == ["Rex", "Tom", "Nemo", "Luna", "Kiwi"]
        created = await api.call("createPet", json_body={"name": "Bella", "tag": "dog"})
        assert created.status == 201
        pet_id = created.body["id"]
        assert created.body == {"id": pet_id, "name": "Bella", "tag": "dog"}
        assert created.headers["Location"] == f"{BASE}/pets/{pet_id}"
        shown = await api.call("showPetById", path={"petId": pet_id})
        assert shown.status == 200
        assert shown.body == created.body
        assert (await api.call("showPetById", path={"petId": 999})).status == 404
        updated = await api.call(
            "updatePet", path={"petId": pet_id}, json_body={"name": "Bella", "ownerId": 3}
        )
        assert updated.status == 200
        assert updated.body == {"id": pet_id, "name": "Bella", "ownerId": 3}
        assert (
            await api.call("updatePet", path={"petId": 999}, json_body={"name": "X"})
        ).status == 404
        assert (await api.call("deletePet", path={"petId": pet_id})).status == 204
        assert (await api.call("deletePet", path={"petId": pet_id})).status == 404
        assert (await api.call("showPetById", path={"petId": pet_id})).status == 404
        owners = (await api.call("listOwners")).body
        assert owners == [
            {"id": 1, "name": "Alice", "email": "alice@example.com"},
            {"id": 2, "name": "Bob"},
            {"id": 3, "name": "Carol", "email": "carol@example.com"},
        ]
        assert (await api.call("showOwnerById", path={"ownerId": 2})).body == owners[1]
        assert (await api.call("showOwnerById", path={"ownerId": 999})).status == 404
        alices = (await api.call("listOwnerPets", path={"ownerId": 1})).body
        assert [p["name"] for p in alices] == ["Rex", "Luna"]
        adopt = await api.call("adoptPet", path={"ownerId": 2}, json_body={"petId": 3})
        assert adopt.status == 204
        assert (
            await api.call("adoptPet", path={"ownerId": 999}, json_body={"petId": 3})
        ).status == 404

    api = run(tour)
    assert {op for op, _ in api.seen} == set(OPERATIONS)
    declared = {
        (op_id, int(code))
        for op_id, op in OPERATIONS.items()
        for code in op.spec["responses"]
        if code != "default"
    }
    assert declared <= api.seen


def test_list_pets_filters_by_tag_and_pages_with_x_next() -> None:
    async def test(api: Api) -> None:
        cats = await api.call("listPets", query=[("tag", "cat")])
        assert [p["name"] for p in cats.body] == ["Tom", "Luna"]
        assert "X-Next" not in cats.headers
        both = await api.call("listPets", query=[("tag", "cat"), ("tag", "fish")])
        assert [p["name"] for p in both.body] == ["Tom", "Nemo", "Luna"]
        assert (await api.call("listPets", query=[("tag", "bird")])).body == []
        # Follow X-Next two at a time through every pet.
        names: list[str] = []
        page = await api.call("listPets", query=[("limit", "2")])
        while True:
            assert len(page.body) <= 2
            names += [p["name"] for p in page.body]
            link = page.headers.get("X-Next")
            if link is None:
                break
            assert link.startswith(f"{BASE}/pets?")
            async with api.client.get(link) as resp:
                assert resp.status == 200
                page = Reply(resp.status, await resp.json(), CIMultiDict(resp.headers))
        assert names == ["Rex", "Tom", "Nemo", "Luna", "Kiwi"]

    run(test)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "two", "1.5", "\u0663", ""])
def test_a_limit_out_of_range_is_400(limit: str) -> None:
    async def test(api: Api) -> None:
        for op, path in [("listPets", {}), ("listOwners", {}), ("listOwnerPets", {"ownerId": 1})]:
            reply = await api.call(op, path=path, query=[("limit", limit)], undeclared=True)
            assert reply.status == 400
            assert "limit" in reply.body["detail"]

    run(test)


def test_limit_bounds_the_page() -> None:
    async def test(api: Api) -> None:
        assert len((await api.call("listPets", query=[("limit", "1")])).body) == 1
        assert len((await api.call("listPets", query=[("limit", "100")])).body) == 5
        assert len((await api.call("listOwners", query=[("limit", "2")])).body) == 2
        mine = await api.call("listOwnerPets", path={"ownerId": 1}, query=[("limit", "1")])
        assert [p["name"] for p in mine.body] == ["Rex"]

    run(test)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({}, 400, "name"),
        ({"name": ""}, 400, "length >= 1"),
        ({"name": "x" * 101}, 400, "length <= 100"),
        ({"name": "x", "tag": None}, 400, "$.tag"),
        ({"name": "x", "ownerId": "1"}, 400, "$.ownerId"),
        ({"name": "x", "ownerId": 2**63}, 400, "$.ownerId"),
        ([{"name": "x"}], 400, "object"),
        ({"name": "x", "ownerId": 42}, 422, "no owner with id 42"),
    ],
)
def test_create_pet_checks_the_body(body: Any, status: int, detail: str) -> None:
    async def test(api: Api) -> None:
        reply = await api.call("createPet", json_body=body)
        assert reply.status == status
        assert detail in reply.body["detail"]
        # Nothing was stored.
        assert len((await api.call("listPets")).body) == 5

    run(test)


def test_create_pet_needs_json() -> None:
    async def test(api: Api) -> None:
        not_json = await api.call(
            "createPet", data=b"{", headers={"Content-Type": "application/json"}
        )
        assert not_json.status == 400
        form = await api.call("createPet", data=b"name=x", undeclared=True)
        assert form.status == 415

    run(test)


def test_create_pet_ignores_a_read_only_id() -> None:
    async def test(api: Api) -> None:
        reply = await api.call("createPet", json_body={"id": 1, "name": "Copycat", "ownerId": 2})
        assert reply.body == {"id": 6, "name": "Copycat", "ownerId": 2}
        assert (await api.call("showPetById", path={"petId": 1})).body["name"] == "Rex"

    run(test)


def test_update_pet_replaces_and_honours_if_match() -> None:
    async def test(api: Api) -> None:
        shown = await api.call("showPetById", path={"petId": 1})
        etag = shown.headers["ETag"]
        first = await api.call(
            "updatePet", path={"petId": 1}, json_body={"name": "Rex II"}, headers={"If-Match": etag}
        )
        assert first.status == 200
        # A replacement: the tag and owner not sent are gone.
        assert first.body == {"id": 1, "name": "Rex II"}
        assert first.headers["ETag"] != etag
        stale = await api.call(
            "updatePet",
            path={"petId": 1},
            json_body={"name": "Rex III"},
            headers={"If-Match": etag},
            undeclared=True,
        )
        assert stale.status == 412
        anything = await api.call(
            "updatePet", path={"petId": 1}, json_body={"name": "Rex IV"}, headers={"If-Match": "*"}
        )
        assert anything.status == 200
        listed = f'"x", {anything.headers["ETag"]}'
        again = await api.call(
            "updatePet",
            path={"petId": 1},
            json_body={"name": "Rex V"},
            headers={"If-Match": listed},
        )
        assert again.body["name"] == "Rex V"
        bad = await api.call(
            "updatePet", path={"petId": 1}, json_body={"name": ""}, undeclared=True
        )
        assert bad.status == 400
        orphan = await api.call(
            "updatePet", path={"petId": 1}, json_body={"name": "x", "ownerId": 9}, undeclared=True
        )
        assert orphan.status == 422
        assert (await api.call("showPetById", path={"petId": 1})).body["name"] == "Rex V"

    run(test)


def test_owners_filter_by_name_prefix() -> None:
    async def test(api: Api) -> None:
        assert [o["name"] for o in (await api.call("listOwners", query=[("name", "C")])).body] == [
            "Carol"
        ]
        assert (await api.call("listOwners", query=[("name", "Zed")])).body == []
        empty = await api.call("listOwners", query=[("name", "")], undeclared=True)
        assert empty.status == 400

    run(test)


def test_adopt_pet_moves_it_to_the_owner() -> None:
    async def test(api: Api) -> None:
        assert (
            await api.call("adoptPet", path={"ownerId": 3}, json_body={"petId": 1})
        ).status == 204
        carols = (await api.call("listOwnerPets", path={"ownerId": 3})).body
        assert carols == [{"id": 1, "name": "Rex", "tag": "dog", "ownerId": 3}]
        alices = (await api.call("listOwnerPets", path={"ownerId": 1})).body
        assert [p["id"] for p in alices] == [4]
        unknown_pet = await api.call("adoptPet", path={"ownerId": 3}, json_body={"petId": 99})
        assert unknown_pet.status == 404
        assert unknown_pet.body["detail"] == "no pet with id 99"
        no_pet_id = await api.call(
            "adoptPet", path={"ownerId": 3}, json_body={"pet": 1}, undeclared=True
        )
        assert no_pet_id.status == 400
        # The spec declares only 200 for listOwnerPets; an unknown owner is 404 all the same.
        nobody = await api.call("listOwnerPets", path={"ownerId": 99}, undeclared=True)
        assert nobody.status == 404

    run(test)


@pytest.mark.parametrize("raw_id", ["abc", "1.0", "99999999999999999999", "%D9%A1", "-5"])
def test_a_malformed_or_unknown_id_is_404(raw_id: str) -> None:
    async def test(api: Api) -> None:
        for op in ("showPetById", "deletePet"):
            reply = await api.call(op, path={"petId": raw_id})
            assert reply.status == 404
        assert (await api.call("showOwnerById", path={"ownerId": raw_id})).status == 404

    run(test)


def test_unknown_routes_and_methods_are_problem_json() -> None:
    async def test(api: Api) -> None:
        async with api.client.get(f"{BASE}/nowhere") as resp:
            assert resp.status == 404
            assert resp.content_type == "application/problem+json"
            body = await resp.json(content_type=None)
        assert schema_errors(SPEC["components"]["schemas"]["Error"], body) == []
        async with api.client.patch(f"{BASE}/pets/1") as resp:
            assert resp.status == 405
            assert resp.content_type == "application/problem+json"
            assert set(resp.headers["Allow"].split(",")) >= {"GET", "PUT", "DELETE"}
            assert (await resp.json(content_type=None))["status"] == 405
        async with api.client.post(
            f"{BASE}/pets",
            data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413
            assert (await resp.json(content_type=None))["status"] == 413

    run(test)


def test_apps_do_not_share_state() -> None:
    async def delete(api: Api) -> None:
        assert (await api.call("deletePet", path={"petId": 1})).status == 204

    async def still_there(api: Api) -> None:
        assert (await api.call("showPetById", path={"petId": 1})).status == 200

    run(delete)
    run(still_there)


def test_an_empty_store_and_another_base_path() -> None:
    async def test(api: Api) -> None:
        async with api.client.get("/api/pets") as resp:
            assert resp.status == 200
            assert await resp.json() == []
        async with api.client.post("/api/pets", json={"name": "First"}) as resp:
            assert resp.status == 201
            assert resp.headers["Location"] == "/api/pets/1"
        async with api.client.get(f"{BASE}/pets") as resp:
            assert resp.status == 404

    run(test, make_app("/api/", store=PetStore()))


# --- the command line -----------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_command_line_serves_until_a_signal(signum: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runmcp_fast.demo", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.fullmatch(
            r"demo petstore upstream listening on (http://127\.0\.0\.1:\d+) \(base path /v1\)\n",
            line,
        )
        assert found, line
        with urllib.request.urlopen(f"{found[1]}/v1/pets/1", timeout=10) as resp:
            assert json.load(resp)["name"] == "Rex"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""
    assert "Traceback" not in err


def test_command_line_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--listen", "127.0.0.1:99999"])
    assert exit_info.value.code == 2
    assert "port 99999 is out of range" in capsys.readouterr().err
