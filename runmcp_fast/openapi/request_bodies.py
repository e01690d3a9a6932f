"""Request bodies: OpenAPI 3's `requestBody`, and Swagger 2.0's body and form parameters
turned into the same shape so nothing downstream needs to know the version."""

from __future__ import annotations

from typing import Any, NamedTuple

from runmcp_fast.openapi.documents import Documents
from runmcp_fast.openapi.parameters import RawParameter, swagger_schema
from runmcp_fast.openapi.pointers import join
from runmcp_fast.problems import DocumentError, ProblemLog, describe

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class Body(NamedTuple):
    """A Request Body Object (`content`, `required`, `description`) and where it is defined."""

    value: dict[str, Any]
    file: str
    pointer: str


def read_3(value: Any, file: str, pointer: str, docs: Documents, log: ProblemLog) -> Body | None:
    """The operation's `requestBody` at `pointer`, its `$ref` followed."""
    if value is None:
        return None
    try:
        raw, bfile, bpointer = docs.deref(value, file, pointer)
    except DocumentError as exc:
        log.add(exc.problem)
        return None
    if not isinstance(raw, dict):
        log.error(
            bfile,
            bpointer,
            f"requestBody is {describe(raw)}, not a mapping",
            "write requestBody: {content: {application/json: {schema: ...}}}",
        )
        return None
    if not isinstance(raw.get("content"), dict):
        log.error(
            bfile,
            bpointer,
            "requestBody has no 'content' mapping",
            "add content: {application/json: {schema: ...}}",
        )
        return None
    return Body(raw, bfile, bpointer)


def from_swagger(
    params: list[RawParameter],
    consumes: list[str],
    file: str,
    op_pointer: str,
    log: ProblemLog,
) -> tuple[Body | None, list[RawParameter]]:
    """Split Swagger 2.0 parameters into a request body and the rest.

    `in: body` becomes the body under every media type the operation
    `consumes` (application/json when it says none); `in: formData`
    parameters become the properties of one object schema under the form
    media types it consumes (multipart when a file is among them, else
    urlencoded).
    """
    body = [p for p in params if p.location == "body"]
    form = [p for p in params if p.location == "formData"]
    rest = [p for p in params if p.location not in ("body", "formData")]
    if not body and not form:
        return None, rest
    if len(body) > 1:
        for extra in body[1:]:
            log.error(
                extra.file,
                extra.pointer,
                f"a second body parameter '{extra.name}' (the first is '{body[0].name}')",
                "an operation has at most one in: body parameter",
            )
    if body and form:
        log.error(
            file,
            join(op_pointer, "parameters"),
            "the operation has both body and formData parameters",
            "use in: body for a JSON payload or in: formData for a form, not both",
        )
        return None, rest
    if body:
        p = body[0]
        schema = p.raw.get("schema")
        media = consumes or ["application/json"]
        value: dict[str, Any] = {
            "content": {mt: {"schema": schema if schema is not None else {}} for mt in media},
            "required": p.raw.get("required") is True,
        }
        if isinstance(p.raw.get("description"), str):
            value["description"] = p.raw["description"]
        return Body(value, p.file, p.pointer), rest

    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in form:
        prop = swagger_schema(p.raw)
        if isinstance(p.raw.get("description"), str):
            prop["description"] = p.raw["description"]
        properties[p.name] = prop
        if p.raw.get("required") is True:
            required.append(p.name)
    schema_obj: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema_obj["required"] = required
    media = [mt for mt in consumes if mt.split(";", 1)[0].strip().lower() in FORM_TYPES]
    if not media:
        has_file = any(p.raw.get("type") == "file" for p in form)
        media = [FORM_TYPES[1] if has_file else FORM_TYPES[0]]
    value = {"content": {mt: {"schema": schema_obj} for mt in media}, "required": bool(required)}
    return Body(value, file, join(op_pointer, "parameters")), rest


def consumes_of(operation: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """Swagger 2.0: the operation's `consumes`, else the spec's."""
    for source in (operation, root):
        value = source.get("consumes")
        if isinstance(value, list):
            return [mt for mt in value if isinstance(mt, str)]
    return []
