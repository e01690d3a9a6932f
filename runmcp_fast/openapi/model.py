"""What a loaded spec is: its operations and their parameters, version-neutral.

OpenAPI 3.0, 3.1 and Swagger 2.0 all land in these structs. Schemas stay the
raw dicts of the document, `$ref`s unresolved: the schema compiler follows
them through `Spec.resolve`, relative to the `file` the schema sits in.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from runmcp_fast.openapi.documents import Documents, Resolved
from runmcp_fast.problems import Problem

Location = Literal["path", "query", "header", "cookie"]


class Condition(msgspec.Struct, frozen=True):
    """What a request must have to be one operation of a shared route (discriminators.py)."""

    location: Literal["query", "header"]
    name: str
    """As sent: a query parameter's name, or a header's name in lower case."""
    value: str | None = None
    """The value it must equal (decoded); None: present, whatever its value."""


class Parameter(msgspec.Struct, frozen=True):
    """One path, query, header or cookie parameter of an operation."""

    name: str
    location: Location
    required: bool
    schema: dict[str, Any]
    """The raw schema, `{}` when the spec gives none; Swagger 2.0's inline `type`,
    `format`, ... become one. For a `content:` parameter, its media type's schema."""
    style: str
    """OpenAPI 3 style; defaults to `simple` (path, header) or `form` (query, cookie)."""
    explode: bool
    """Defaults to true for `form` style, false otherwise."""
    pointer: str
    """Where the parameter is defined (after following its `$ref`), in `file`."""
    file: str = ""
    """The document holding it: the spec's source unless it came through a file `$ref`."""
    description: str = ""
    deprecated: bool = False
    media_type: str | None = None
    """Set for a parameter given with `content:` instead of `schema:` (e.g. JSON in a query)."""


class Operation(msgspec.Struct, frozen=True):
    """One method on one path: what becomes a route and an MCP tool."""

    operation_id: str
    """Unique within its spec: the spec's own, or derived from method and path."""
    method: str
    """Upper-case, as the router takes it."""
    path: str
    """The key under `paths`, as written."""
    template: str
    """The route template: the effective base path + `path`."""
    pointer: str
    """The operation object, e.g. `/paths/~1pets~1{id}/get`, in `file`."""
    parameters: tuple[Parameter, ...]
    """Path-level and operation-level parameters merged; every `{name}` of the path has one."""
    request_body: dict[str, Any] | None
    """The Request Body Object (`content`, `required`, ...), its own `$ref` followed."""
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    deprecated: bool = False
    file: str = ""
    """The document holding the operation: the spec's source unless a path item was `$ref`'d."""
    request_body_file: str = ""
    request_body_pointer: str = ""
    """Where `request_body` is defined, to resolve the refs inside its schemas."""
    suffix: str = ""
    """What `path` has after the routed part: `#Action=DescribeInstances`, `?lat={lat}`, ..."""
    discriminator: tuple[Condition, ...] = ()
    """The conditions `suffix` puts on a request: what picks this operation on its route."""


class RouteGroup(msgspec.Struct, frozen=True):
    """Operations of one method sharing one route: told apart per request (dispatch.py).

    Made by the loader for a path written with a suffix (`/#Action=X`) and for
    templates of the same shape (`/v1/{name}` and `/v1/{parent}`).
    """

    method: str
    template: str
    """The route's template: the first declared operation's."""
    operations: tuple[Operation, ...]
    """In the order they are tried: the most conditions first, then as declared."""
    preferred: tuple[tuple[Condition, ...], ...]
    """Per operation, its required query and header parameters: among those whose
    `discriminator` holds, the one with the most of these present wins."""


class Spec(msgspec.Struct, frozen=True, dict=True):
    """A loaded spec. Encodes to JSON like any struct; the parsed documents stay out of it.

    `dict=True` is what lets the documents ride along outside the struct's
    fields: the struct stays frozen and serialisable, and `Spec.resolve`
    still reaches the parsed files. (`msgspec.structs.replace` drops them.)
    """

    source: str
    """The file the spec was read from, or the `source=` given for inline data."""
    version: str
    """As declared: `3.0.3`, `3.1.0`, `2.0`, ..."""
    title: str
    base_path: str
    """The prefix of every template (unless an operation's own `servers` says otherwise)."""
    operations: tuple[Operation, ...]
    warnings: tuple[Problem, ...] = ()
    groups: tuple[RouteGroup, ...] = ()
    """Routes shared by several operations (or one with a discriminator)."""

    @property
    def documents(self) -> Documents:
        """The parsed files, to resolve `$ref`s; only a Spec from the loader has them."""
        docs: Documents | None = self.__dict__.get("_documents")
        if docs is None:
            raise LookupError(
                "this Spec was copied or decoded, which leaves its documents behind; load it again"
            )
        return docs

    @property
    def root(self) -> Any:
        """The parsed root document, as read (never modified)."""
        return self.documents.root.root

    def resolve(self, ref: str, *, file: str | None = None, pointer: str = "") -> Resolved:
        """Follow one `$ref` written in `file` (default: the root document).

        Raises `DocumentError` (with a `.problem`) for a dangling or remote ref.
        """
        return self.documents.resolve(ref, file or self.source, pointer)

    def deref(self, value: Any, *, file: str | None = None, pointer: str = "") -> Resolved:
        """Follow `value`'s chain of `$ref`s, if any; cycles raise `DocumentError`."""
        return self.documents.deref(value, file or self.source, pointer)

    def node(self, pointer: str, *, file: str | None = None) -> Any:
        """The raw node at `pointer`, e.g. `spec.node(op.pointer, file=op.file)`."""
        return self.documents.node(file or self.source, pointer)


def attach_documents(spec: Spec, documents: Documents) -> Spec:
    spec.__dict__["_documents"] = documents
    return spec
