"""The `runmcp-fast` command line: `serve`, `routes` and `check`."""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from runmcp_fast.config import (
    ConfigError,
    GatewayConfig,
    ListenerConfig,
    check_config,
    config_from_data,
    load_config,
)
from runmcp_fast.openapi import Operation, Spec, SpecError, add_spec_routes, load_spec
from runmcp_fast.openapi.errors import Problem
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


def _serve_config(args: argparse.Namespace) -> GatewayConfig:
    if args.config:
        if args.upstream or args.openapi or args.prefix:
            raise ConfigError(
                [Problem("<command line>", "", "give either -c or --upstream, not both", "")]
            )
        config = load_config(args.config)
        changes: dict[str, object] = {}
        if args.listen:
            changes["listeners"] = [ListenerConfig(address=a) for a in args.listen]
        if args.access_log:
            changes["access_log"] = True
        if not changes:
            return config
        config = msgspec.structs.replace(config, **changes)
        problems = check_config(config, "<command line>")
        if problems:
            raise ConfigError(problems)
        return config
    if not args.upstream:
        raise ConfigError(
            [Problem("<command line>", "", "nothing to serve", "give -c FILE or --upstream URL")]
        )
    service: dict[str, object] = {"name": "default", "upstream": args.upstream}
    if args.openapi:
        service["openapi"] = str(Path(args.openapi).resolve())
        if args.base_path:
            service["base_path"] = args.base_path
    if args.prefix or not args.openapi:
        service["prefix"] = args.prefix or "/"
    data = {
        "listeners": [{"address": a} for a in args.listen or ["127.0.0.1:8080"]],
        "services": [service],
        "access_log": bool(args.access_log),
    }
    return config_from_data(data, source="<command line>", base_dir=str(Path.cwd()))


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = _serve_config(args)
    except ConfigError as exc:
        return _report(exc.problems)
    source = args.config or "<command line>"
    _raise_file_limit()
    if args.workers > 1:
        from runmcp_fast.workers import run_workers

        try:
            return run_workers(config, source, args.workers, _serve_one)
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return _serve_one(config, source, None, "")


def _serve_one(
    config: GatewayConfig, source: str, sockets: list[socket.socket] | None, label: str
) -> int:
    """Run one gateway (one process, one event loop) until SIGTERM/SIGINT."""
    import uvloop

    from runmcp_fast.gateway import Gateway
    from runmcp_fast.services import SnapshotError

    try:
        gateway = Gateway(config, source=source, sockets=sockets, label=label)
        uvloop.run(gateway.serve_forever())
    except (SnapshotError, ConfigError) as exc:
        return _report(exc.problems)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _report(problems: Sequence[Problem]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _raise_file_limit() -> None:
    """One descriptor per client and per upstream connection: lift the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway on a config file, or on one service given by flags.",
    )
    serve.add_argument("-c", "--config", help="gateway config file (YAML or JSON)")
    serve.add_argument(
        "--listen", action="append", help="HOST:PORT, [IPv6]:PORT or unix:PATH (repeatable)"
    )
    serve.add_argument("--upstream", help="the upstream URL of the one service (no config file)")
    serve.add_argument("--openapi", help="its OpenAPI spec: routes come from it")
    serve.add_argument("--prefix", help="without a spec: route everything under this prefix")
    serve.add_argument("--base-path", help="override the spec's servers/basePath prefix")
    serve.add_argument("--access-log", action="store_true", help="a JSON line per request")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes sharing the listeners (default 1)",
    )
    serve.set_defaults(func=_cmd_serve)

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
