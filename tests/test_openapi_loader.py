"""Loading specs into the version-neutral model (runmcp_fast.openapi.loader and friends)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import yaml

from runmcp_fast.openapi import (
    Operation,
    Parameter,
    Problem,
    Spec,
    SpecError,
    load_spec,
    load_spec_data,
)
from runmcp_fast.openapi.operation_ids import derive
from runmcp_fast.openapi.servers import url_path

SPECS = Path(__file__).parent / "specs"
EXAMPLE = Path(__file__).parents[1] / "examples" / "petstore.yaml"


def spec_file(name: str) -> str:
    return str(SPECS / name)


def by_id(spec: Spec) -> dict[str, Operation]:
    return {op.operation_id: op for op in spec.operations}


def params(op: Operation) -> list[tuple[str, str, bool, str, bool]]:
    return [(p.name, p.location, p.required, p.style, p.explode) for p in op.parameters]


def load_yaml(text: str, **kwargs: Any) -> Spec:
    return load_spec_data(yaml.safe_load(text), source="t.yaml", **kwargs)


def problems_of(text: str) -> list[tuple[str, str, str]]:
    """(severity, pointer, message) of every problem loading `text` gives."""
    try:
        spec = load_yaml(text)
    except SpecError as exc:
        return [(p.severity, p.pointer, p.message) for p in exc.problems]
    return [(p.severity, p.pointer, p.message) for p in spec.warnings]


# --- the example and the fixtures, end to end -------------------------------


def test_example_petstore() -> None:
    spec = load_spec(EXAMPLE)
    assert (spec.version, spec.title, spec.base_path, spec.warnings) == (
        "3.0.3",
        "Petstore",
        "/v1",
        (),
    )
    assert [(o.operation_id, o.method, o.template) for o in spec.operations] == [
        ("listPets", "GET", "/v1/pets"),
        ("createPet", "POST", "/v1/pets"),
        ("showPetById", "GET", "/v1/pets/{petId}"),
        ("updatePet", "PUT", "/v1/pets/{petId}"),
        ("deletePet", "DELETE", "/v1/pets/{petId}"),
        ("listOwners", "GET", "/v1/owners"),
        ("showOwnerById", "GET", "/v1/owners/{ownerId}"),
        ("listOwnerPets", "GET", "/v1/owners/{ownerId}/pets"),
        ("adoptPet", "POST", "/v1/owners/{ownerId}/pets"),
    ]
    ops = by_id(spec)
    update = ops["updatePet"]
    assert update.pointer == "/paths/~1pets~1{petId}/put"
    assert update.tags == ("pets",)
    assert [(p.name, p.location, p.pointer) for p in update.parameters] == [
        ("petId", "path", "/components/parameters/PetId"),  # path-level, $ref'd
        ("If-Match", "header", "/paths/~1pets~1{petId}/put/parameters/0"),
    ]
    assert update.request_body_pointer == "/components/requestBodies/NewPet"
    assert update.request_body is not None and update.request_body["required"] is True


def test_openapi_30() -> None:
    spec = load_spec(spec_file("v30.yaml"))
    assert (spec.version, spec.title, spec.base_path, spec.warnings) == (
        "3.0.3",
        "Thirty",
        "/v2",
        (),
    )
    assert [(o.operation_id, o.method, o.template) for o in spec.operations] == [
        ("listItems", "GET", "/v2/items"),
        ("post_items", "POST", "/v2/items"),  # no operationId: derived
        ("getItem", "GET", "/v2/items/{itemId}"),
        ("deleteItem", "DELETE", "/admin/items/{itemId}"),  # operation-level servers
        ("getLegacy", "GET", "/old/legacy/{name}"),  # path-level servers, //host/path
        ("get_labels_label_id", "GET", "/v2/labels/{label-id}"),
    ]
    ops = by_id(spec)
    listing = ops["listItems"]
    assert (listing.summary, listing.description, listing.tags) == (
        "List items",
        "All the items.",
        ("items", "read"),
    )
    assert params(listing) == [
        ("q", "query", False, "form", True),
        ("ids", "query", False, "pipeDelimited", False),
        ("X-Trace", "header", False, "simple", False),
        ("session", "cookie", False, "form", True),
        ("filter", "query", False, "form", True),
    ]
    content_param = listing.parameters[4]
    assert (content_param.media_type, content_param.schema) == (
        "application/json",
        {"type": "object"},
    )

    # Operation-level parameters replace path-level ones of the same name and
    # location, in place; header names compare case-insensitively.
    get = ops["getItem"]
    assert [(p.name, p.location, p.required, p.pointer) for p in get.parameters] == [
        ("itemId", "path", True, "/components/parameters/ItemId"),
        ("verbose", "query", True, "/paths/~1items~1{itemId}/get/parameters/0"),
        ("x-tenant", "header", False, "/paths/~1items~1{itemId}/get/parameters/1"),
    ]
    assert get.parameters[0].schema == {"type": "integer", "format": "int64"}
    # A path item's summary and description apply to its operations.
    assert (get.summary, get.description) == ("One item", "An item, by id.")
    delete = ops["deleteItem"]
    assert delete.deprecated is True
    assert [(p.name, p.pointer) for p in delete.parameters] == [
        ("itemId", "/components/parameters/ItemId"),
        ("verbose", "/paths/~1items~1{itemId}/parameters/1"),
        ("X-Tenant", "/paths/~1items~1{itemId}/parameters/2"),
    ]

    post = ops["post_items"]
    assert post.request_body == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
    }
    assert (post.request_body_file, post.request_body_pointer) == (
        spec_file("v30.yaml"),
        "/components/requestBodies/Item",
    )
    assert ops["getLegacy"].request_body is None


def test_openapi_31_json() -> None:
    spec = load_spec(spec_file("v31.json"))
    assert (spec.version, spec.base_path, spec.warnings) == ("3.1.0", "/api/v3", ())
    assert [(o.operation_id, o.method, o.template) for o in spec.operations] == [
        ("getThing", "GET", "/api/v3/things/{id}"),
        ("putThing", "PUT", "/api/v3/things/{id}"),
        ("getReport", "GET", "/api/v3/reports/get(period='{period}')"),
    ]
    ops = by_id(spec)
    assert ops["getThing"].parameters[0].schema == {}  # `schema: true`
    assert ops["putThing"].parameters[0].schema == {"type": ["string", "null"]}
    assert ops["putThing"].request_body_pointer == "/paths/~1things~1{id}/put/requestBody"


def test_openapi_31_without_paths() -> None:
    spec = load_spec_data({"openapi": "3.1.0", "webhooks": {}})
    assert spec.operations == ()


def test_swagger_20() -> None:
    spec = load_spec(spec_file("swagger.yaml"))
    assert (spec.version, spec.title, spec.base_path, spec.warnings) == (
        "2.0",
        "Swagger pets",
        "/api",
        (),
    )
    assert [(o.operation_id, o.method, o.template) for o in spec.operations] == [
        ("findPets", "GET", "/api/pets"),
        ("addPet", "POST", "/api/pets"),
        ("updatePetForm", "PUT", "/api/pets/{id}"),
        ("patchPet", "PATCH", "/api/pets/{id}"),
        ("uploadPhoto", "POST", "/api/pets/{id}/photo"),
    ]
    ops = by_id(spec)
    find = ops["findPets"]
    # collectionFormat: multi -> form+explode, csv (the default) -> form without explode.
    assert params(find) == [
        ("tags", "query", False, "form", True),
        ("ids", "query", False, "form", False),
        ("status", "query", False, "pipeDelimited", False),
        ("limit", "query", False, "form", False),
    ]
    assert find.parameters[1].schema == {
        "type": "array",
        "items": {"type": "integer", "format": "int64"},
    }
    assert find.parameters[3].schema == {"type": "integer", "minimum": 1, "default": 20}
    assert find.parameters[3].pointer == "/parameters/Limit"

    # in: body -> the request body, under every media type of the root's consumes.
    add = ops["addPet"]
    assert add.parameters == ()
    assert add.request_body == {
        "content": {
            "application/json": {"schema": {"$ref": "#/definitions/Pet"}},
            "application/xml": {"schema": {"$ref": "#/definitions/Pet"}},
        },
        "required": True,
        "description": "The pet to add",
    }
    assert add.request_body_pointer == "/paths/~1pets/post/parameters/0"
    patch = ops["patchPet"]  # the operation's own consumes win
    assert patch.request_body == {
        "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
        "required": False,
    }

    # in: formData -> one object schema under the form media type.
    form = ops["updatePetForm"]
    assert params(form) == [("id", "path", True, "simple", False)]
    assert form.request_body == {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "New name"},
                        "status": {"type": "string", "enum": ["available", "sold"]},
                    },
                    "required": ["name"],
                }
            }
        },
        "required": True,
    }
    assert form.request_body_pointer == "/paths/~1pets~1{id}/put/parameters"
    # A file among the form parameters and no form type in consumes: multipart.
    upload = ops["uploadPhoto"]
    assert upload.request_body == {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "caption": {"type": "string"},
                    },
                    "required": ["file"],
                }
            }
        },
        "required": True,
    }


def test_swagger_form_without_file_defaults_to_urlencoded() -> None:
    spec = load_yaml(
        """
swagger: "2.0"
paths:
  /login:
    post:
      parameters:
        - {name: user, in: formData, type: string}
"""
    )
    body = spec.operations[0].request_body
    assert body is not None
    assert list(body["content"]) == ["application/x-www-form-urlencoded"]
    assert body["required"] is False


# --- base paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://api.example.com/v1", "/v1"),
        ("https://api.example.com/v1/", "/v1"),
        ("https://api.example.com", ""),
        ("https://api.example.com/", ""),
        ("https://h:8443/a/b?x=1#frag", "/a/b"),
        ("//kubernetes.local", ""),
        ("//host/path/", "/path"),
        ("/api/v3", "/api/v3"),
        ("api/v3", "/api/v3"),
        ("./v1", "/v1"),
        ("/", ""),
        ("", ""),
        (".", ""),
    ],
)
def test_url_path(url: str, path: str) -> None:
    assert url_path(url) == path


@pytest.mark.parametrize(
    ("servers", "base"),
    [
        ([{"url": "https://graph.microsoft.com/v1.0"}], "/v1.0"),
        ([{"url": "/api/v3"}, {"url": "/other"}], "/api/v3"),  # the first server counts
        ([], ""),
        (None, ""),
        (
            [
                {
                    "url": "{scheme}://{host}/{base}/x",
                    "variables": {
                        "scheme": {"default": "https"},
                        "host": {"default": "h"},
                        "base": {"default": "v2"},
                    },
                }
            ],
            "/v2/x",
        ),
        # A variable without default in the host is harmless.
        ([{"url": "http://localhost:{port}/v2"}], "/v2"),
        ([{"url": "http://{host}/{v}", "variables": {"v": {"default": 3}}}], "/3"),
    ],
)
def test_servers_base_path(servers: Any, base: str) -> None:
    data: dict[str, Any] = {"openapi": "3.0.3", "paths": {"/x": {"get": {}}}}
    if servers is not None:
        data["servers"] = servers
    spec = load_spec_data(data)
    assert spec.base_path == base
    assert spec.operations[0].template == base + "/x"


@pytest.mark.parametrize(
    ("base_path", "expected"),
    [
        (None, ""),
        ("/api", "/api"),
        ("/", ""),
        ("/api/", "/api"),
        ("", ""),
        ("basepath", "/basepath"),
    ],
)
def test_swagger_base_path(base_path: str | None, expected: str) -> None:
    data: dict[str, Any] = {"swagger": "2.0", "paths": {}}
    if base_path is not None:
        data["basePath"] = base_path
    assert load_spec_data(data).base_path == expected


@pytest.mark.parametrize(
    ("override", "base"),
    [("/gw/", "/gw"), ("gw", "/gw"), ("/gw/x", "/gw/x"), ("", ""), ("/", "")],
)
def test_base_path_override(override: str, base: str) -> None:
    spec = load_spec(spec_file("v30.yaml"), base_path=override)
    assert spec.base_path == base
    # It replaces every servers entry, path-level and operation-level ones too.
    assert [op.template for op in spec.operations] == [
        f"{base}/items",
        f"{base}/items",
        f"{base}/items/{{itemId}}",
        f"{base}/items/{{itemId}}",
        f"{base}/legacy/{{name}}",
        f"{base}/labels/{{label-id}}",
    ]


def test_base_path_override_on_swagger() -> None:
    spec = load_spec(spec_file("swagger.yaml"), base_path="/v9")
    assert spec.operations[0].template == "/v9/pets"


# --- parameters -------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "given", "style", "explode"),
    [
        ("query", {}, "form", True),
        ("cookie", {}, "form", True),
        ("path", {}, "simple", False),
        ("header", {}, "simple", False),
        ("query", {"style": "deepObject"}, "deepObject", False),
        ("query", {"explode": False}, "form", False),
        ("path", {"style": "label", "explode": True}, "label", True),
        ("path", {"style": "matrix"}, "matrix", False),
        ("query", {"style": "spaceDelimited"}, "spaceDelimited", False),
    ],
)
def test_default_style_and_explode(
    location: str, given: dict[str, Any], style: str, explode: bool
) -> None:
    path = "/x/{p}" if location == "path" else "/x"
    param = {"name": "p", "in": location, "required": True, "schema": {"type": "string"}, **given}
    spec = load_spec_data({"openapi": "3.0.3", "paths": {path: {"get": {"parameters": [param]}}}})
    (p,) = spec.operations[0].parameters
    assert (p.style, p.explode) == (style, explode)


@pytest.mark.parametrize(
    ("collection_format", "location", "style", "explode"),
    [
        (None, "query", "form", False),
        ("csv", "query", "form", False),
        ("csv", "path", "simple", False),
        ("csv", "header", "simple", False),
        ("multi", "query", "form", True),
        ("ssv", "query", "spaceDelimited", False),
        ("pipes", "query", "pipeDelimited", False),
        ("tsv", "query", "tabDelimited", False),
    ],
)
def test_swagger_collection_formats(
    collection_format: str | None, location: str, style: str, explode: bool
) -> None:
    param: dict[str, Any] = {"name": "p", "in": location, "required": True, "type": "array"}
    param["items"] = {"type": "string"}
    if collection_format:
        param["collectionFormat"] = collection_format
    path = "/x/{p}" if location == "path" else "/x"
    spec = load_spec_data({"swagger": "2.0", "paths": {path: {"get": {"parameters": [param]}}}})
    (p,) = spec.operations[0].parameters
    assert (p.style, p.explode) == (style, explode)


def test_path_parameters_are_required_even_when_unsaid() -> None:
    spec = load_yaml(
        """
openapi: 3.0.3
paths:
  /a/{id}:
    get:
      parameters: [{name: id, in: path, schema: {type: string}}]
"""
    )
    assert spec.operations[0].parameters[0].required is True


def test_template_parameter_without_declaration_gets_one() -> None:
    spec = load_yaml("openapi: 3.0.3\npaths:\n  /a/{id}/b/{n}:\n    get: {}\n")
    assert spec.operations[0].parameters == (
        Parameter(
            "id",
            "path",
            True,
            {"type": "string"},
            "simple",
            False,
            "/paths/~1a~1{id}~1b~1{n}/get",
            "t.yaml",
        ),
        Parameter(
            "n",
            "path",
            True,
            {"type": "string"},
            "simple",
            False,
            "/paths/~1a~1{id}~1b~1{n}/get",
            "t.yaml",
        ),
    )


def test_shared_parameters_are_one_object() -> None:
    # Graph has 22k operations over the same few dozen parameters: one Parameter each.
    spec = load_spec(EXAMPLE)
    ops = by_id(spec)
    assert ops["listPets"].parameters[0] is ops["listOwners"].parameters[0]
    assert ops["showPetById"].parameters[0] is ops["deletePet"].parameters[0]


# --- operation ids ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation_id"),
    [
        ("GET", "/pets/{petId}", "get_pets_petId"),
        ("POST", "/", "post"),
        ("DELETE", "/v1/{name}:cancel", "delete_v1_name_cancel"),
        ("GET", "/reports/get(period='{period}')", "get_reports_get_period_period"),
        ("GET", "/a-b/c.d/", "get_a_b_c_d"),
        ("PUT", "/snake_case/{user_id}", "put_snake_case_user_id"),
        ("GET", "/café", "get_caf"),
    ],
)
def test_derived_operation_ids(method: str, path: str, operation_id: str) -> None:
    assert derive(method, path) == operation_id


def test_operation_ids_are_unique() -> None:
    spec = load_yaml(
        """
openapi: 3.0.3
paths:
  /a:
    get: {operationId: dup}
    put: {operationId: dup}
    post: {operationId: get_b}
  /b:
    get: {}
    put: {operationId: dup}
  /a-b:
    get: {}
  /a_b:
    get: {}
  /c:
    get: {operationId: dup_2}
"""
    )
    assert [op.operation_id for op in spec.operations] == [
        "dup",
        "dup_3",  # dup_2 is the spec's own id of GET /c: kept for it
        "get_b",
        "get_b_2",  # derived, and get_b is taken by an explicit id
        "dup_4",
        "get_a_b",
        "get_a_b_2",
        "dup_2",
    ]
    assert [(w.pointer, w.message) for w in spec.warnings] == [
        (
            "/paths/~1a/put/operationId",
            "operationId 'dup' is already used by /paths/~1a/get; this one is renamed 'dup_3'",
        ),
        (
            "/paths/~1b/put/operationId",
            "operationId 'dup' is already used by /paths/~1a/get; this one is renamed 'dup_4'",
        ),
    ]


# --- warnings: real specs have them, they do not fail the load -------------


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a/{id}:\n    get: {}\n",
            [
                (
                    "/paths/~1a~1{id}/get",
                    "path parameter 'id' of '/a/{id}' is not declared; it is taken as a string",
                )
            ],
            id="template-param-not-declared",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters:\n"
            "        - {name: id, in: path, required: true}\n",
            [
                (
                    "/paths/~1a/get/parameters/0",
                    "path parameter 'id' is not in the path '/a'; ignored",
                )
            ],
            id="declared-path-param-not-in-template",
        ),
        pytest.param(
            "openapi: 3.0\npaths: {}\n",
            [("/openapi", "openapi is the number 3.0; quote it")],
            id="version-as-number",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    gett: {}\n    x-ok: 1\n",
            [("/paths/~1a/gett", "unknown key 'gett' in a path item; ignored")],
            id="unknown-path-item-key",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get: {operationId: 7}\n",
            [
                (
                    "/paths/~1a/get/operationId",
                    "operationId is a number, not a string; one is derived",
                )
            ],
            id="operation-id-not-a-string",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters:\n"
            "        - {name: q, in: query}\n        - {name: q, in: query}\n",
            [
                (
                    "/paths/~1a/get/parameters/1",
                    "parameter 'q' in query is listed twice; the first is used",
                )
            ],
            id="duplicate-parameter",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters:\n"
            "        - {name: q, in: query, schema: string}\n",
            [("/paths/~1a/get/parameters/0/schema", "schema is a string, not a mapping; ignored")],
            id="schema-not-a-mapping",
        ),
        pytest.param(
            "swagger: '2.0'\nbasePath: api\npaths: {}\n",
            [("/basePath", "basePath 'api' does not start with '/'; one is added")],
            id="swagger-base-path-without-slash",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n  x-ext: {}\n  /b:\n    $ref: '#/x-b'\nx-b: {get: {}}\n",
            [],
            id="empty-path-item-extension-and-ref",
        ),
    ],
)
def test_warnings(text: str, warnings: list[tuple[str, str]]) -> None:
    spec = load_yaml(text)
    assert [(w.pointer, w.message) for w in spec.warnings] == warnings
    assert all(w.severity == "warning" and w.file == "t.yaml" for w in spec.warnings)


# --- errors: each kind, with its exact pointer ------------------------------


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        pytest.param(
            "info: {title: x}\npaths: {}\n",
            [("", "no 'openapi' (or 'swagger') version")],
            id="no-version",
        ),
        pytest.param(
            "openapi: 4.0.0\npaths: {}\n",
            [("/openapi", "unsupported OpenAPI version '4.0.0'")],
            id="unknown-openapi-version",
        ),
        pytest.param(
            "openapi: '2.0'\npaths: {}\n",
            [("/openapi", "unsupported OpenAPI version '2.0'")],
            id="openapi-2.0",
        ),
        pytest.param(
            "swagger: '1.2'\npaths: {}\n",
            [("/swagger", "unsupported Swagger version '1.2'")],
            id="unknown-swagger-version",
        ),
        pytest.param(
            "openapi: [3]\npaths: {}\n",
            [("/openapi", "openapi is a list, not a string")],
            id="version-not-a-string",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths: [a]\n",
            [("/paths", "paths is a list, not a mapping")],
            id="paths-list",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n",
            [("/paths", "paths is null, not a mapping")],
            id="paths-null",
        ),
        pytest.param("openapi: 3.0.3\n", [("", "paths is missing")], id="paths-missing"),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  pets: {}\n",
            [("/paths/pets", "path 'pets' does not start with '/'")],
            id="path-without-slash",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a/{x}{y}:\n    get: {}\n",
            [
                (
                    "/paths/~1a~1{x}{y}",
                    "the router refuses this path: template '/a/{x}{y}': "
                    "parameters 'x' and 'y' touch; put static text between them",
                )
            ],
            id="template-params-touch",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a/{}:\n    get: {}\n",
            [("/paths/~1a~1{}", "the router refuses this path: ")],
            id="template-empty-param",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a/{b:\n    get: {}\n",
            [("/paths/~1a~1{b", "the router refuses this path: ")],
            id="template-unbalanced",
        ),
        pytest.param(
            "openapi: 3.0.3\nservers: [{url: /v1/./x}]\npaths:\n  /a:\n    get: {}\n",
            [("/paths/~1a", "the router refuses this path: ")],
            id="template-dot-segment-from-servers",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a: [get]\n",
            [("/paths/~1a", "path item is a list, not a mapping")],
            id="path-item-not-a-mapping",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get: yes\n",
            [("/paths/~1a/get", "operation is a boolean, not a mapping")],
            id="operation-not-a-mapping",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: {name: a}\n",
            [("/paths/~1a/get/parameters", "parameters is a mapping, not a list")],
            id="parameters-not-a-list",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [q]\n",
            [("/paths/~1a/get/parameters/0", "parameter is a string, not a mapping")],
            id="parameter-not-a-mapping",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    parameters: [{in: query}]\n    get: {}\n",
            [("/paths/~1a/parameters/0", "parameter has no 'name'")],
            id="parameter-without-name",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [{name: q}]\n",
            [("/paths/~1a/get/parameters/0", "parameter has no 'in'")],
            id="parameter-without-in",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [{}]\n",
            [
                ("/paths/~1a/get/parameters/0", "parameter has no 'name'"),
                ("/paths/~1a/get/parameters/0", "parameter has no 'in'"),
            ],
            id="parameter-without-name-and-in",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [{name: q, in: querystring}]\n",
            [("/paths/~1a/get/parameters/0/in", "parameter 'in' is 'querystring'")],
            id="parameter-bad-in",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [{name: b, in: body}]\n",
            [("/paths/~1a/get/parameters/0/in", "parameter 'in' is 'body'")],
            id="body-parameter-in-openapi-3",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a/{id}:\n    get:\n"
            "      parameters: [{name: id, in: path, required: false}]\n",
            [
                (
                    "/paths/~1a~1{id}/get/parameters/0/required",
                    "path parameter 'id' has required: false",
                )
            ],
            id="path-parameter-not-required",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    post:\n      requestBody: [x]\n",
            [("/paths/~1a/post/requestBody", "requestBody is a list, not a mapping")],
            id="request-body-not-a-mapping",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    post:\n      requestBody: {required: true}\n",
            [("/paths/~1a/post/requestBody", "requestBody has no 'content' mapping")],
            id="request-body-without-content",
        ),
        pytest.param(
            "openapi: 3.0.3\nservers: {url: /v1}\npaths: {}\n",
            [("/servers", "servers is a mapping, not a list")],
            id="servers-not-a-list",
        ),
        pytest.param(
            "openapi: 3.0.3\nservers: [{description: x}]\npaths: {}\n",
            [("/servers/0", "server has no url")],
            id="server-without-url",
        ),
        pytest.param(
            "openapi: 3.0.3\nservers: [{url: 'https://h/{v}'}]\npaths: {}\n",
            [("/servers/0/url", "server variable 'v' in the URL's path has no default")],
            id="server-variable-without-default",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    servers: [{url: 'https://h/{v}'}]\n    get: {}\n",
            [("/paths/~1a/servers/0/url", "server variable 'v' in the URL's path has no default")],
            id="path-level-server-variable-without-default",
        ),
        pytest.param(
            "swagger: '2.0'\nbasePath: [x]\npaths: {}\n",
            [("/basePath", "basePath is a list, not a string")],
            id="swagger-base-path-not-a-string",
        ),
        pytest.param(
            "swagger: '2.0'\npaths:\n  /a:\n    post:\n      parameters:\n"
            "        - {name: a, in: body, schema: {}}\n        - {name: b, in: body, schema: {}}\n",
            [("/paths/~1a/post/parameters/1", "a second body parameter 'b' (the first is 'a')")],
            id="swagger-two-bodies",
        ),
        pytest.param(
            "swagger: '2.0'\npaths:\n  /a:\n    post:\n      parameters:\n"
            "        - {name: a, in: body, schema: {}}\n        - {name: b, in: formData, type: string}\n",
            [("/paths/~1a/post/parameters", "the operation has both body and formData parameters")],
            id="swagger-body-and-form",
        ),
        pytest.param(
            "swagger: '2.0'\npaths:\n  /a:\n    get:\n      parameters: [{name: c, in: cookie}]\n",
            [("/paths/~1a/get/parameters/0/in", "parameter 'in' is 'cookie'")],
            id="swagger-has-no-cookie-parameters",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters: [{$ref: '#/nope'}]\n",
            [
                (
                    "/paths/~1a/get/parameters/0/$ref",
                    "$ref '#/nope' points to nothing: no 'nope' under the top level",
                )
            ],
            id="dangling-parameter-ref",
        ),
        pytest.param(
            "openapi: 3.0.3\npaths:\n  /a:\n    $ref: '#/x'\nx: [1]\n",
            [("/x", "path item is a list, not a mapping")],
            id="path-item-ref-to-a-list",
        ),
    ],
)
def test_errors(text: str, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(text)
    got = [(p.pointer, p.message) for p in info.value.problems if p.severity == "error"]
    assert len(got) == len(errors), got
    for (pointer, message), (want_pointer, want_message) in zip(got, errors, strict=True):
        assert pointer == want_pointer
        assert message.startswith(want_message)
    assert all(p.file == "t.yaml" and p.hint for p in info.value.errors)


def test_every_problem_is_collected() -> None:
    path = spec_file("broken.yaml")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [(p.severity, p.file, p.pointer) for p in info.value.problems] == [
        ("error", path, "/servers/0/url"),
        ("error", path, "/paths/pets"),
        ("error", path, "/paths/~1pets/parameters/0"),
        ("error", path, "/paths/~1pets/get/parameters/0"),
        ("error", path, "/paths/~1pets/get/parameters/1/in"),
        ("error", path, "/paths/~1pets/post"),
        ("error", path, "/paths/~1pets~1{id}/get/parameters/0/required"),
        ("error", path, "/paths/~1pets~1{id}/get/requestBody"),
        ("error", path, "/paths/~1a~1{x}{y}"),
        ("error", path, "/paths/~1dots~1..~1up"),
        ("error", path, "/paths/~1params-not-a-list/parameters"),
        ("error", path, "/paths/~1item-not-a-mapping"),
        # Valid OpenAPI, routed: the repeat gets a name of its own (and is undeclared).
        ("warning", path, "/paths/~1files~1{name}~1{name}/get"),
        ("warning", path, "/paths/~1files~1{name}~1{name}/get"),
        ("warning", path, "/paths/~1files~1{name}~1{name}/get"),
    ]
    lines = str(info.value).splitlines()
    assert len(lines) == 15
    assert lines[2] == (
        f"{path}#/paths/~1pets/parameters/0: parameter has no 'in' "
        "(add in: query|path|header|cookie)"
    )


def test_errors_come_with_the_warnings_found_on_the_way() -> None:
    with pytest.raises(SpecError) as info:
        load_yaml("openapi: 3.0.3\npaths:\n  /a/{id}:\n    get: {}\n  b: {}\n")
    assert [(p.severity, p.pointer) for p in info.value.problems] == [
        ("error", "/paths/b"),
        ("warning", "/paths/~1a~1{id}/get"),
    ]
    assert str(info.value).splitlines()[1].startswith("warning: t.yaml#/paths/~1a~1{id}/get: ")
    assert len(info.value.errors) == 1 and len(info.value.warnings) == 1


def test_spec_error_pickles() -> None:
    error = SpecError([Problem("a.yaml", "/paths", "bad", "fix")])
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems and str(again) == "a.yaml#/paths: bad (fix)"


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (
            Problem(
                "petstore.yaml",
                "/paths/~1pets/get/parameters/0",
                "parameter has no 'in'",
                "add in: query|path|header|cookie",
            ),
            "petstore.yaml#/paths/~1pets/get/parameters/0: parameter has no 'in' "
            "(add in: query|path|header|cookie)",
        ),
        (Problem("a.json", "", "the document is empty"), "a.json: the document is empty"),
        (Problem("a.json", "/x", "odd", severity="warning"), "a.json#/x: odd"),
    ],
)
def test_problem_str(problem: Problem, text: str) -> None:
    assert str(problem) == text


# --- the Spec object ------------------------------------------------------------


def test_spec_encodes_without_its_documents() -> None:
    spec = load_spec(EXAMPLE)
    encoded = msgspec.json.decode(msgspec.json.encode(spec))
    assert set(encoded) == {
        "source",
        "version",
        "title",
        "base_path",
        "operations",
        "warnings",
        "groups",
    }
    assert encoded["operations"][0]["operation_id"] == "listPets"
    again = msgspec.json.decode(msgspec.json.encode(spec.operations[0]), type=Operation)
    assert again == spec.operations[0]


def test_spec_reaches_the_documents() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.root["info"]["title"] == "Petstore"
    op = by_id(spec)["createPet"]
    assert spec.node(op.pointer, file=op.file)["operationId"] == "createPet"
    resolved = spec.resolve("#/components/schemas/Pet")
    assert (resolved.file, resolved.pointer) == (str(EXAMPLE), "/components/schemas/Pet")
    assert "allOf" in resolved.value
    chained = spec.deref({"$ref": "#/components/parameters/Limit"})
    assert chained.value["name"] == "limit"


def test_a_copied_spec_says_where_its_documents_went() -> None:
    copied = msgspec.structs.replace(load_spec(EXAMPLE), title="x")
    with pytest.raises(LookupError, match="load it again"):
        copied.resolve("#/components")


def test_spec_is_frozen() -> None:
    spec = load_spec(EXAMPLE)
    with pytest.raises(AttributeError):
        spec.title = "x"  # type: ignore[misc]


def test_inline_data_is_not_modified() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    before = copy.deepcopy(data)
    load_spec_data(data)
    load_spec_data(orjson.dumps(data), source="petstore.json")
    assert data == before


def test_inline_text() -> None:
    spec = load_spec_data(EXAMPLE.read_text(), source="petstore.yaml")
    assert spec.source == "petstore.yaml" and len(spec.operations) == 9
