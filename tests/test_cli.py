"""The `runmcp-fast` command line: `routes`, `check` and `schema`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from runmcp_fast.cli import _is_gateway_config, main
from runmcp_fast.config import GatewayConfig, config_schema
from runmcp_fast.plugins.registry import registry_for
from runmcp_fast.plugins.schema import with_plugins
from runmcp_fast.problems import Problem

ROOT = Path(__file__).resolve().parents[1]
PETSTORE = str(ROOT / "examples" / "petstore.yaml")
SPECS = ROOT / "tests" / "specs"


def test_routes_prints_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["METHOD", "TEMPLATE", "OPERATION", "HOST", "WHEN"]
    assert lines[1].split() == ["GET", "/v1/owners", "listOwners", "*", "-"]
    assert ["DELETE", "/v1/pets/{petId}", "deletePet", "*", "-"] in [line.split() for line in lines]
    assert "9 routes from" in out
    assert "base path /v1" in out


def test_routes_with_host_and_base_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE, "--host", "pets.example.com", "--base-path", "/api"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["GET", "/api/pets/{petId}", "showPetById", "pets.example.com", "-"] in rows


def test_routes_tree_shows_the_trie(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", PETSTORE, "--tree"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("every host (9 routes)\n")
    assert "=> PUT /v1/pets/{petId} -> 'updatePet'" in out
    assert "{param}" in out


def test_bad_spec_is_reported_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", str(SPECS / "broken.yaml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "broken.yaml#/paths/pets: path 'pets' does not start with '/'" in err
    assert err.count("error: ") > 5


def test_missing_file_names_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "/nonexistent/spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/spec.yaml" in err
    assert "can not read the file" in err


def test_check_reports_each_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", PETSTORE, str(SPECS / "broken.yaml")]) == 1
    captured = capsys.readouterr()
    assert f"ok: {PETSTORE}: 9 routes" in captured.out
    assert "broken.yaml#/paths/~1pets/parameters/0: parameter has no 'in'" in captured.err


def test_check_passes_on_good_specs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", PETSTORE]) == 0
    assert capsys.readouterr().err == ""


def test_console_script_runs() -> None:
    # The real entry point, as the README's `make run` uses it.
    proc = subprocess.run(
        [sys.executable, "-m", "runmcp_fast.cli", "routes", PETSTORE],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "showPetById" in proc.stdout


# --- check on gateway config files ----------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _config(services: str, *, extra: str = "") -> str:
    return f"listeners: [{{address: 127.0.0.1:8080}}]\nservices:\n{services}{extra}"


PETSTORE_SERVICE = f"  - {{name: pets, upstream: http://127.0.0.1:8081, openapi: {PETSTORE}}}\n"


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_check_a_good_config(capsys: pytest.CaptureFixture[str]) -> None:
    example = str(ROOT / "examples" / "gateway.yaml")
    assert main(["check", example]) == 0
    captured = capsys.readouterr()
    assert captured.out == (
        "service 'petstore': 9 MCP tools at /v1/mcp\n"
        "service 'petstore': 9 operations validated (on), 0 partly by the fallback validator\n"
        f"ok: {example}: 1 service\n"
    )
    assert captured.err == ""


def test_check_counts_the_services_of_tenants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _config(
        PETSTORE_SERVICE + "  - {name: legacy, upstream: http://127.0.0.1:9000, prefix: /old}\n",
        extra=(
            "tenants:\n"
            "  - name: acme\n"
            "    hosts: [acme.example.com]\n"
            f"    services: [{{name: pets, upstream: http://127.0.0.1:8081, openapi: {PETSTORE}}}]\n"
        ),
    )
    path = _write(tmp_path, "gw.yaml", text)
    assert main(["check", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"ok: {path}: 3 services (1 tenant)"
    assert [line.split(":")[0] for line in out[:-1]] == [
        "service 'pets'",
        "service 'pets'",
        "service 'acme/pets'",
        "service 'acme/pets'",
    ]


def test_check_a_config_and_a_spec_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "gw.json", '{"listeners": [{"address": ":8080"}]}')
    assert main(["check", path, PETSTORE]) == 0
    assert capsys.readouterr().out == (
        f"ok: {path}: 0 services\n"
        "contract: 9 operations validated (on), 0 partly by the fallback validator\n"
        f"ok: {PETSTORE}: 9 routes\n"
    )


def test_check_lists_the_operations_the_fallback_validator_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = (
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /tags:\n    post:\n"
        "      operationId: setTags\n      requestBody:\n        content:\n"
        "          application/json:\n            schema:\n"
        "              {type: array, uniqueItems: true, items: {type: string}}\n"
        "      responses: {'204': {description: ok}}\n"
    )
    path = _write(tmp_path, "tags.yaml", spec)
    assert main(["check", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "contract: 1 operation validated (on), 1 partly by the fallback validator",
        "  fallback: setTags: uniqueItems (post-decode check) at /body (application/json) (schema /)",
        f"ok: {path}: 1 routes",
    ]


def test_check_broken_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "gw.yaml", "listeners:\n  - address: 127.0.0.1:8080\n services: []\n")
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _errors(captured.err) == [
        f"error: {path}: not valid YAML at line 3, column 2: expected <block end>, but found"
        " '<block mapping start>' (while parsing a block mapping) (fix the syntax)"
    ]


def test_check_reports_every_config_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _config(
        "  - {name: a, upstream: http://127.0.0.1:8081, prefix: /, upstrem: x}\n"
        "  - {name: a, upstream: http://127.0.0.1:8082, prefix: /b}\n",
        extra="limits: {max_headerz: 10}\n",
    )
    path = _write(tmp_path, "gw.yaml", text)
    assert main(["check", path]) == 1
    assert _errors(capsys.readouterr().err) == [
        f"error: {path}#/services/0/upstrem: unknown key 'upstrem' (did you mean 'upstream'?)",
        f"error: {path}#/services/1/name: duplicate service name 'a' (also /services/0)"
        " (give each service its own name; a name is unique among the services)",
        f"error: {path}#/limits/max_headerz: unknown key 'max_headerz'"
        " (did you mean 'max_headers'?)",
    ]


def test_check_a_bad_spec_ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _write(
        tmp_path,
        "api.yaml",
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /items:\n    get:\n"
        "      parameters: [{$ref: '#/components/parameters/Limt'}]\n"
        "      responses: {'200': {description: ok}}\n"
        "components:\n  parameters:\n    Limit: {name: limit, in: query, schema: {type: integer}}\n",
    )
    path = _write(
        tmp_path, "gw.yaml", _config("  - {name: a, upstream: http://h:1, openapi: api.yaml}\n")
    )
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = _errors(captured.err)
    assert f"{spec}#/paths/~1items/get/parameters/0/$ref" in errors[0]
    assert "did you mean 'Limit'?" in errors[0]
    assert any(f"{path}#/services/0/openapi" in line for line in errors)


def test_check_a_route_two_services_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _config(
        PETSTORE_SERVICE + f"  - {{name: copy, upstream: http://h:2, openapi: {PETSTORE}}}\n"
    )
    path = _write(tmp_path, "gw.yaml", text)
    assert main(["check", path]) == 1
    errors = _errors(capsys.readouterr().err)
    assert any("GET /v1/pets" in line and "conflicts" in line for line in errors), errors
    assert any(f"{path}#/services/1" in line for line in errors), errors


def test_check_prints_what_check_routes_finds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command's side only: errors fail, warnings are printed and pass.
    import runmcp_fast.snapshot

    found: list[Problem] = []
    calls: list[tuple[GatewayConfig, str]] = []

    def check_routes(
        config: GatewayConfig, source: str = "<config>", notes: list[str] | None = None
    ) -> list[Problem]:
        calls.append((config, source))
        return list(found)

    monkeypatch.setattr(runmcp_fast.snapshot, "check_routes", check_routes, raising=False)
    path = _write(tmp_path, "gw.yaml", _config(PETSTORE_SERVICE))
    found.append(Problem("api.yaml", "/paths", "an odd path", "fix it", "warning"))
    assert main(["check", path]) == 0
    captured = capsys.readouterr()
    assert captured.err == "warning: api.yaml#/paths: an odd path (fix it)\n"
    assert captured.out == f"ok: {path}: 1 service\n"
    assert calls[0][1] == path
    assert calls[0][0].services[0].name == "pets"

    found.append(Problem("api.yaml", "/paths/x", "a bad path", "", "error"))
    assert main(["check", path]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "warning: api.yaml#/paths: an odd path (fix it)",
        "error: api.yaml#/paths/x: a bad path",
    ]
    assert captured.out == ""


def test_check_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert main(["check", PETSTORE, missing, str(SPECS / "broken.yaml")]) == 2
    captured = capsys.readouterr()
    assert f"error: {missing}: can not read: No such file or directory" in captured.err
    assert f"ok: {PETSTORE}: 9 routes" in captured.out
    assert "broken.yaml#/paths/pets" in captured.err  # the other files are still checked


@pytest.mark.parametrize(
    ("text", "is_config"),
    [
        ("listeners: []\n", True),
        ("services: []\n", True),  # no listeners, but no openapi/swagger either
        ("", True),
        ("openapi: 3.0.3\npaths: {}\n", False),
        ("swagger: '2.0'\npaths: {}\n", False),
        ('"openapi": 3.1.0\n', False),
        ("{openapi: 3.1.0, paths: {}}\n", False),
        ("listeners: []\nopenapi: x\n", True),  # listeners wins
        ("listeners: []\nservices:\n  - openapi: {openapi: 3.1.0}\n", True),
        ('{"listeners": [], "services": [{"openapi": "a.yaml"}]}', True),
        ('{"openapi": "3.1.0", "paths": {}}', False),
        ('\ufeff{"swagger": "2.0"}', False),
        # Files that do not parse are told apart by their text.
        ("listeners: [\nopenapi: 3.0.0\n", True),
        ("services:\n  - name: a\n\n    openapi: 3.0.0\n  - [\n", True),  # not at the top
        ("openapi: 3.0.0\npaths: [\n", False),
        ('{"openapi": "3.0.0", "paths": {', False),
        ('{"listeners": [{"address": ":1"}], "services": [{"openapi": "a.yaml"', True),
    ],
)
def test_a_config_is_told_from_a_spec(text: str, is_config: bool) -> None:
    assert _is_gateway_config(text) is is_config


def test_check_a_broken_spec_is_still_a_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "api.yaml", "openapi: 3.0.3\npaths: [\n")
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}")
    assert "listeners" not in err


# --- schema ---------------------------------------------------------------------------


def _validate(
    instance: Any, schema: dict[str, Any], root: dict[str, Any], at: str = ""
) -> list[str]:
    """The errors of `instance` against the JSON Schema keywords `config_schema` uses.

    (jsonschema is not a dependency; this covers the subset msgspec emits.)
    """
    known = {
        "$ref", "$schema", "$defs", "title", "description", "default", "type", "properties",
        "required", "additionalProperties", "items", "anyOf", "enum", "pattern", "minimum",
        "exclusiveMinimum", "maximum", "minLength", "maxLength", "minItems",
    }  # fmt: skip
    assert set(schema) <= known, set(schema) - known
    errors: list[str] = []
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += _validate(instance, root["$defs"][name], root, at)
    if "anyOf" in schema and all(_validate(instance, o, root, at) for o in schema["anyOf"]):
        errors.append(f"{at}: matches none of anyOf")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{at}: not one of {schema['enum']}")
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
        "integer": int,
        "number": (int, float),
    }
    if "type" in schema:
        kind = kinds[schema["type"]]
        if not isinstance(instance, kind) or (
            isinstance(instance, bool) and schema["type"] in ("integer", "number")
        ):
            return [*errors, f"{at}: not {schema['type']}"]
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        errors += [f"{at}: no {key!r}" for key in schema.get("required", []) if key not in instance]
        for key, value in instance.items():
            if key in properties:
                errors += _validate(value, properties[key], root, f"{at}/{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}/{key}: not allowed")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors += _validate(item, schema["items"], root, f"{at}/{i}")
    if (
        isinstance(instance, str)
        and "pattern" in schema
        and not re.search(schema["pattern"], instance)
    ):
        errors.append(f"{at}: does not match {schema['pattern']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{at}: too short")
        if len(instance) > schema.get("maxLength", len(instance)):
            errors.append(f"{at}: too long")
    if isinstance(instance, list) and len(instance) < schema.get("minItems", 0):
        errors.append(f"{at}: too few items")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{at}: above the maximum")
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{at}: below the minimum")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append(f"{at}: not above the minimum")
    return errors


def _schema(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('{\n  "$schema": ')  # pretty printed
    schema: dict[str, Any] = json.loads(out)
    return schema


def test_schema_describes_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    schema = _schema(capsys)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "runmcp-fast gateway config"
    assert schema["description"]
    assert schema["type"] == "object"
    assert schema["required"] == ["listeners"]
    assert schema["additionalProperties"] is False
    assert "base_dir" not in schema["properties"]  # the loader's, not the file's
    assert set(schema["properties"]) == {
        f.name for f in msgspec.structs.fields(GatewayConfig) if f.name != "base_dir"
    }
    service = schema["$defs"]["ServiceConfig"]
    assert service["required"] == ["name", "upstream"]
    assert service["properties"]["host_header"]["enum"] == ["pass", "upstream"]
    assert "a list of replicas" in service["properties"]["upstream"]["description"]
    # Docstrings without their indentation.
    assert "\n    " not in service["description"]
    assert schema["$defs"]["PoolConfig"]["properties"]["fail_timeout"]["minimum"] == 0
    assert schema["properties"]["watch_interval"]["exclusiveMinimum"] == 0


def test_schema_validates_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    schema = _schema(capsys)
    text = (ROOT / "examples" / "gateway.yaml").read_text()
    assert _validate(yaml.safe_load(text), schema, schema) == []
    # And with every commented setting in.
    uncommented = re.sub(r"(?m)^( *)# ( *(?:- )?[a-z_-]+:(?: .*)?)$", r"\1\2", text)
    data = yaml.safe_load(uncommented)
    assert data["tenants"] and data["admin"] and data["plugins"] and data["consumers"]
    assert _validate(data, schema, schema) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"listners": []}, "/listners: not allowed"),
        (
            {"services": [{"name": "a", "upstream": "http://h", "prefx": "/"}]},
            "/services/0/prefx: not allowed",
        ),
        ({"tenants": [{"name": "a", "host": []}]}, "/tenants/0/host: not allowed"),
        (
            {"services": [{"name": "a", "upstream": 5}]},
            "/services/0/upstream: matches none of anyOf",
        ),
        ({"services": [{"upstream": "http://h"}]}, "/services/0: no 'name'"),
        ({"tenants": [{"name": "Acme"}]}, "/tenants/0/name: does not match"),
        ({"pool": {"fail_timeout": -1}}, "/pool/fail_timeout: below the minimum"),
        ({"base_dir": "/etc"}, "/base_dir: not allowed"),
        # Every installed plugin's settings are in it (plugins/schema.py).
        ({"plugins": {"key-auht": {}}}, "/plugins/key-auht: not allowed"),
        ({"plugins": {"key-auth": {"heder": "x"}}}, "/plugins/key-auth/heder: not allowed"),
        ({"plugins": {"key-auth": {"header": 1}}}, "/plugins/key-auth/header: not string"),
        (
            {"services": [{"name": "a", "upstream": "http://h", "plugins": {"nope": {}}}]},
            "/services/0/plugins/nope: not allowed",
        ),
        ({"consumers": [{"name": "a", "key-auth": {"kye": "x"}}]}, "/consumers/0/key-auth"),
    ],
)
def test_schema_rejects(
    capsys: pytest.CaptureFixture[str], change: dict[str, Any], error: str
) -> None:
    schema = _schema(capsys)
    data = {"listeners": [{"address": "127.0.0.1:8080"}], **change}
    assert any(e.startswith(error) for e in _validate(data, schema, schema)), _validate(
        data, schema, schema
    )


def test_schema_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gateway.schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    registry, _ = registry_for()
    assert json.loads(out.read_text()) == with_plugins(config_schema(), registry)
    assert main(["schema", "-o", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    assert "can not write" in capsys.readouterr().err


def test_routes_of_a_config_with_each_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        "gw.yaml",
        "listeners: [{address: 127.0.0.1:8080}]\n"
        "plugins: {key-auth: {}}\n"
        "consumers: [{name: alice, key-auth: {key: alice-key-123}}]\n"
        "services:\n"
        f"  - {{name: pets, upstream: http://127.0.0.1:8081, openapi: {PETSTORE},\n"
        "      operations: {listPets: {plugins: {key-auth: {disable: true}}}}}\n",
    )
    assert main(["routes", "-c", str(path), "--plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["METHOD", "TEMPLATE", "SERVICE", "OPERATION", "HOST"]
    by_operation = {line.split()[3]: line for line in lines[1:] if line.strip()}
    assert by_operation["listPets"].endswith("contract (contract 0)")
    assert by_operation["createPet"].endswith("key-auth (access 2500) > contract (contract 0)")
    # A plugin problem is reported with its pointer, as `check` does.
    bad = _write(
        tmp_path, "bad.yaml", Path(path).read_text().replace("key-auth: {}", "key-auht: {}")
    )
    assert main(["routes", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}#/plugins/key-auht: no plugin named 'key-auht' is installed" in err
    assert main(["check", str(bad)]) == 1
    assert "did you mean 'key-auth'?" in capsys.readouterr().err
