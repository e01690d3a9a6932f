"""A demo upstream: examples/petstore.yaml served from memory, as an aiohttp app.

Every operation of the spec is implemented, with the spec's status codes and
bodies; it starts with a few pets and owners. Errors are RFC 9457
`application/problem+json` bodies (the spec's `Error` schema), including
aiohttp's own 404/405/413.

Run it with ``python -m runmcp_fast.demo --listen 127.0.0.1:8081``; it prints
where it listens and exits cleanly on SIGINT or SIGTERM.

Beyond the spec: pet responses carry an `ETag` (what `updatePet`'s `If-Match`
compares against; a mismatch is 412), `createPet` answers with a `Location`,
and the `X-Next` link of `listPets` pages with an `after=ID` cursor.
Malformed input is 400, a well-formed body naming an unknown owner is 422, and
an unknown or malformed id in the path is 404.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Final, TypeVar
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from runmcp_fast.config import parse_address

__all__ = ["Owner", "Pet", "PetStore", "main", "make_app"]

_INT64 = msgspec.Meta(ge=-(2**63), le=2**63 - 1)
Int64 = Annotated[int, _INT64]


class Pet(msgspec.Struct, frozen=True, omit_defaults=True, rename={"owner_id": "ownerId"}):
    """The spec's `Pet`: `NewPet` plus a read-only `id`."""

    id: Int64
    name: str
    tag: str | msgspec.UnsetType = msgspec.UNSET
    owner_id: Int64 | msgspec.UnsetType = msgspec.UNSET


class Owner(msgspec.Struct, frozen=True, omit_defaults=True):
    """The spec's `Owner`."""

    id: Int64
    name: str
    email: str | msgspec.UnsetType = msgspec.UNSET


class NewPet(msgspec.Struct, frozen=True, rename={"owner_id": "ownerId"}):
    """The body of `createPet` and `updatePet`; unknown keys (`id`, ...) are ignored."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    tag: str | msgspec.UnsetType = msgspec.UNSET
    owner_id: Int64 | msgspec.UnsetType = msgspec.UNSET


class Adoption(msgspec.Struct, frozen=True, rename={"pet_id": "petId"}):
    """The body of `adoptPet`."""

    pet_id: Int64


@dataclass
class PetStore:
    """The in-memory state of one app: pets and owners by id."""

    pets: dict[int, Pet] = field(default_factory=dict)
    owners: dict[int, Owner] = field(default_factory=dict)
    next_pet_id: int = 1
    next_owner_id: int = 1

    @classmethod
    def seeded(cls) -> PetStore:
        store = cls()
        alice = store.add_owner("Alice", "alice@example.com")
        bob = store.add_owner("Bob")
        store.add_owner("Carol", "carol@example.com")
        store.add_pet(NewPet("Rex", tag="dog", owner_id=alice.id))
        store.add_pet(NewPet("Tom", tag="cat", owner_id=bob.id))
        store.add_pet(NewPet("Nemo", tag="fish"))
        store.add_pet(NewPet("Luna", tag="cat", owner_id=alice.id))
        store.add_pet(NewPet("Kiwi"))
        return store

    def add_owner(self, name: str, email: str | None = None) -> Owner:
        owner = Owner(self.next_owner_id, name, msgspec.UNSET if email is None else email)
        self.owners[owner.id] = owner
        self.next_owner_id += 1
        return owner

    def add_pet(self, new: NewPet) -> Pet:
        pet = Pet(self.next_pet_id, new.name, new.tag, new.owner_id)
        self.pets[pet.id] = pet
        self.next_pet_id += 1
        return pet


STORE: Final = web.AppKey("store", PetStore)
BASE_PATH: Final = web.AppKey("base_path", str)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PROBLEM_TYPE = "application/problem+json"


class ProblemError(Exception):
    """Answer the request with an `application/problem+json` body."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem_response(
    status: int, detail: str | None = None, headers: Iterable[tuple[str, str]] = ()
) -> web.Response:
    """The spec's `Error` schema: `title` and `status`, and `detail` when there is one."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type=PROBLEM_TYPE,
        headers=dict(headers),
    )


def _json(value: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(value),
        content_type="application/json",
        headers=headers,
    )


def _etag(pet: Pet) -> str:
    return '"' + hashlib.sha256(msgspec.json.encode(pet)).hexdigest()[:20] + '"'


def _pet_response(
    pet: Pet, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(pet, status, {"ETag": _etag(pet), **(headers or {})})


_ASCII_INT = re.compile(r"-?[0-9]{1,19}")


def _path_id(request: web.Request, name: str, what: str) -> int:
    """The int64 path parameter `name`; a malformed one names no resource: 404."""
    raw = request.match_info[name]
    if _ASCII_INT.fullmatch(raw) is None or not -(2**63) <= int(raw) < 2**63:
        raise ProblemError(404, f"no {what} with id {raw!r}")
    return int(raw)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ProblemError(400, f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


_T = TypeVar("_T")


async def _body(request: web.Request, kind: type[_T]) -> _T:
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise ProblemError(415, f"send application/json, not {request.content_type!r}")
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise ProblemError(400, f"invalid body: {exc}") from None


def _owner_of(store: PetStore, new: NewPet) -> None:
    if isinstance(new.owner_id, int) and new.owner_id not in store.owners:
        raise ProblemError(422, f"no owner with id {new.owner_id}")


def _page(request: web.Request, items: list[_T], limit: int, key: Callable[[_T], int]) -> list[_T]:
    """Items after the `after` cursor (an id; the demo's own addition), at most `limit`."""
    raw = request.query.get("after")
    if raw is not None:
        if _ASCII_INT.fullmatch(raw) is None:
            raise ProblemError(400, f"after must be an id, not {raw!r}")
        after = int(raw)
        items = [item for item in items if key(item) > after]
    return items[: limit + 1]


# --- pets ---------------------------------------------------------------------


async def list_pets(request: web.Request) -> web.Response:
    store = request.app[STORE]
    limit = _limit(request)
    tags = request.query.getall("tag", [])
    pets = [
        pet
        for _, pet in sorted(store.pets.items())
        if not tags or (isinstance(pet.tag, str) and pet.tag in tags)
    ]
    page = _page(request, pets, limit, lambda pet: pet.id)
    headers: dict[str, str] = {}
    if len(page) > limit:
        page = page[:limit]
        query = [
            ("limit", str(limit)),
            *(("tag", tag) for tag in tags),
            ("after", str(page[-1].id)),
        ]
        headers["X-Next"] = f"{request.path}?{urlencode(query)}"
    return _json(page, headers=headers)


async def create_pet(request: web.Request) -> web.Response:
    store = request.app[STORE]
    new = await _body(request, NewPet)
    _owner_of(store, new)
    pet = store.add_pet(new)
    location = f"{request.app[BASE_PATH]}/pets/{pet.id}"
    return _pet_response(pet, 201, {"Location": location})


def _pet(request: web.Request) -> Pet:
    store = request.app[STORE]
    pet_id = _path_id(request, "petId", "pet")
    pet = store.pets.get(pet_id)
    if pet is None:
        raise ProblemError(404, f"no pet with id {pet_id}")
    return pet


async def show_pet(request: web.Request) -> web.Response:
    return _pet_response(_pet(request))


async def update_pet(request: web.Request) -> web.Response:
    store = request.app[STORE]
    pet = _pet(request)
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        tags = {tag.strip() for tag in if_match.split(",")}
        if "*" not in tags and _etag(pet) not in tags:
            raise ProblemError(412, f"pet {pet.id} has changed (ETag {_etag(pet)})")
    new = await _body(request, NewPet)
    _owner_of(store, new)
    updated = Pet(pet.id, new.name, new.tag, new.owner_id)
    store.pets[pet.id] = updated
    return _pet_response(updated)


async def delete_pet(request: web.Request) -> web.Response:
    pet = _pet(request)
    del request.app[STORE].pets[pet.id]
    return web.Response(status=204)


# --- owners -------------------------------------------------------------------


def _owner(request: web.Request) -> Owner:
    store = request.app[STORE]
    owner_id = _path_id(request, "ownerId", "owner")
    owner = store.owners.get(owner_id)
    if owner is None:
        raise ProblemError(404, f"no owner with id {owner_id}")
    return owner


async def list_owners(request: web.Request) -> web.Response:
    store = request.app[STORE]
    limit = _limit(request)
    prefix = request.query.get("name")
    if prefix == "":
        raise ProblemError(400, "name must not be empty")
    owners = [
        owner
        for _, owner in sorted(store.owners.items())
        if prefix is None or owner.name.startswith(prefix)
    ]
    return _json(owners[:limit])


async def show_owner(request: web.Request) -> web.Response:
    return _json(_owner(request))


async def list_owner_pets(request: web.Request) -> web.Response:
    store = request.app[STORE]
    owner = _owner(request)
    limit = _limit(request)
    pets = [pet for _, pet in sorted(store.pets.items()) if pet.owner_id == owner.id]
    return _json(pets[:limit])


async def adopt_pet(request: web.Request) -> web.Response:
    store = request.app[STORE]
    owner = _owner(request)
    adoption = await _body(request, Adoption)
    pet = store.pets.get(adoption.pet_id)
    if pet is None:
        raise ProblemError(404, f"no pet with id {adoption.pet_id}")
    store.pets[pet.id] = msgspec.structs.replace(pet, owner_id=owner.id)
    return web.Response(status=204)


# --- the app ------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Every error as problem+json: the handlers' own and aiohttp's (404, 405, 413, ...)."""
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(exc.status, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = f"{request.method} {request.path}" if exc.status in (404, 405) else None
        allow = [("Allow", exc.headers["Allow"])] if "Allow" in exc.headers else []
        return problem_response(exc.status, detail, allow)


def make_app(base_path: str = "/v1", *, store: PetStore | None = None) -> web.Application:
    """The petstore under `base_path` (the spec's is /v1), seeded unless `store` is given."""
    base = base_path.rstrip("/")
    app = web.Application(middlewares=[problems])
    app[STORE] = PetStore.seeded() if store is None else store
    app[BASE_PATH] = base
    app.router.add_get(f"{base}/pets", list_pets)
    app.router.add_post(f"{base}/pets", create_pet)
    app.router.add_get(f"{base}/pets/{{petId}}", show_pet)
    app.router.add_put(f"{base}/pets/{{petId}}", update_pet)
    app.router.add_delete(f"{base}/pets/{{petId}}", delete_pet)
    app.router.add_get(f"{base}/owners", list_owners)
    app.router.add_get(f"{base}/owners/{{ownerId}}", show_owner)
    app.router.add_get(f"{base}/owners/{{ownerId}}/pets", list_owner_pets)
    app.router.add_post(f"{base}/owners/{{ownerId}}/pets", adopt_pet)
    return app


def _url(address: object) -> str:
    if isinstance(address, str):
        return f"unix:{address}"
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"http://[{host}]:{address[1]}" if ":" in host else f"http://{host}:{address[1]}"
    return str(address)


async def serve(app: web.Application, address: tuple[str, int] | str, *, access_log: bool) -> None:
    """Serve `app` until SIGINT or SIGTERM; print one line saying where."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler: there Ctrl-C is a KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    try:
        site: web.BaseSite
        if isinstance(address, str):
            site = web.UnixSite(runner, address)
        else:
            site = web.TCPSite(runner, address[0], address[1])
        await site.start()
        where = ", ".join(_url(a) for a in runner.addresses)
        print(
            f"demo petstore upstream listening on {where} (base path {app[BASE_PATH] or '/'})",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runmcp_fast.demo",
        description="Serve examples/petstore.yaml from memory (a demo upstream for the gateway).",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8081",
        metavar="ADDRESS",
        help="HOST:PORT, [IPv6]:PORT or unix:PATH (default 127.0.0.1:8081; port 0 picks one)",
    )
    parser.add_argument("--base-path", default="/v1", help="the path prefix (default /v1)")
    parser.add_argument("--access-log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    try:
        address = parse_address(args.listen)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.base_path.startswith("/"):
        parser.error(f"--base-path {args.base_path!r} must start with '/'")
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = make_app(args.base_path)
    try:
        asyncio.run(serve(app, address, access_log=args.access_log))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: can not listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
