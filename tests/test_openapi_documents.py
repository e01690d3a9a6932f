"""Reading files, JSON pointers and `$ref` resolution (runmcp_fast.openapi.documents)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from runmcp_fast.openapi import Problem, SpecError, load_spec, load_spec_data
from runmcp_fast.openapi import documents as docs_module
from runmcp_fast.openapi.documents import Document, Documents, parse
from runmcp_fast.openapi.pointers import escape, join, split
from runmcp_fast.problems import DocumentError, describe

SPECS = Path(__file__).parent / "specs"


def spec_file(name: str) -> str:
    return str(SPECS / name)


def errors_of(exc: SpecError) -> list[tuple[str, str, str]]:
    return [(p.file, p.pointer, p.message) for p in exc.problems if p.severity == "error"]


# --- JSON pointers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("pets", "pets"),
        ("/pets/{id}", "~1pets~1{id}"),
        ("a~b", "a~0b"),
        ("~1", "~01"),  # `~` first, or `~1` would come back as `/`
        (200, "200"),
        ("", ""),
    ],
)
def test_escape(token: object, escaped: str) -> None:
    assert escape(token) == escaped


@pytest.mark.parametrize(
    ("pointer", "tokens", "joined"),
    [
        ("", ("paths", "/pets", "get"), "/paths/~1pets/get"),
        ("/paths/~1pets/get", ("parameters", 0), "/paths/~1pets/get/parameters/0"),
        ("/components", ("a~/b",), "/components/a~0~1b"),
        ("/x", (), "/x"),
    ],
)
def test_join(pointer: str, tokens: tuple[object, ...], joined: str) -> None:
    assert join(pointer, *tokens) == joined


@pytest.mark.parametrize(
    ("fragment", "tokens"),
    [
        ("", []),
        ("/", [""]),
        ("/paths/~1pets~1{id}/get", ["paths", "/pets/{id}", "get"]),
        ("/paths/~1pets~1%7Bid%7D", ["paths", "/pets/{id}"]),  # a URI fragment: %-decoded
        ("/a~01", ["a~1"]),
        ("/a%20b", ["a b"]),
    ],
)
def test_split(fragment: str, tokens: list[str]) -> None:
    assert split(fragment) == tokens


def test_split_refuses_an_anchor() -> None:
    with pytest.raises(ValueError, match="not a JSON pointer"):
        split("Pet")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({}, "a mapping"),
        ([], "a list"),
        ("x", "a string"),
        (1, "a number"),
        (1.5, "a number"),
        (True, "a boolean"),
        (None, "null"),
        (b"x", "a bytes"),
    ],
)
def test_describe(value: object, words: str) -> None:
    assert describe(value) == words


# --- parsing ---------------------------------------------------------------


def test_yaml_uses_libyaml_when_available() -> None:
    expected = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert docs_module._YAML_LOADER is expected


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("a.json", b'{"a": 1}', {"a": 1}),
        ("a.yaml", b"a: 1\n", {"a": 1}),
        ("a.yml", b"{a: 1}", {"a": 1}),  # flow YAML, not JSON
        ("<inline>", b' {"a": [1]}', {"a": [1]}),  # sniffed as JSON
        ("<inline>", "a: [1]", {"a": [1]}),  # str is fine too
        ("a.json", b'\xef\xbb\xbf{"a": 1}', {"a": 1}),  # a BOM is dropped
        # YAML reads `200:` as an int; refs find it by its text anyway (see below).
        ("a.yaml", b"r:\n  200: {description: ok}\n", {"r": {200: {"description": "ok"}}}),
    ],
)
def test_parse(name: str, data: bytes | str, expected: object) -> None:
    assert parse(data, name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "invalid/bad-syntax.yaml",
            "invalid YAML at line 8, column 17: mapping values are not allowed in this context",
        ),
        (
            "invalid/bad-syntax.json",
            "invalid JSON at line 4, column 24: trailing comma is not allowed",
        ),
        ("invalid/list.yaml", "the document is a list, not a mapping"),
        ("invalid/empty.yaml", "the document is empty"),
        ("does-not-exist.yaml", "can not read the file: No such file or directory"),
        ("split", "can not read the file: Is a directory"),
    ],
)
def test_unloadable_files_name_the_file(name: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(name))
    assert errors_of(info.value) == [(spec_file(name), "", message)]
    assert str(info.value).startswith(f"{spec_file(name)}: {message} (")


def test_yaml_python_tags_are_refused_not_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("openapi: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.message.startswith("invalid YAML at line 1, column 10: could not determine")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"openapi": }', "invalid JSON at line 1, column 13: "),
        ("openapi: [3\n", "invalid YAML at line 2, column 1: "),
        (b"[" * 2000, "invalid JSON at line 1, column 1026: "),  # too deep: no RecursionError
    ],
)
def test_inline_syntax_errors(data: bytes | str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec_data(data, source="admin:svc")
    (problem,) = info.value.problems
    assert (problem.file, problem.pointer) == ("admin:svc", "")
    assert problem.message.startswith(message)


# --- $ref resolution -------------------------------------------------------


def inline_documents(root: object, base_dir: str | None = None) -> Documents:
    return Documents(Document("<inline>", root, base_dir))


def test_resolve_local_pointer_with_escapes_and_int_keys() -> None:
    root = {
        "paths": {"/pets/{id}": {"get": {"responses": {200: {"description": "ok"}}}}},
        "list": [{"a": 1}, {"b": 2}],
    }
    docs = inline_documents(root)
    got = docs.resolve("#/paths/~1pets~1%7Bid%7D/get/responses/200", "<inline>", "/x")
    assert got.value == {"description": "ok"}
    assert (got.file, got.pointer) == ("<inline>", "/paths/~1pets~1{id}/get/responses/200")
    assert docs.resolve("#/list/1", "<inline>", "").value == {"b": 2}
    assert docs.resolve("#", "<inline>", "").value is root
    assert docs.node("<inline>", "/list/0") == {"a": 1}


def test_node_reads_pointers_as_written() -> None:
    # Pointers in problems and models are plain JSON pointers: no %-decoding.
    root = {"paths": {"/100%": {"get": {"responses": {200: {"d": 1}}}}}, "l": [{"a": 1}]}
    docs = inline_documents(root)
    assert docs.node("<inline>", "/paths/~1100%/get/responses/200") == {"d": 1}
    assert docs.node("<inline>", "/l/0/a") == 1
    assert docs.node("<inline>", "") is root
    for missing in ("/nope", "/l/5", "/l/x", "/l/0/a/b", "/paths/~1100%25"):
        with pytest.raises(KeyError):
            docs.node("<inline>", missing)


@pytest.mark.parametrize(
    ("ref", "pointer", "message", "hint"),
    [
        (
            "#/components/parameters/Limt",
            "/at/$ref",
            "$ref '#/components/parameters/Limt' points to nothing: "
            "no 'Limt' under /components/parameters",
            "did you mean 'Limit'?",
        ),
        (
            "#/nothing/here",
            "/at/$ref",
            "$ref '#/nothing/here' points to nothing: no 'nothing' under the top level",
            "check the spelling and the path",
        ),
        (
            "#/list/7",
            "/at/$ref",
            "$ref '#/list/7' points to nothing: no '7' under /list",
            "check the spelling and the path",
        ),
        (
            "#/list/0/deeper",
            "/at/$ref",
            "$ref '#/list/0/deeper' points to nothing: no 'deeper' under /list/0",
            "check the spelling and the path",
        ),
        (
            "#Limit",
            "/at/$ref",
            "$ref '#Limit': '#Limit' is not a JSON pointer",
            "write a pointer like #/components/x",
        ),
        (
            "http://example.com/x.yaml#/a",
            "/at/$ref",
            "$ref 'http://example.com/x.yaml#/a' is a remote reference, which is not supported",
            "save the file next to the spec and refer to it by a relative path",
        ),
        (
            "other.yaml#/a",
            "/at/$ref",
            "$ref 'other.yaml#/a' names a file, but the spec was given inline",
            "pass base_dir= to load_spec_data, or inline the referenced part",
        ),
    ],
)
def test_resolve_failures(ref: str, pointer: str, message: str, hint: str) -> None:
    docs = inline_documents({"components": {"parameters": {"Limit": {}}}, "list": [1]})
    with pytest.raises(DocumentError) as info:
        docs.resolve(ref, "<inline>", "/at")
    assert info.value.problem == Problem("<inline>", pointer, message, hint)


def test_deref_follows_chains_and_reports_cycles_once() -> None:
    root = {
        "a": {"$ref": "#/b"},
        "b": {"$ref": "#/c"},
        "c": {"name": "real"},
        "x": {"$ref": "#/y"},
        "y": {"$ref": "#/x"},
        "deep": {"$ref": "#/deep0"},
        **{f"deep{i}": {"$ref": f"#/deep{i + 1}"} for i in range(100)},
        "deep100": {},
    }
    docs = inline_documents(root)
    got = docs.deref({"$ref": "#/a"}, "<inline>", "/use")
    assert got == ({"name": "real"}, "<inline>", "/c")
    assert docs.deref({"name": "plain"}, "<inline>", "/p") == ({"name": "plain"}, "<inline>", "/p")

    cycle = Problem(
        "<inline>",
        "/x/$ref",
        "$ref cycle: #/x -> #/y -> #/x",
        "one of these refs must point at the real definition",
    )
    for entry in ("#/x", "#/y"):  # entered at either end, the same problem
        with pytest.raises(DocumentError) as info:
            docs.deref({"$ref": entry}, "<inline>", "/use")
        assert info.value.problem == cycle
    with pytest.raises(DocumentError, match="chain longer than 64 refs"):
        docs.deref({"$ref": "#/deep"}, "<inline>", "/use")


def test_ref_problems_in_a_spec() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file("refs/dangling.yaml"))
    here = spec_file("refs/dangling.yaml")
    assert errors_of(info.value) == [
        (
            here,
            "/paths/~1typo/get/parameters/0/$ref",
            "$ref '#/components/parameters/Limt' points to nothing: "
            "no 'Limt' under /components/parameters",
        ),
        (
            here,
            "/paths/~1missing-file/post/requestBody/$ref",
            f"$ref 'nowhere.yaml#/Body': can not read {spec_file('refs/nowhere.yaml')}: "
            "No such file or directory",
        ),
        (
            here,
            "/paths/~1remote/get/parameters/0/$ref",
            "$ref 'https://example.com/common.yaml#/Limit' is a remote reference, "
            "which is not supported",
        ),
        (
            here,
            "/paths/~1anchor/get/parameters/0/$ref",
            "$ref '#Limit': '#Limit' is not a JSON pointer",
        ),
        (here, "/paths/~1not-a-string/get/parameters/0/$ref", "$ref is a number, not a string"),
        # A file that does not parse is named itself, with the line and column.
        (
            spec_file("refs/broken-part.yaml"),
            "",
            "invalid YAML at line 4, column 10: mapping values are not allowed in this context",
        ),
        (
            here,
            "/paths/~1index/get/parameters/0/$ref",
            "$ref '#/x-list/5' points to nothing: no '5' under /x-list",
        ),
    ]


def test_ref_cycles_in_a_spec() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file("refs/cycles.yaml"))
    here = spec_file("refs/cycles.yaml")
    # /a and /a2 enter the same parameter cycle: one problem. The recursive
    # schema under /nodes is not a problem: schemas are not dereferenced.
    assert errors_of(info.value) == [
        (
            here,
            "/components/parameters/A/$ref",
            "$ref cycle: #/components/parameters/A -> #/components/parameters/B -> "
            "#/components/parameters/A",
        ),
        (here, "/paths/~1b/$ref", "$ref cycle: #/paths/~1b -> #/paths/~1c -> #/paths/~1b"),
        (
            here,
            "/components/requestBodies/Self/$ref",
            "$ref cycle: #/components/requestBodies/Self -> #/components/requestBodies/Self",
        ),
    ]


def test_relative_file_refs_resolve_from_the_referring_file() -> None:
    spec = load_spec(spec_file("split/main.yaml"))
    ops = {op.operation_id: op for op in spec.operations}
    assert [(o.operation_id, o.method, o.template) for o in spec.operations] == [
        ("listUsers", "GET", "/users"),
        ("createUser", "POST", "/users"),
        ("getUser", "GET", "/users/{userId}"),
        ("listGroups", "GET", "/groups"),
    ]
    users = spec_file("split/paths/users.yaml")
    params = spec_file("split/common/parameters.yaml")
    bodies = spec_file("split/common/bodies.yaml")
    # The operation lives in the path item's file; its parameters where defined.
    assert (ops["listUsers"].file, ops["listUsers"].pointer) == (users, "/get")
    assert [(p.name, p.file, p.pointer) for p in ops["listUsers"].parameters] == [
        ("limit", params, "/Limit"),  # through AliasLimit, a ref inside parameters.yaml
        ("sort", users, "/x-local/Sort"),  # `#/...` in users.yaml means users.yaml
    ]
    assert [(p.name, p.file, p.pointer) for p in ops["getUser"].parameters] == [
        ("userId", params, "/UserId"),
    ]
    assert ops["listGroups"].parameters[0].pointer == "/Limit"
    # Each file is parsed once: both operations hold the very same schema dict.
    assert ops["listGroups"].parameters[0].schema is ops["listUsers"].parameters[0].schema

    create = ops["createUser"]
    assert (create.request_body_file, create.request_body_pointer) == (bodies, "/User")
    assert create.request_body is not None
    schema = create.request_body["content"]["application/json"]["schema"]
    # Refs inside the body resolve against the body's file, through the Spec.
    resolved = spec.resolve(schema["$ref"], file=create.request_body_file)
    assert resolved.value["required"] == ["name"]
    assert (resolved.file, resolved.pointer) == (bodies, "/UserSchema")


def test_inline_spec_with_base_dir_resolves_files() -> None:
    data = yaml.safe_load((SPECS / "split" / "main.yaml").read_text())
    spec = load_spec_data(data, source="admin:split", base_dir=SPECS / "split")
    assert [op.operation_id for op in spec.operations] == [
        "listUsers",
        "createUser",
        "getUser",
        "listGroups",
    ]
    assert spec.operations[0].file == os.path.normpath(SPECS / "split" / "paths" / "users.yaml")


def test_inline_spec_without_base_dir_can_not_reach_files() -> None:
    data = yaml.safe_load((SPECS / "split" / "main.yaml").read_text())
    with pytest.raises(SpecError) as info:
        load_spec_data(data, source="admin:split")
    assert [(p.file, p.pointer) for p in info.value.problems] == [
        ("admin:split", "/paths/~1users/$ref"),
        ("admin:split", "/paths/~1users~1{userId}/$ref"),
        ("admin:split", "/paths/~1groups/get/parameters/0/$ref"),
    ]
    assert all(
        "names a file, but the spec was given inline" in p.message for p in info.value.problems
    )
