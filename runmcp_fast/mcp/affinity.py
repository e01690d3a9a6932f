"""Session ids that carry their own route: which replica holds the session, and its id there.

The client sees one opaque id per MCP session. It is the upstream replica's
own session id, sealed with AES-GCM together with the replica it lives on, so
any worker or node holding the key routes the session's next request to that
replica with no shared store. A forged or altered id fails authentication
and gets 404 (the spec's answer for an unknown session); an id naming a
replica the service no longer has gets 404 too, and the client starts a new
session.

The key is derived once per process start (HKDF-SHA256) from
`RUNMCP_MCP_SESSION_SECRET` when it is set, so every node given the same
secret understands every other node's ids, or else from 32 random bytes,
drawn in the parent before `--workers` forks so that all workers share it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_ENV = "RUNMCP_MCP_SESSION_SECRET"
_FORMAT = 1  # the first byte of every sealed id's plaintext
_NONCE = 12
_REPLICA_TAG = 4  # bytes of the replica URL's digest kept in the id
_CACHE_LIMIT = 65536  # opened ids remembered per service (then forgotten at once)
# Longest upstream session id (or legacy endpoint) sealed: servers that carry state in a
# signed id pass 1 KiB; sealed (base64 of id + 33 bytes), 4 KiB stays within a request's
# header and URL limits (16 KiB of headers, 8 KiB of URL by default).
MAX_ID = 4096

_key: bytes | None = None


def derive_key(secret: bytes) -> bytes:
    """The 256-bit AES key for session ids, from any secret."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"runmcp-fast",
        info=b"mcp session id v1",
    ).derive(secret)


def session_key() -> bytes:
    """This process's key: derived on first use, then fixed for the process's life."""
    global _key
    if _key is None:
        secret = os.environ.get(SECRET_ENV)
        _key = derive_key(secret.encode("utf-8") if secret else os.urandom(32))
    return _key


def replica_tag(url: str) -> bytes:
    """What names a replica inside an id: a digest of its URL, so a reordered list still routes."""
    return hashlib.sha256(url.encode("utf-8")).digest()[:_REPLICA_TAG]


class SessionCodec:
    """Seals and opens one service's session ids.

    The service's name is the associated data: an id issued for one service
    is refused by every other. Opened ids are remembered (bounded), so a
    session's requests after its first cost a dict lookup, not a decryption.
    `seal_once` remembers what it sealed too: upstreams repeat `Mcp-Session-Id`
    on every response, and sealing each afresh (a nonce, AES-GCM, base64) was
    the MCP proxy's largest cost per `tools/call` after the data plane's own; a
    session then keeps one id for the process's life (clients expect the id
    they were given, where a new nonce each time changed it per response).
    """

    __slots__ = ("_aad", "_aead", "_cache", "_sealed", "_tags")

    def __init__(self, key: bytes, service: str, replicas: tuple[str, ...]) -> None:
        self._aead = AESGCM(key)
        self._aad = service.encode("utf-8")
        self._tags = tuple(replica_tag(url) for url in replicas)
        self._cache: dict[bytes, tuple[int, bytes]] = {}
        self._sealed: dict[tuple[int, bytes], bytes] = {}

    def seal_once(self, replica: int, upstream_id: bytes) -> bytes:
        """seal(), remembered: the same id for the same upstream session each time."""
        known = self._sealed.get((replica, upstream_id))
        if known is not None:
            return known
        token = self.seal(replica, upstream_id)
        if len(self._sealed) >= _CACHE_LIMIT:
            self._sealed.clear()  # bounded; an evicted session's next id is a new spelling
        self._sealed[(replica, upstream_id)] = token
        return token

    def seal(self, replica: int, upstream_id: bytes) -> bytes:
        """The id the client sees for `upstream_id` on replica number `replica`: a fresh
        nonce each time (the gateway's own endpoint seals one value for every session)."""
        if len(upstream_id) > MAX_ID:
            raise ValueError(f"an upstream session id of {len(upstream_id)} bytes is too long")
        nonce = os.urandom(_NONCE)
        plain = b"%c%b%b" % (_FORMAT, self._tags[replica], upstream_id)
        sealed = self._aead.encrypt(nonce, plain, self._aad)
        token = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=")
        self._remember(token, (replica, upstream_id))
        return token

    def tables(self) -> tuple[dict[bytes, tuple[int, bytes]], dict[tuple[int, bytes], bytes]]:
        """The opened and sealed ids remembered (the same dicts for the codec's life)."""
        return self._cache, self._sealed

    def open(self, token: bytes) -> tuple[int, bytes] | None:
        """(replica number, upstream id), or None: forged, altered, or its replica gone."""
        known = self._cache.get(token)
        if known is not None:
            return known
        if len(token) > 2 * MAX_ID:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE + 16 or base64.urlsafe_b64encode(raw).rstrip(b"=") != token:
            return None  # too short, or not the one spelling seal() gives
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad)
        except InvalidTag:
            return None
        if len(plain) < 1 + _REPLICA_TAG or plain[0] != _FORMAT:
            return None
        try:
            replica = self._tags.index(plain[1 : 1 + _REPLICA_TAG])
        except ValueError:
            return None  # sealed for a replica this service no longer has
        opened = (replica, plain[1 + _REPLICA_TAG :])
        self._remember(token, opened)
        return opened

    def forget(self, token: bytes) -> None:
        """Drop an ended session's id from the cache, which then holds the live ones,
        not every id since the start (bench/soak: ~250 bytes per session, up to the
        limit). Sent again, the id still opens, by decryption. What `seal_once`
        remembers of the session goes too."""
        opened = self._cache.pop(token, None)
        if opened is not None:
            self._sealed.pop(opened, None)

    def __len__(self) -> int:
        """How many opened ids are remembered."""
        return len(self._cache)

    def _remember(self, token: bytes, opened: tuple[int, bytes]) -> None:
        cache = self._cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()  # bounded whatever clients send; sessions re-open on their next request
        cache[token] = opened
