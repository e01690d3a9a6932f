"""Problems and the errors that carry them, used by every layer of the gateway.

A problem names the file, the JSON pointer (RFC 6901) of the offending value,
what is wrong and how to fix it. Loading a spec, checking a config and
building a snapshot each collect every problem before raising, so one run of
`runmcp-fast check` (or one refused admin change) shows them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

Severity = Literal["error", "warning"]


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with a spec.

    `str()` reads like a compiler message:
    ``petstore.yaml#/paths/~1pets/get/parameters/0: parameter has no 'in' (add in: query|...)``.
    """

    file: str
    """The document holding the value: the spec's source or a file it `$ref`s."""
    pointer: str
    """RFC 6901 pointer into `file`; "" is the whole document."""
    message: str
    hint: str = ""
    """How to fix it, when there is more to say than the message."""
    severity: Severity = "error"

    def __str__(self) -> str:
        # The severity is left out: callers print warnings under their own label.
        where = f"{self.file}#{self.pointer}" if self.pointer else self.file
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}: {self.message}{hint}"


class ConfigError(Exception):
    """A config that can not be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SnapshotError(Exception):
    """A config whose services can not be compiled; `problems` names each cause."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class DocumentError(Exception):
    """A file that can not be read or parsed, or a `$ref` that leads nowhere."""

    def __init__(self, problem: Problem, *, unreadable: str = "") -> None:
        super().__init__(str(problem))
        self.problem = problem
        self.unreadable = unreadable
        """For a file that could not be opened: why (the OS's words)."""


class SpecError(Exception):
    """A spec that can not be loaded or routed; `.problems` lists every reason.

    The errors come first, then the warnings found on the way, each in the
    order met in the document.
    """

    problems: tuple[Problem, ...]

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    def __str__(self) -> str:
        return "\n".join(
            f"warning: {p}" if p.severity == "warning" else str(p) for p in self.problems
        )


def describe(value: object) -> str:
    """What a value is, in the words of YAML and JSON: "a mapping", "a list", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


class ProblemLog:
    """Collects problems while a spec is read, without duplicates.

    The same broken component can be reached from many operations; it is
    reported once, where it is, not once per use.
    """

    __slots__ = ("_seen", "errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, problem: Problem) -> None:
        key = (problem.file, problem.pointer, problem.message)
        if key in self._seen:
            return
        self._seen.add(key)
        if problem.severity == "error":
            self.errors.append(problem)
        else:
            self.warnings.append(problem)

    def error(self, file: str, pointer: str, message: str, hint: str = "") -> None:
        self.add(Problem(file, pointer, message, hint))

    def warning(self, file: str, pointer: str, message: str, hint: str = "") -> None:
        self.add(Problem(file, pointer, message, hint, "warning"))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError([*self.errors, *self.warnings])
