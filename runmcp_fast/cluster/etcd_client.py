"""A small asyncio client for etcd's v3 API over its HTTP/JSON gateway (aiohttp).

What the gateway needs and nothing more: a paginated range read at one
revision, transactions (compare on `mod_revision`), a watch on a prefix from a
revision (reporting compaction), leases (grant, keep-alive, revoke), and the
user/password token. The same endpoints on etcd 3.4 (Debian 12) and 3.5:
`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`, `/v3/auth/authenticate`.
Why not a gRPC client: docs/cluster.md ("The client").

Every request tries the endpoints in turn, starting with the last one that
answered, within one deadline: a member down costs a connect error, not the
caller's whole budget. Keys and values are bytes; the gateway's base64 and
int64-as-string encoding stay in here.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from runmcp_fast.cluster.errors import CompactedError, EtcdError, EtcdUnavailable

__all__ = [
    "CompactedError",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "Event",
    "KeyValue",
    "TxnOp",
    "WatchBatch",
    "prefix_end",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int = 0
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """A put (`kv.value` is the new value) or a delete (`deleted`, value empty)."""

    kv: KeyValue
    deleted: bool


@dataclass(slots=True)
class WatchBatch:
    """One watch response: its events in order; `revision` is the last one's."""

    revision: int
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TxnOp:
    """One operation of a transaction: put `value` at `key`, or delete the key
    (`value` None), or every key from `key` to `range_end`. A put with `prev_kv`
    asks for the key as it was (txn's `responses`: whether the write created it)."""

    key: bytes
    value: bytes | None = None
    lease: int = 0
    range_end: bytes | None = None
    prev_kv: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.value is None:
            request: dict[str, Any] = {"key": _b64(self.key)}
            if self.range_end is not None:
                request["range_end"] = _b64(self.range_end)
            return {"request_delete_range": request}
        put: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
        if self.lease:
            put["lease"] = str(self.lease)
        if self.prev_kv:
            put["prev_kv"] = True
        return {"request_put": put}


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction's condition on `mod_revision` (or `create_revision` with
    `target="CREATE"`): `result` EQUAL, LESS, GREATER or NOT_EQUAL to `revision`;
    with `range_end`, every key from `key` to it must satisfy it."""

    key: bytes
    revision: int
    result: str = "EQUAL"
    target: str = "MOD"
    range_end: bytes | None = None

    @classmethod
    def exists(cls, key: bytes) -> Compare:
        return cls(key, 0, "GREATER", "CREATE")

    @classmethod
    def unchanged_since(cls, prefix: bytes, revision: int) -> Compare:
        """No key under `prefix` written after `revision` (one deleted is not seen)."""
        return cls(prefix, revision + 1, "LESS", "MOD", prefix_end(prefix))

    def to_json(self) -> dict[str, Any]:
        name = "mod_revision" if self.target == "MOD" else "create_revision"
        data = {
            "key": _b64(self.key),
            "target": self.target,
            "result": self.result,
            name: str(self.revision),
        }
        if self.range_end is not None:
            data["range_end"] = _b64(self.range_end)
        return data


# Failures before the request left: it can not have been applied. (aiohttp 3.10+
# tells a connect timeout apart from a read timeout.)
_NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    *((aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()),
)


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _kv(data: dict[str, Any]) -> KeyValue:
    # proto3 JSON leaves out zero values: an empty value has no "value" key.
    return KeyValue(
        key=_unb64(data.get("key")),
        value=_unb64(data.get("value")),
        mod_revision=int(data.get("mod_revision", 0)),
        create_revision=int(data.get("create_revision", 0)),
        lease=int(data.get("lease", 0)),
    )


class EtcdClient:
    """One etcd cluster, reached through any of `endpoints` (`http(s)://host:port`).

    `timeout` bounds every unary call (all endpoints together). Create it on the
    event loop that uses it: the aiohttp session belongs to that loop (and so to
    that process: a forked worker makes its own).
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout: float = 2.0,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._username = username
        self._password = password
        self._ssl = ssl_context
        self._token: str | None = None
        self._preferred = 0
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing -----------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    def _failed(self, index: int) -> None:
        """Endpoint `index` did not answer: the next request starts with the one after
        it. A hung member (SIGSTOP, a frozen VM) takes connections and never answers,
        so a request there spends its whole budget; starting every request with it,
        the last one that had answered, cut the node off from a healthy cluster."""
        if self._preferred == index:
            self._preferred = (index + 1) % len(self.endpoints)

    async def _authenticate(self, endpoint: str, timeout: float) -> None:
        body = {"name": self._username, "password": self._password or ""}
        async with self._http().post(
            f"{endpoint}/v3/auth/authenticate",
            data=orjson.dumps(body),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            data = _json(await response.read())
            if response.status != 200 or "token" not in data:
                message = _message(data)
                if "authentication is not enabled" in message:
                    # Credentials are given to the nodes before etcd turns auth on
                    # (the usual rollout order): go on without a token, as etcd's own
                    # client does, instead of failing every request until then. Once
                    # auth is on, the first request refused for want of a user makes
                    # `call` authenticate again.
                    self._token = ""
                    return
                raise EtcdError(f"etcd refused the user {self._username!r}: {message}")
            self._token = data["token"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def call(
        self, path: str, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """POST `body` to `path` on the first endpoint that answers; its JSON answer."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        last: Exception | None = None
        # A request that reached a member and got no answer may have been applied.
        maybe_applied = False
        payload = orjson.dumps(body)
        for attempt in range(2):  # a second round only to renew an expired token
            for index in self._order():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                endpoint = self.endpoints[index]
                try:
                    if self._username and self._token is None:
                        await self._authenticate(endpoint, left)
                    async with self._http().post(
                        endpoint + path,
                        # (aiohttp wants a stream for bodies over 1 MiB.)
                        data=io.BytesIO(payload) if len(payload) > 1 << 20 else payload,
                        headers=self._headers(),
                        timeout=aiohttp.ClientTimeout(total=deadline - time.monotonic()),
                    ) as response:
                        raw = await response.read()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last = exc
                    maybe_applied |= not isinstance(exc, _NOT_SENT)
                    self._failed(index)
                    continue
                data = _json(raw)
                if response.status == 200:
                    self._preferred = index
                    return data
                message = _message(data)
                if self._username and attempt == 0 and _needs_token(message):
                    self._token = None  # expired or revoked: authenticate again
                    break
                if response.status in (502, 503) or "no leader" in message:
                    last = EtcdError(message)
                    continue  # this member can not serve: try another
                raise EtcdError(f"{path}: {message}")
            else:
                break
        raise EtcdUnavailable(
            f"no etcd endpoint answered within {budget:g} s ({', '.join(self.endpoints)}): {last!r}"
            if last is not None
            else f"no etcd endpoint answered within {budget:g} s ({', '.join(self.endpoints)})",
            maybe_applied=maybe_applied,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- key-value ----------------------------------------------------------------------

    async def range_prefix(
        self, prefix: bytes, *, page: int = 500, timeout: float | None = None
    ) -> tuple[int, list[KeyValue]]:
        """Every key under `prefix`, read at one revision in pages; (revision, kvs).

        The first page fixes the revision; the next pages ask for that revision,
        so a write in between is not half seen (it comes through the watch).
        """
        end = prefix_end(prefix)
        start = prefix
        revision = 0
        found: list[KeyValue] = []
        while True:
            body: dict[str, Any] = {"key": _b64(start), "range_end": _b64(end), "limit": page}
            if revision:
                body["revision"] = revision
            try:
                data = await self.call("/v3/kv/range", body, timeout)
            except EtcdError as exc:
                if "compacted" in str(exc):
                    raise CompactedError(revision) from None
                raise
            if not revision:
                revision = int(data["header"]["revision"])
            kvs = [_kv(item) for item in data.get("kvs", [])]
            found.extend(kvs)
            if not data.get("more") or not kvs:
                return revision, found
            start = kvs[-1].key + b"\x00"

    async def get(self, key: bytes) -> KeyValue | None:
        data = await self.call("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Put one key; the revision of the write."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        data = await self.call("/v3/kv/put", body)
        return int(data["header"]["revision"])

    async def delete_prefix(self, prefix: bytes) -> int:
        data = await self.call(
            "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        )
        return int(data["header"]["revision"])

    async def txn(
        self,
        compare: Sequence[tuple[bytes, int] | Compare],
        success: list[TxnOp],
        *,
        timeout: float | None = None,
        responses: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, int]:
        """Apply `success` if every (key, mod_revision) matches (0: the key is absent)
        and every `Compare` holds.

        (succeeded, revision): the revision of the write, or the store's revision
        when a comparison failed and nothing was written. `responses`, when given,
        receives one answer per operation applied (etcd's ResponseOp, as JSON).
        """
        body = {
            "compare": [
                (c if isinstance(c, Compare) else Compare(c[0], c[1])).to_json() for c in compare
            ],
            "success": [op.to_json() for op in success],
        }
        data = await self.call("/v3/kv/txn", body, timeout)
        if responses is not None:
            responses.extend(data.get("responses", ()))
        # proto3 JSON leaves `succeeded: false` out.
        return bool(data.get("succeeded", False)), int(data["header"]["revision"])

    async def compact(self, revision: int) -> None:
        await self.call("/v3/kv/compaction", {"revision": revision, "physical": True})

    async def revision(self) -> int:
        data = await self.call("/v3/maintenance/status", {})
        return int(data["header"]["revision"])

    # -- leases -------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        data = await self.call("/v3/lease/grant", {"TTL": ttl, "ID": 0})
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renew the lease once; its TTL left (0: the lease is gone)."""
        data = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    # -- watch --------------------------------------------------------------------------

    async def watch(
        self,
        prefix: bytes,
        start_revision: int,
        *,
        connect_timeout: float | None = None,
        settle: float = 0.0,
    ) -> AsyncIterator[WatchBatch]:
        """Every change under `prefix` from `start_revision` on, batch by batch.

        `settle`: once the batches read are handed out, leave the stream's socket
        unread that long, so the events a burst of writes sends meanwhile wait in
        the kernel and come in one read, not one wake-up of this process each
        (see `_settle`).

        Raises CompactedError when `start_revision` is compacted, EtcdUnavailable
        when no endpoint takes the watch, and ConnectionError when the stream
        breaks (the caller resumes from the last revision it was given + 1).
        """
        body = orjson.dumps(
            {
                "create_request": {
                    "key": _b64(prefix),
                    "range_end": _b64(prefix_end(prefix)),
                    "start_revision": start_revision,
                }
            }
        )
        timeout = self.timeout if connect_timeout is None else connect_timeout
        for attempt in range(2):  # a second time only with a new token
            response = await self._open_watch(body, timeout)
            delivered = False
            try:
                async for batch in _watch_stream(response, settle):
                    delivered = True
                    yield batch
            except TokenRefused:
                # etcd keeps simple tokens in memory: after its restart, or past
                # --auth-token-ttl, a unary call gets a 401 (`call` authenticates
                # again) but a watch is created cancelled. Nothing else renews the
                # token while the node is idle (etcd 3.4 does not check it on lease
                # keep-alives or status), so every reconnect failed the same way and
                # the node never followed etcd again.
                if delivered or attempt or not self._username:
                    raise
                self._token = None
            finally:
                response.close()

    async def _open_watch(self, body: bytes, timeout: float) -> aiohttp.ClientResponse:
        """The watch's streaming response from the first endpoint that takes it."""
        response: aiohttp.ClientResponse | None = None
        last: Exception | None = None
        for index in self._order():
            endpoint = self.endpoints[index]
            try:
                if self._username and self._token is None:
                    await self._authenticate(endpoint, timeout)
                # The answer's head within `timeout` (etcd sends it at once): a hung
                # member takes the connection and never answers.
                response = await asyncio.wait_for(
                    self._http().post(
                        endpoint + "/v3/watch",
                        data=body,
                        # Require a leader (gRPC metadata through the gateway), as
                        # etcd's own client does: a member cut off from the others
                        # otherwise keeps the watch open and sends nothing, while
                        # writes go on through the rest (and the keep-alive too, so
                        # nothing told the node it had stopped following).
                        headers={**self._headers(), "Grpc-Metadata-hasleader": "true"},
                        # No total: the stream lasts; a dead peer is found by the
                        # caller's lease keep-alive, which closes the watch.
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout),
                    ),
                    timeout,
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = exc
                self._failed(index)
                continue
            if response.status != 200:
                last = EtcdError(_message(_json(await response.read())))
                response.release()
                response = None
                continue
            self._preferred = index
            break
        if response is None:
            raise EtcdUnavailable(f"no etcd endpoint took the watch: {last}")
        return response


class TokenRefused(ConnectionError):
    """A watch cancelled for its token: unknown to etcd (any more), none, or older
    than a change to etcd's users (see `_needs_token`)."""


# The longest watch message taken: etcd's own request limit is 1.5 MiB (a spec part
# is 512 KiB, base64 in JSON adds a third), an operator may raise it.
MAX_WATCH_MESSAGE = 64 * 1024 * 1024


async def _watch_stream(
    response: aiohttp.ClientResponse, settle: float
) -> AsyncIterator[WatchBatch]:
    """The watch's JSON lines, as batches (the `created` answer is skipped).

    Read as whatever arrived, split here, not with `readline`: aiohttp's refuses a
    line over 512 KiB (LineTooLong), and an event carrying a spec part (512 KiB,
    base64 in JSON) is longer.
    """
    # The reads of a message not yet ended: joined once its newline comes (a spec
    # part arrives in a dozen reads; adding each to the rest would copy it each time).
    partial: list[bytes] = []
    partial_size = 0
    try:
        while True:
            chunk = await response.content.readany()
            if not chunk:
                raise ConnectionError("the etcd watch stream ended")
            if b"\n" not in chunk:
                partial.append(chunk)
                partial_size += len(chunk)
                if partial_size > MAX_WATCH_MESSAGE:
                    raise ConnectionError(
                        f"an etcd watch message is longer than {MAX_WATCH_MESSAGE} bytes"
                    )
                continue
            if partial:
                partial.append(chunk)
                chunk = b"".join(partial)
                partial.clear()
            lines = chunk.split(b"\n")
            carry = lines.pop()
            if carry:
                partial.append(carry)
            partial_size = len(carry)
            delivered = False
            for line in lines:
                batch = _watch_batch(line)
                if batch is not None:
                    yield batch
                    delivered = True
            # Everything read is handed out and no message is half-read: the next
            # event is etcd's to send, whenever it comes.
            if delivered and settle > 0.0 and not carry:
                await _settle(response, settle)
    except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
        raise ConnectionError(f"the etcd watch stream broke: {exc}") from None


def _watch_batch(line: bytes) -> WatchBatch | None:
    """The events of one watch message; None for one without (blank, `created`, a
    progress notification). Raises what ends the watch: an error, a cancel, a
    compaction."""
    if not line.strip():
        return None
    message = _json(line)
    if "error" in message:
        raise ConnectionError(f"the etcd watch failed: {_message(message['error'])}")
    result = message.get("result", {})
    compacted = int(result.get("compact_revision", 0))
    if compacted:
        raise CompactedError(compacted)
    if result.get("canceled"):
        reason = str(result.get("cancel_reason", "canceled"))
        if _needs_token(reason):
            raise TokenRefused(f"the etcd watch was canceled: {reason}")
        raise ConnectionError(f"the etcd watch was canceled: {reason}")
    events = result.get("events")
    if not events:
        return None
    batch = WatchBatch(0, [Event(_kv(e["kv"]), e.get("type") == "DELETE") for e in events])
    # The last event's revision, not the header's: a resume starts after what was
    # delivered (the header's revision may be sampled later).
    batch.revision = max(e.kv.mod_revision for e in batch.events)
    return batch


async def _settle(response: aiohttp.ClientResponse, seconds: float) -> None:
    """Stop reading the watch's socket for `seconds`.

    Why: etcd sends each revision as a message of its own (in two reads), so a
    burst of writes wakes every node's agent twice per write, on the CPUs its
    workers serve on. The agent coalesces the changes anyway (`Window`); read a
    settle apart, a burst's events come a few to a read. The first event of a quiet
    spell is read at once: only what follows it waits, and at most `seconds`.
    Measured (bench/cluster/watch_cpu.py, 500 events at 200/s): 123-142 us of the
    agent's CPU per event read as they come, 71-80 us with a 25 ms settle.

    Only a socket that is being read is paused: one aiohttp paused (its buffer
    full) is its to resume.
    """
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or not transport.is_reading():
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(seconds)
    finally:
        if not transport.is_closing():
            transport.resume_reading()


def _needs_token(message: str) -> bool:
    """etcd refused a request for its token: expired, unknown to it (a restart), none
    sent (auth was off when the client last authenticated), or issued before a change
    to etcd's users or roles ("revision of auth store is old": a JWT token carries the
    auth revision it was issued at, so adding any user made every node fail every
    write and watch until its token expired, minutes later; etcd's own client
    authenticates again on it)."""
    return (
        "token" in message
        or "user name is empty" in message
        or "revision of auth store is old" in message
    )


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {"message": str(data)}


def _message(data: dict[str, Any]) -> str:
    return str(data.get("message") or data.get("error") or data)
