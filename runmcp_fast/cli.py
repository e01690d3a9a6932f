"""The `runmcp-fast` command line: `serve`, `routes`, `check` and `schema`."""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from runmcp_fast.config import (
    GatewayConfig,
    ListenerConfig,
    check_config,
    config_from_data,
    config_schema,
    load_config,
)
from runmcp_fast.mcp.affinity import session_key
from runmcp_fast.metrics.peers import Peers
from runmcp_fast.openapi import Operation, Spec, SpecError, add_spec_routes, load_spec
from runmcp_fast.openapi.discriminators import describe
from runmcp_fast.openapi.model import Condition, RouteGroup
from runmcp_fast.problems import ConfigError, Problem
from runmcp_fast.router import Router


def _load_router(spec_path: str, base_path: str | None, host: str | None) -> tuple[Spec, Router]:
    spec = load_spec(spec_path, base_path=base_path)
    router = Router()
    # The operationId is the target: it is what a person reads in dump().
    add_spec_routes(router, spec, host=host, target=_operation_id, group=_itself)
    router.compile()
    return spec, router


def _operation_id(op: Operation) -> str:
    return op.operation_id


def _itself(group: RouteGroup) -> RouteGroup:
    return group


def _when(op: Operation, preferred: tuple[Condition, ...] = ()) -> str:
    """What picks `op` on a route it shares (`-` on a route of its own)."""
    if op.discriminator:
        return describe(op.discriminator)
    if preferred:
        return "best with " + describe(preferred)
    return "default"


def _print_table(spec: Spec, router: Router, out: TextIO) -> None:
    rows = []
    for route in router.routes():
        target = route.target
        if isinstance(target, RouteGroup):
            rows += [
                (route.method, route.template, op.operation_id, route.host or "*", _when(op, soft))
                for op, soft in zip(target.operations, target.preferred, strict=True)
            ]
        else:
            rows.append((route.method, route.template, str(target), route.host or "*", "-"))
    # A shared route's operations stay in the order they are tried.
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


_HEADERS = ("METHOD", "TEMPLATE", "OPERATION", "HOST", "WHEN")


def _cmd_routes(args: argparse.Namespace) -> int:
    if args.config is not None:
        return _config_routes(args.config, args.plugins)
    if args.spec is None:
        print("error: give a spec file, or a gateway config with -c", file=sys.stderr)
        return 2
    spec, router = _load_router(args.spec, args.base_path, args.host)
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.tree:
        sys.stdout.write(router.dump())
    else:
        _print_table(spec, router, sys.stdout)
    return 0


def _config_routes(path: str, plugins: bool) -> int:
    """Every route of a gateway config: service, operation, and with `plugins` its chain."""
    from runmcp_fast.problems import SnapshotError
    from runmcp_fast.snapshot import build_snapshot

    try:
        snapshot = build_snapshot(load_config(path), lambda _upstream: None, path)
    except (ConfigError, SnapshotError) as exc:
        return _report(exc.problems)
    headers = ["METHOD", "TEMPLATE", "SERVICE", "OPERATION", "HOST", "WHEN"]
    if plugins:
        headers.append("STEPS (in the order they run)")
    rows = []
    for route in snapshot.router.routes():
        shared = route.target.dispatch
        for target in shared.targets if shared is not None else (route.target,):
            op = target.operation
            row = [
                route.method,
                route.template,
                target.service_name,
                target.name if op is not None else "-",
                route.host or "*",
                _when(op) if shared is not None and op is not None else "-",
            ]
            if plugins:
                row.append(
                    " > ".join(
                        f"{name} ({phase} {priority})"
                        for phase, name, priority in target.chain.describe()
                    )
                    or "-"
                )
            rows.append(row)
    rows.sort(key=lambda r: (r[2], r[1], r[0]))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers).rstrip())
    for row in rows:
        print(line.format(*row).rstrip())
    print(f"\n{len(rows)} routes, {len(snapshot.services)} services, from {path}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Check spec files and gateway config files; 1 on any error (or, with --strict,
    warning), 2 on a file not read."""
    failed = unreadable = False
    for path in args.files:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            unreadable = True
            print(f"error: {path}: can not read: {exc.strerror}", file=sys.stderr)
            continue
        if _is_gateway_config(text):
            ok, warned = _check_config_file(path)
        else:
            ok, warned = _check_spec_file(path, args.deep, args.deep_budget)
        failed = not ok or (args.strict and warned) or failed
    return 2 if unreadable else 1 if failed else 0


def _check_spec_file(path: str, deep: bool = False, budget: float = 0) -> tuple[bool, bool]:
    """(no errors, any warnings) for one spec, every problem printed."""
    from runmcp_fast.openapi.whole import with_whole_check

    try:
        spec, router = _load_router(path, None, None)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{problem.severity}: {problem}", file=sys.stderr)
        return False, bool(exc.warnings)
    spec = with_whole_check(spec)
    from runmcp_fast.openapi import DocumentError
    from runmcp_fast.validation import Bundler, compile_operation
    from runmcp_fast.validation.report import contract_summary

    bundler = Bundler(spec)
    validators = []
    errors = []
    for op in spec.operations:
        try:
            validators.append(compile_operation(spec, op, bundler))
        except DocumentError as exc:
            errors.append(exc.problem)
    # A dangling ref the validators need is an error; said once, as one.
    where = {(p.file, p.pointer) for p in errors}
    warnings = [w for w in spec.warnings if (w.file, w.pointer) not in where]
    if deep and not errors:
        from runmcp_fast.openapi.deep import deep_problems

        found, finished = deep_problems(spec, budget)
        warnings += found
        if not finished:
            print(
                f"note: {path}: the --deep checks stopped after {budget:g} s;"
                " give --deep-budget 0 for no limit",
                file=sys.stderr,
            )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return False, bool(warnings)
    for line in contract_summary("contract", [v for v in validators if v.needed]):
        print(line)
    count = len(warnings)
    said = f", {count} warning{'' if count == 1 else 's'}" if count else ""
    print(f"ok: {path}: {len(router)} routes{said}")
    return True, bool(warnings)


def _check_config_file(path: str) -> tuple[bool, bool]:
    """The config's problems, then every service's spec and routes: (no errors, any warnings)."""
    from runmcp_fast.snapshot import check_routes

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{problem.severity}: {problem}", file=sys.stderr)
        return False, any(p.severity == "warning" for p in exc.problems)
    notes: list[str] = []
    problems = check_routes(config, path, notes)
    for problem in problems:
        print(f"{problem.severity}: {problem}", file=sys.stderr)
    for note in notes:
        print(note)
    warned = any(p.severity == "warning" for p in problems)
    if any(p.severity == "error" for p in problems):
        return False, warned
    count = len(config.services) + sum(len(t.services) for t in config.tenants)
    summary = f"{count} service{'' if count == 1 else 's'}"
    if config.tenants:
        summary += f" ({len(config.tenants)} tenant{'' if len(config.tenants) == 1 else 's'})"
    print(f"ok: {path}: {summary}")
    return True, warned


# A top-level key of a YAML document (or the first of a flow mapping), and a spec's
# version key in JSON ("openapi": "3.1.0"), for files that do not parse.
_YAML_TOP_KEY = re.compile(r"""(?m)^(?:\{[ \t]*)?["']?([A-Za-z_]+)["']?[ \t]*:""")
_JSON_SPEC_KEY = re.compile(r'"(?:openapi|swagger)"\s*:\s*"\d')


def _is_gateway_config(text: str) -> bool:
    """A gateway config has `listeners`, or at least no `openapi`/`swagger`, at its top."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        try:
            data = msgspec.json.decode(stripped)
        except msgspec.DecodeError:
            pass  # YAML flow style, or broken: told by the text below
        else:
            if isinstance(data, dict):
                return "listeners" in data or not ("openapi" in data or "swagger" in data)
            return True
    keys = set(_YAML_TOP_KEY.findall(stripped))
    spec = "openapi" in keys or "swagger" in keys or _JSON_SPEC_KEY.search(stripped) is not None
    return "listeners" in keys or not spec


def _cmd_apply(args: argparse.Namespace) -> int:
    from runmcp_fast.cluster.apply import apply_command

    return apply_command(args.file, args.endpoints, args.prefix, args.dry_run, args.max_txn_ops)


def _cmd_schema(args: argparse.Namespace) -> int:
    from runmcp_fast.plugins.registry import registry_for
    from runmcp_fast.plugins.schema import with_plugins

    registry, errors = registry_for(args.custom_plugin or [])
    for _, error in errors:
        print(f"warning: {error}", file=sys.stderr)
    schema = with_plugins(config_schema(), registry)
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: {args.output}: can not write: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def _serve_config(args: argparse.Namespace) -> GatewayConfig:
    if args.config:
        if args.upstream or args.openapi or args.prefix or args.mcp_upstream:
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
    if not args.upstream and not args.mcp_upstream:
        raise ConfigError(
            [
                Problem(
                    "<command line>",
                    "",
                    "nothing to serve",
                    "give -c FILE, --upstream URL or --mcp-upstream URL",
                )
            ]
        )
    services: list[dict[str, object]] = []
    if args.mcp_upstream:
        # One MCP server; each URL is a replica of it. Reached at /mcp.
        services.append(
            {
                "name": "mcp",
                "kind": "mcp",
                "upstream": args.mcp_upstream,
                "mcp": {"path": "/mcp"},
            }
        )
    if args.upstream:
        service: dict[str, object] = {"name": "default", "upstream": args.upstream}
        if args.openapi:
            service["openapi"] = str(Path(args.openapi).resolve())
            if args.base_path:
                service["base_path"] = args.base_path
            if not args.mcp_upstream:
                service["mcp"] = {"path": "/mcp"}  # its tools, on the one obvious path
        if args.prefix or not args.openapi:
            service["prefix"] = args.prefix or "/"
        services.append(service)
    data: dict[str, object] = {
        "listeners": [{"address": a} for a in args.listen or ["127.0.0.1:8080"]],
        "services": services,
        "access_log": bool(args.access_log),
    }
    if args.mcp_upstream:
        # Each open MCP event stream holds an upstream connection: let the pool
        # hold as many as the gateway takes clients (the default is 1,024).
        data["pool"] = {"max_connections": 10_000}
    return config_from_data(data, source="<command line>", base_dir=str(Path.cwd()))


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = _serve_config(args)
    except ConfigError as exc:
        return _report(exc.problems)
    source = args.config or "<command line>"
    _raise_file_limit()
    # MCP session ids are sealed with a key drawn once, here, before any fork:
    # every worker shares it.
    session_key()
    if args.workers > 1:
        from runmcp_fast.workers import run_workers

        try:
            return run_workers(
                config, source, args.workers, _serve_one, shared_socket=args.shared_socket
            )
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return _serve_one(config, source, None, "")


def _serve_one(
    config: GatewayConfig,
    source: str,
    sockets: list[socket.socket] | None,
    label: str,
    peers: Peers | None = None,
    hub: tuple[str, str] | None = None,
) -> int:
    """Run one gateway (one process, one event loop) until SIGTERM/SIGINT."""
    import uvloop

    from runmcp_fast.gateway import Gateway
    from runmcp_fast.problems import SnapshotError

    # Config changes (reloads, admin API) are logged one line each, like the startup line.
    logging.basicConfig(
        level=logging.INFO, format=f"runmcp-fast{label}: %(message)s", stream=sys.stderr
    )
    # A file is watched and reloaded; "<command line>" is not a file.
    config_path = None if source.startswith("<") else source
    try:
        gateway = Gateway(
            config,
            source=source,
            sockets=sockets,
            label=label,
            config_path=config_path,
            peers=peers,
            hub=hub,
        )
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

    routes = commands.add_parser(
        "routes", help="print the compiled route table of a spec, or of a gateway config"
    )
    routes.add_argument("spec", nargs="?", help="OpenAPI 3.x or Swagger 2.0 file (JSON or YAML)")
    routes.add_argument("-c", "--config", help="a gateway config: every service's routes")
    routes.add_argument(
        "--plugins", action="store_true", help="with -c: each route's steps, in order"
    )
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
    serve.add_argument(
        "--mcp-upstream",
        action="append",
        metavar="URL",
        help="proxy this MCP server (Streamable HTTP) at /mcp; repeat for its replicas",
    )
    serve.add_argument("--base-path", help="override the spec's servers/basePath prefix")
    serve.add_argument("--access-log", action="store_true", help="a JSON line per request")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes, each on a listening socket of its own (default 1)",
    )
    serve.add_argument(
        "--shared-socket",
        action="store_true",
        help="with --workers: one listening socket accepted on by all (to compare)",
    )
    serve.set_defaults(func=_cmd_serve)

    check = commands.add_parser(
        "check",
        help="validate specs and gateway configs; report every problem",
        description=(
            "Check OpenAPI/Swagger spec files and gateway config files (a file with"
            " listeners:, or without openapi:/swagger:, is a config: its settings are"
            " checked, then every service's spec and routes). The whole spec is checked:"
            " every $ref, the OpenAPI/Swagger JSON Schema, operationIds, path parameters;"
            " what routing and validation do not need is a warning. Exit 1 on any error"
            " (with --strict, on any warning too), 2 when a file can not be read."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="spec or gateway config files")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.add_argument(
        "--deep",
        action="store_true",
        help="also run openapi-spec-validator's semantic checks (slow on big specs)",
    )
    check.add_argument(
        "--deep-budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop the --deep checks of a spec after this long (default 60; 0: no limit)",
    )
    check.set_defaults(func=_cmd_check)

    apply = commands.add_parser(
        "apply",
        help="make the config store (etcd) hold what a config file says",
        description=(
            "Compute the difference between a config file's services, tenants, consumers,"
            " global plugins and settings and the config store, and apply it in one"
            " transaction (compared on every key's mod_revision). docs/cluster.md."
        ),
    )
    apply.add_argument("file", metavar="FILE", help="a gateway config (YAML or JSON)")
    apply.add_argument("--dry-run", action="store_true", help="print the difference only")
    apply.add_argument(
        "--endpoints", action="append", metavar="URL", help="etcd (default: the file's)"
    )
    apply.add_argument("--prefix", help="the cluster's key prefix (default: the file's)")
    apply.add_argument(
        "--max-txn-ops",
        type=_positive_int,
        default=128,
        help="operations per transaction (etcd's --max-txn-ops, default 128)",
    )
    apply.set_defaults(func=_cmd_apply)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the gateway config",
        description=(
            "Print the JSON Schema (draft 2020-12) of the gateway config file, for editors:"
            " e.g. `# yaml-language-server: $schema=gateway.schema.json` at the top of"
            " gateway.yaml."
        ),
    )
    schema.add_argument("-o", "--output", metavar="FILE", help="write it to FILE")
    schema.add_argument(
        "--custom-plugin",
        action="append",
        metavar="MODULE:CLASS",
        help="also describe this custom plugin's settings (installed ones are always in)",
    )
    schema.set_defaults(func=_cmd_schema)
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
