"""Fuzz target: the compiled router (runmcp_fast._router) against the reference matcher.

Input: byte 0 picks the host (or, for the last choice, takes bytes up to a NUL),
byte 1 the method (likewise), the rest is the request target. Oracle: the router
answers exactly what tests/reference_matcher.py answers (route, parameters, host
parameters, and the allowed methods), for the path as bytes and as text.
"""

from __future__ import annotations

from harness import instrumented, main
from reference_matcher import RefRouter
from test_router_differential import PETSTORE, answer

with instrumented():
    from runmcp_fast.router import Router

HOSTS: tuple[str | bytes | None, ...] = (
    None,
    "a.b.example.com",
    "acme.example.com",
    "api.example.com:80",
    "API.Example.COM.",
    "db.internal.example.com",
    b"ACME.example.com",
    "[::1]:8080",
    "",
)
METHODS: tuple[str | bytes, ...] = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "*", b"GET")

router = Router()
reference = RefRouter()
for i, (method, template, host) in enumerate(PETSTORE):
    router.add(method, template, f"t{i}", host)
    reference.add(method, template, f"t{i}", host)
router.compile()
reference.compile()


def _pick(choices: tuple, selector: int, rest: bytes) -> tuple[object, bytes]:
    index = selector % (len(choices) + 1)
    if index < len(choices):
        return choices[index], rest
    raw, _, rest = rest.partition(b"\x00")
    return raw, rest


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    host, rest = _pick(HOSTS, data[0], data[2:])
    method, path = _pick(METHODS, data[1], rest)
    for target in (path, path.decode("latin-1")):
        got = _outcome(lambda t=target: answer(router.match(host, method, t)))
        want = _outcome(lambda t=target: answer(reference.match(host, method, t)))
        assert got == want, (host, method, target, got, want)
        got = _outcome(lambda t=target: router.allowed(host, t))
        want = _outcome(lambda t=target: reference.allowed(host, t))
        assert got == want, (host, target, got, want)


def _outcome(call):  # type: ignore[no-untyped-def]
    """The answer, or the kind of error (both must refuse a host or method alike)."""
    try:
        return call()
    except (ValueError, TypeError) as exc:
        return type(exc).__name__


if __name__ == "__main__":
    main("router", one_input)
