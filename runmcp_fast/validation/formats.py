"""The `format`s the gateway asserts, defined once for the compiled types and the fallback.

JSON Schema 2020-12 makes `format` an annotation; OpenAPI lists formats a
client can rely on. The gateway asserts the ones msgspec parses natively
(RFC 3339 `date-time`, `date`, `time`; `uuid`; base64 `byte`) and treats
every other format as the annotation it is. The fallback validator checks
them with the same msgspec types, so the compiled decoder and the error list
can never disagree on a format.

msgspec's RFC 3339 reading differs from the RFC's letter in two corners,
documented in docs/validation.md: it accepts a space for the `T`, and
rejects the leap second `:60`.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec
from jsonschema import Draft202012Validator, FormatChecker, validators

# \Z, not $: `$` also matches before a trailing newline.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"

# format -> the msgspec type a JSON string of that format decodes to.
# `uuid` is a pattern, not msgspec's UUID: msgspec also takes the 32 hex
# digits without hyphens, which RFC 4122's string form (and JSON Schema) do not.
FORMAT_TYPES: dict[str, Any] = {
    "date-time": Annotated[datetime.datetime, msgspec.Meta(tz=True)],
    "date": datetime.date,
    "time": Annotated[datetime.time, msgspec.Meta(tz=True)],
    "uuid": Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)],
    "byte": bytes,
}

FORMAT_CHECKER = FormatChecker(formats=())


def _register(name: str, kind: Any) -> None:
    def check(value: object) -> bool:
        if not isinstance(value, str):
            return True  # formats constrain strings only
        try:
            msgspec.convert(value, kind)
        except msgspec.ValidationError:
            return False
        return True

    FORMAT_CHECKER.checks(name)(check)


for _name, _kind in FORMAT_TYPES.items():
    _register(_name, _kind)


def _integer(_checker: object, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON Schema 2020-12 counts 1.0 as an integer; msgspec (the fast path) does
# not. The fallback and the error lister follow the fast path, so a decision
# never depends on which validator a node happens to use.
StrictValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer),
)
