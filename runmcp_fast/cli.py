"""The `runmcp-fast` command line: `routes` and `check` (the server comes next)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from runmcp_fast.openapi import Operation, Spec, SpecError, add_spec_routes, load_spec
from runmcp_fast.router import Router


def _load_router(spec_path: str, base_path: str | None, host: str | None) -> tuple[Spec, Router]:
    spec = load_spec(spec_path, base_path=base_path)
    router = Router()
    # The operationId is the target: it is what a person reads in dump().
    add_spec_routes(router, spec, host=host, target=_operation_id)
    router.compile()
    return spec, router


def _operation_id(op: Operation) -> str:
    return op.operation_id


def _print_table(spec: Spec, router: Router, out: TextIO) -> None:
    rows = [
        (route.method, route.template, str(route.target), route.host or "*")
        for route in router.routes()
    ]
    rows.sort(key=lambda r: (r[1], r[0]))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(_HEADERS)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*_HEADERS).rstrip(), file=out)
    for row in rows:
        print(line.format(*row).rstrip(), file=out)
    print(
        f"\n{len(rows)} routes from {spec.source} (OpenAPI {spec.version}, "
        f"base path {spec.base_path or '/'})",
        file=out,
    )


_HEADERS = ("METHOD", "TEMPLATE", "OPERATION", "HOST")


def _cmd_routes(args: argparse.Namespace) -> int:
    spec, router = _load_router(args.spec, args.base_path, args.host)
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.tree:
        sys.stdout.write(router.dump())
    else:
        _print_table(spec, router, sys.stdout)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.specs:
        try:
            spec, router = _load_router(path, None, None)
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"{problem.severity}: {problem}", file=sys.stderr)
            continue
        for warning in spec.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"ok: {path}: {len(router)} routes")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runmcp-fast", description="A gateway for OpenAPI services and MCP servers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    routes = commands.add_parser("routes", help="print the compiled route table of a spec")
    routes.add_argument("spec", help="OpenAPI 3.x or Swagger 2.0 file (JSON or YAML)")
    routes.add_argument("--host", help="serve the routes on this host pattern only")
    routes.add_argument("--base-path", help="override the spec's servers/basePath prefix")
    routes.add_argument("--tree", action="store_true", help="show the compiled trie")
    routes.set_defaults(func=_cmd_routes)

    check = commands.add_parser("check", help="validate specs; report every problem")
    check.add_argument("specs", nargs="+", help="spec files")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SpecError as exc:
        # A bad spec is the user's input, not a crash: no traceback.
        for problem in exc.problems:
            print(f"{problem.severity}: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `runmcp-fast routes big.json | head`
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
