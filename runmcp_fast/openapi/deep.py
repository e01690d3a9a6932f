"""openapi-spec-validator's semantic checks, for `runmcp-fast check --deep` only.

Beyond the JSON Schema of the version (`whole.py` runs that everywhere), the
library walks every schema: defaults and enums against their types, parameter
and response shapes. It is slow (GitHub's spec: ~55 s, Stripe's ~7 s, on this
project's 2-core machine), so it never runs on registration, and `check`
bounds it with a time budget. What it finds are warnings; the ones `whole.py`
and the loader already give (duplicate operationIds, path parameters,
dangling refs) are left out.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from runmcp_fast.openapi.model import Spec
from runmcp_fast.problems import Problem

# Reported by the loader or whole.py already, with a pointer.
_ALREADY = frozenset(
    ("DuplicateOperationIDError", "ExtraParametersError", "UnresolvableParameterError")
)
MAX_PROBLEMS = 50


class BudgetSpent(Exception):
    """The time budget ran out before the walk ended."""


def deep_problems(spec: Spec, budget: float) -> tuple[list[Problem], bool]:
    """(warnings, finished): the library's semantic findings within `budget` seconds."""
    from jsonschema_path import SchemaPath
    from jsonschema_path.handlers.file import FileHandler
    from openapi_spec_validator.shortcuts import get_validator_cls
    from openapi_spec_validator.validation.exceptions import ValidatorDetectError

    root = spec.root
    try:
        cls = get_validator_cls(root)
    except ValidatorDetectError:
        return [], True
    # Local files only: a remote `$ref` is never fetched (the loader refuses them).
    path = SchemaPath.from_dict(root, base_uri="", handlers={"file": FileHandler()})
    validator = cls(path)
    problems: list[Problem] = []
    try:
        with _deadline(budget):
            for error in validator.root_validator(path):
                if type(error).__name__ in _ALREADY:
                    continue
                problems.append(_problem(spec.source, error))
                if len(problems) >= MAX_PROBLEMS:
                    break
    except BudgetSpent:
        return problems, False
    except Exception as exc:  # a library failure is a finding, not a crash
        problems.append(
            Problem(
                spec.source,
                "",
                f"openapi-spec-validator stopped: {type(exc).__name__}: {str(exc)[:200]}",
                "the problems above may be the cause",
                "warning",
            )
        )
    return problems, True


def _problem(source: str, error: Any) -> Problem:
    path = [str(p) for p in getattr(error, "path", ()) or ()]
    where = ("at " + "/".join(path) + ": ") if path else ""
    return Problem(
        source,
        "",
        f"openapi-spec-validator: {where}{error.message}",
        "found by `check --deep`; the gateway copes, other tools may not",
        "warning",
    )


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise BudgetSpent in this (main) thread after `seconds`; no bound elsewhere or for 0."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise BudgetSpent

    before = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
