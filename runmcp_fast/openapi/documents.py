"""Reading spec files and resolving `$ref`s between and inside them.

Nothing here copies or dereferences a whole document: a `$ref` is followed
only when the loader (or, later, the schema compiler) asks for the node it
names. Each file is read and parsed once per load, whatever number of refs
point into it.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson
import yaml

from runmcp_fast.openapi.pointers import join, split, tokens
from runmcp_fast.problems import DocumentError, Problem, describe

# PERF: libyaml's loader is ~10x faster than the pure-Python one; both build
# the same plain dicts, lists and scalars.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_BOM = b"\xef\xbb\xbf"
_MAX_REF_CHAIN = 64


class Resolved(NamedTuple):
    """A node together with where it lives, so refs inside it resolve correctly."""

    value: Any
    file: str
    """The document's name as used in problems (see `Document.name`)."""
    pointer: str


class Document:
    """One parsed file (or the inline spec) and the refs already looked up in it."""

    __slots__ = ("_nodes", "base_dir", "name", "root")

    def __init__(self, name: str, root: Any, base_dir: str | None) -> None:
        self.name = name
        """How problems name it: the path as the caller gave it, or joined from the referrer's."""
        self.root = root
        self.base_dir = base_dir
        """Where its relative-file refs point from; None for an inline spec without one."""
        self._nodes: dict[str, tuple[Any, str]] = {}
        """fragment -> (node, canonical pointer): Graph refs the same few parameters 10k times."""


def parse(data: bytes | str, name: str) -> Any:
    """Parse JSON (orjson) or YAML; a syntax error becomes a DocumentError with line and column.

    JSON is chosen by a `.json` name or, for other names, by a first
    character of `{` or `[`; everything else is read as YAML.
    """
    raw = data.encode() if isinstance(data, str) else data
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    lower = name.lower()
    if lower.endswith(".json") or (
        not lower.endswith((".yaml", ".yml")) and raw.lstrip()[:1] in (b"{", b"[")
    ):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise DocumentError(
                Problem(
                    name,
                    "",
                    f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                    "fix the syntax there",
                )
            ) from None
    try:
        return yaml.load(raw, Loader=_YAML_LOADER)  # a safe loader (see _YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(part for part in (exc.problem, exc.context) if part)
        raise DocumentError(
            Problem(name, "", f"invalid YAML{where}: {what}", "fix the syntax there")
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentError(
            Problem(name, "", f"invalid YAML: {exc}", "save the file as UTF-8 YAML")
        ) from None
    except RecursionError:
        raise DocumentError(
            Problem(name, "", "invalid YAML: nested too deeply", "flatten it with $refs")
        ) from None


def read(path: str, name: str) -> Any:
    """Read and parse one file; `name` is how problems will call it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DocumentError(
            Problem(
                name, "", f"can not read the file: {reason}", "check the path and its permissions"
            ),
            unreadable=reason,
        ) from None
    return parse(data, name)


class Documents:
    """The spec's root document and every file its refs reach, each parsed once."""

    __slots__ = ("_by_name", "_by_path", "_chains", "root")

    def __init__(self, root: Document) -> None:
        self.root = root
        self._by_name: dict[str, Document] = {root.name: root}
        # realpath -> document, or the problem that reading it gave (reported once).
        self._by_path: dict[str, Document | Problem] = {}
        # (file, first $ref of a chain) -> where the chain ends.
        self._chains: dict[tuple[str, str], Resolved] = {}

    @classmethod
    def open(cls, path: str) -> Documents:
        """Read the root spec file. Raises DocumentError."""
        root = Document(path, read(path, path), os.path.dirname(path))
        docs = cls(root)
        docs._by_path[os.path.realpath(path)] = root
        return docs

    def loaded(self) -> list[Document]:
        """Every document read so far: the root first, then the files refs reached."""
        return list(self._by_name.values())

    def document(self, file: str) -> Document:
        """The document called `file` in problems and models (KeyError if never loaded)."""
        return self._by_name[file]

    def node(self, file: str, pointer: str) -> Any:
        """The node at `pointer` (as in a Problem or model) in `file`; no refs are followed.

        Raises KeyError when there is no such node.
        """
        node = self._by_name[file].root
        try:
            for token in tokens(pointer):
                # List items are numbered; YAML reads a `200:` key as an int.
                numbered = isinstance(node, list) or (isinstance(node, dict) and token not in node)
                node = node[int(token) if numbered and token.isdigit() else token]
        except (LookupError, TypeError, ValueError):
            raise KeyError(f"{file}#{pointer}") from None
        return node

    def resolve(self, ref: str, file: str, pointer: str) -> Resolved:
        """Follow one `$ref` written at `pointer` in `file` (a document's name).

        Raises DocumentError for a ref that leads nowhere.
        """
        doc = self._by_name[file]
        file_part, _, fragment = ref.partition("#")
        if file_part:
            doc = self._load_ref_file(file_part, ref, doc, pointer)
        cached = doc._nodes.get(fragment)
        if cached is None:
            cached = self._walk(doc, fragment, ref, file, pointer)
            doc._nodes[fragment] = cached
        return Resolved(cached[0], doc.name, cached[1])

    def deref(self, value: Any, file: str, pointer: str) -> Resolved:
        """Follow `value`'s `$ref` chain (if any) to a node that is not a ref.

        A chain that comes back on itself is a DocumentError at the loop's
        smallest node, so every operation reaching it reports the same problem.
        """
        if not isinstance(value, dict) or "$ref" not in value:
            return Resolved(value, file, pointer)
        first_ref = value["$ref"]
        key = (file, first_ref) if isinstance(first_ref, str) else None
        done = self._chains.get(key) if key else None
        if done is not None:
            return done
        chain: list[tuple[str, str]] = []
        while isinstance(value, dict) and "$ref" in value:
            ref = value["$ref"]
            if not isinstance(ref, str):
                raise DocumentError(
                    Problem(
                        file,
                        join(pointer, "$ref"),
                        f"$ref is {describe(ref)}, not a string",
                        "write $ref: '#/components/...' or 'file.yaml#/...'",
                    )
                )
            chain.append((file, pointer))
            target = self.resolve(ref, file, pointer)
            here = (target.file, target.pointer)
            if here in chain:
                raise DocumentError(_cycle(chain[chain.index(here) :]))
            if len(chain) > _MAX_REF_CHAIN:
                raise DocumentError(
                    Problem(
                        file,
                        join(pointer, "$ref"),
                        f"$ref chain longer than {_MAX_REF_CHAIN} refs",
                        "point the refs at the definition itself",
                    )
                )
            value, file, pointer = target
        done = Resolved(value, file, pointer)
        if key:
            self._chains[key] = done
        return done

    def _load_ref_file(self, file_part: str, ref: str, referrer: Document, at: str) -> Document:
        site = join(at, "$ref")
        if _SCHEME.match(file_part) or file_part.startswith("//"):
            raise DocumentError(
                Problem(
                    referrer.name,
                    site,
                    f"$ref '{ref}' is a remote reference, which is not supported",
                    "save the file next to the spec and refer to it by a relative path",
                )
            )
        if referrer.base_dir is None and not os.path.isabs(file_part):
            raise DocumentError(
                Problem(
                    referrer.name,
                    site,
                    f"$ref '{ref}' names a file, but the spec was given inline",
                    "pass base_dir= to load_spec_data, or inline the referenced part",
                )
            )
        rel = unquote(file_part)
        name = os.path.normpath(os.path.join(referrer.base_dir or "", rel))
        key = os.path.realpath(name)
        found = self._by_path.get(key)
        if found is None:
            try:
                found = Document(name, read(name, name), os.path.dirname(name))
            except DocumentError as exc:
                found = exc.problem
                if exc.unreadable:
                    # A missing file is the referrer's mistake: point at the ref.
                    found = Problem(
                        referrer.name,
                        site,
                        f"$ref '{ref}': can not read {name}: {exc.unreadable}",
                        "the path is relative to the file that holds the $ref",
                    )
            self._by_path[key] = found
            if isinstance(found, Document):
                self._by_name.setdefault(found.name, found)
        if isinstance(found, Problem):
            raise DocumentError(found)
        return found

    def _walk(self, doc: Document, fragment: str, ref: str, file: str, at: str) -> tuple[Any, str]:
        site = join(at, "$ref")
        try:
            parts = split(fragment)
        except ValueError as exc:
            raise DocumentError(
                Problem(file, site, f"$ref '{ref}': {exc}", "write a pointer like #/components/x")
            ) from None
        node = doc.root
        for i, token in enumerate(parts):
            if isinstance(node, dict):
                if token in node:
                    node = node[token]
                    continue
                # YAML reads `200:` as an int key; refs spell it as text.
                if token.isdigit() and int(token) in node:
                    node = node[int(token)]
                    continue
                keys = [k for k in node if isinstance(k, str)]
            elif isinstance(node, list):
                if token.isdigit() and int(token) < len(node):
                    node = node[int(token)]
                    continue
                keys = []
            else:
                keys = []
            parent = join("", *parts[:i]) or "the top level"
            close = difflib.get_close_matches(token, keys, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "check the spelling and the path"
            where = f" in {doc.name}" if doc.name != file else ""
            raise DocumentError(
                Problem(
                    file,
                    site,
                    f"$ref '{ref}' points to nothing: no '{token}' under {parent}{where}",
                    hint,
                )
            )
        return node, join("", *parts)


def _cycle(loop: list[tuple[str, str]]) -> Problem:
    # Start at the loop's smallest node: entered anywhere, it is the same problem.
    start = loop.index(min(loop))
    loop = loop[start:] + loop[:start]
    home, pointer = loop[0]
    steps = " -> ".join(_show(f, p, home) for f, p in [*loop, loop[0]])
    return Problem(
        home,
        join(pointer, "$ref"),
        f"$ref cycle: {steps}",
        "one of these refs must point at the real definition",
    )


def _show(file: str, pointer: str, home: str) -> str:
    return f"#{pointer}" if file == home else f"{file}#{pointer}"
