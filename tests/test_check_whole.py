"""`runmcp-fast check` looks at the whole spec: every `$ref`, the OpenAPI schema,
operationIds and path parameters. What routing and validation do not need is a
warning (exit 0, 1 with --strict); the admin API answers a PUT with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from public_specs import SpecsUnavailable, spec_path
from servers import Harness, RawClient

from runmcp_fast.cli import main
from runmcp_fast.openapi import load_spec, load_spec_data
from runmcp_fast.openapi.whole import broken_refs, check_whole, with_whole_check

HEAD = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\n"
DANGLING = (
    HEAD + "paths:\n  /pets:\n    get:\n      operationId: listPets\n"
    "      responses:\n        '200': {$ref: '#/components/responses/Nope'}\n"
    "components:\n  responses:\n    Pets: {description: ok}\n"
)


def _write(tmp_path: Path, text: str, name: str = "api.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_a_dangling_response_ref_is_a_warning_with_its_pointer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, DANGLING)
    assert main(["check", path]) == 0
    captured = capsys.readouterr()
    assert f"ok: {path}: 1 routes, 1 warning" in captured.out
    assert _warnings(captured.err) == [
        f"warning: {path}#/paths/~1pets/get/responses/200/$ref: $ref"
        " '#/components/responses/Nope' points to nothing: no 'Nope' under"
        " /components/responses (check the spelling and the path)"
    ]


def test_strict_makes_warnings_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--strict", _write(tmp_path, DANGLING)]) == 1
    petstore = str(Path(__file__).parents[1] / "examples" / "petstore.yaml")
    assert main(["check", "--strict", petstore]) == 0  # a clean spec passes
    assert capsys.readouterr().err.count("warning: ") == 1


def test_duplicate_operation_ids_and_path_parameters_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = "responses: {'200': {description: ok}}"
    path = _write(
        tmp_path,
        HEAD + "paths:\n"
        f"  /a:\n    get: {{operationId: same, {ok}}}\n"
        f"  /b:\n    get: {{operationId: same, {ok}}}\n"
        f"  /c/{{id}}:\n    get: {{operationId: c, {ok}}}\n"
        "  /d:\n    get:\n      operationId: d\n"
        f"      parameters: [{{name: x, in: path, required: true, schema: {{type: string}}}}]\n"
        f"      {ok}\n",
    )
    assert main(["check", path]) == 0
    assert main(["check", "--strict", path]) == 1
    warnings = _warnings(capsys.readouterr().err)
    assert len(warnings) == 2 * 3  # twice the same three
    assert set(warnings) == {
        f"warning: {path}#/paths/~1b/get/operationId: operationId 'same' is already used by"
        " /paths/~1a/get; this one is renamed 'same_2' (give every operation its own"
        " operationId)",
        f"warning: {path}#/paths/~1c~1{{id}}/get: path parameter 'id' of '/c/{{id}}' is not"
        " declared; it is taken as a string (add {name: id, in: path, required: true,"
        " schema: {type: string}})",
        f"warning: {path}#/paths/~1d/get/parameters/0: path parameter 'x' is not in the path"
        " '/d'; ignored (remove it or add {x} to the path)",
    }


def test_the_openapi_schema_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        HEAD + "paths:\n  /a:\n    get:\n      responses: {'200': {content: {}}}\n"
        "components:\n  schemas:\n    Pet: {type: strin}\n",
    )
    assert main(["check", path]) == 0
    warnings = _warnings(capsys.readouterr().err)
    # The telling branch of OpenAPI's "a Reference or a Response" oneOf.
    assert warnings[0].startswith(
        f'warning: {path}#/paths/~1a/get/responses/200: "description" is a required property'
    )
    assert warnings[1].startswith(f'warning: {path}#/components/schemas/Pet/type: "strin"')
    assert "OpenAPI 3.0 schema" in warnings[1]


def test_a_ref_the_validators_need_stays_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        HEAD + "paths:\n  /a:\n    post:\n      requestBody:\n        content:\n"
        "          application/json: {schema: {$ref: '#/components/schemas/Nope'}}\n"
        "      responses: {'200': {description: ok}}\n",
    )
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "'#/components/schemas/Nope' points to nothing" in err
    assert "warning: " not in err  # said once, as the error it is


def test_refs_in_examples_and_extensions_are_data() -> None:
    spec = load_spec_data(
        {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {},
            "x-tool": {"$ref": "#/nowhere"},
            "components": {
                "schemas": {
                    "A": {
                        "type": "object",
                        "default": {"$ref": "#/nowhere"},
                        "examples": [{"$ref": "#/nowhere"}],
                        # A property may be called `default`: it is a schema.
                        "properties": {"default": {"$ref": "#/components/schemas/Gone"}},
                    }
                },
                "examples": {"e": {"value": {"$ref": "#/nowhere"}}},
            },
        }
    )
    problems = broken_refs(spec.documents)
    assert [p.pointer for p in problems] == ["/components/schemas/A/properties/default/$ref"]


def test_refs_into_other_files_are_followed(tmp_path: Path) -> None:
    _write(tmp_path, "Pet: {type: object}\n", "schemas.yaml")
    path = _write(
        tmp_path,
        HEAD + "paths: {}\ncomponents:\n  schemas:\n"
        "    Pet: {$ref: 'schemas.yaml#/Pet'}\n    Cat: {$ref: 'schemas.yaml#/Cat'}\n"
        "    Dog: {$ref: 'missing.yaml#/Dog'}\n",
    )
    problems = check_whole(load_spec(path))
    assert [(p.pointer, p.severity) for p in problems] == [
        ("/components/schemas/Cat/$ref", "warning"),
        ("/components/schemas/Dog/$ref", "warning"),
    ]
    assert "no 'Cat' under the top level in" in problems[0].message
    assert "can not read" in problems[1].message


def test_deep_checks_run_within_their_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        HEAD + "paths:\n  /a:\n    get:\n      parameters:\n"
        "        - {name: n, in: query, schema: {type: integer, default: nope}}\n"
        "      responses: {'200': {description: ok}}\n",
    )
    assert main(["check", "--deep", path]) == 0
    err = capsys.readouterr().err
    assert "openapi-spec-validator: " in err and "'nope' is not of type 'integer'" in err


@pytest.mark.specs
@pytest.mark.parametrize("name", ["github", "stripe", "kubernetes", "box", "twilio", "slack"])
def test_public_specs_still_load_whole(name: str) -> None:
    try:
        path = spec_path(name)
    except SpecsUnavailable as exc:
        pytest.skip(str(exc))
    spec = with_whole_check(load_spec(path))
    # Real specs may have warnings; none may stop them loading, and every one has a place.
    assert spec.operations
    assert all(p.severity == "warning" and p.file for p in spec.warnings)


def test_an_admin_put_answers_with_the_warnings(harness: Harness) -> None:
    gw = harness.gateway(
        {
            "services": [],
            "admin": {"address": "127.0.0.1:0", "token": "t"},
        }
    )
    _host, port = gw.gateway.admin_addresses[0].rsplit(":", 1)
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/pets": {
                "get": {"responses": {"200": {"$ref": "#/components/responses/Nope"}}},
            }
        },
    }
    body = json.dumps({"upstream": "http://127.0.0.1:9", "openapi": spec}).encode()
    head = (
        "PUT /admin/services/pets HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer t\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with RawClient(int(port)) as client:
        client.send(head.encode() + body)
        status, _, content = client.read_response()
    answer = json.loads(content)
    assert status == 201, answer  # accepted, not refused
    assert answer["operations"] == 1
    assert [(w["pointer"], w["severity"]) for w in answer["warnings"]] == [
        ("/paths/~1pets/get/responses/200/$ref", "warning")
    ]
    assert answer["warnings"][0]["file"] == "<service pets>"
    assert "points to nothing" in answer["warnings"][0]["message"]


def test_yaml_values_json_has_not_are_checked_as_their_json() -> None:
    # An unquoted date, a !!set: the schema check sees the JSON they would be.
    spec = load_spec_data(
        "openapi: 3.0.3\ninfo: {title: t, version: 2020-01-01}\npaths: {}\n"
        "components:\n  schemas:\n    A: {type: string, example: 2021-02-03}\n"
        "    B: {type: strin, enum: !!set {a, b}}\n",
        source="api.yaml",
    )
    assert [p.pointer for p in check_whole(spec)] == ["/components/schemas/B/type"]
