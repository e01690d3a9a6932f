"""Bearer tokens (JWS-signed JWTs) checked for jwt-auth and mcp-auth: keys, JWKS, claims.

What the compiled steps (steps/jwt.pxi) call on a cache miss: `Verifier.verify(token)`
gives the verified token (a tuple the step caches), a `Refused`, or an awaitable of
either when the keys must be fetched first (the request then waits; the event loop
never does).

- The compact form is parsed here, strictly (three base64url parts without padding,
  a JSON object header and payload); the signature is checked by PyJWT's algorithm
  layer over `cryptography` keys made once (bench/jwt/verify.py: parsing with
  PyJWT's own `decode` costs more than the signature for HS256 and RS256).
- A token's `alg` must be one the settings allow *and* one its key was configured
  for: an RSA key never verifies an HS256 token (the public-key-as-HMAC-secret
  attack), `none` is never accepted.
- `kid` is only ever a dict key among the configured (or fetched) keys; a kid that
  names none is refused (after at most one rate-limited JWKS refetch).
- JWKS are fetched on a thread (urllib, stdlib) awaited from the event loop, shared
  by the steps with the same URL, refreshed in the background when stale.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
import urllib.request
import weakref
from base64 import urlsafe_b64decode
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.exceptions import PyJWKError

log = logging.getLogger("runmcp_fast.plugins.jwt")

# The algorithms a key may verify, by the key's kind. "EdDSA" is RFC 8037's name,
# "Ed25519" RFC 9864's for the same signature.
RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGS = {
    "P-256": frozenset({"ES256"}),
    "P-384": frozenset({"ES384"}),
    "P-521": frozenset({"ES512"}),
}
OKP_ALGS = frozenset({"EdDSA", "Ed25519"})
HMAC_ALGS = {"HS256": 32, "HS384": 48, "HS512": 64}  # alg -> the shortest key (RFC 7518 §3.2)
ALGORITHMS = frozenset(
    {*RSA_ALGS, *(a for s in EC_ALGS.values() for a in s), *OKP_ALGS, *HMAC_ALGS}
)
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

_IMPLEMENTATIONS: dict[str, Algorithm] = get_default_algorithms()
_IMPLEMENTATIONS["Ed25519"] = _IMPLEMENTATIONS["EdDSA"]

MAX_TOKEN = 16384  # bytes: a longer bearer token is refused before it is parsed
MAX_JWKS = 1 << 20  # bytes read from a JWKS URL at most


class KeyError_(ValueError):
    """A key that can not be used (the message says why)."""


class Key:
    """One verification key: its `kid` (or None), the algorithms it verifies, the key."""

    __slots__ = ("algorithms", "kid", "material", "thumb")

    def __init__(self, kid: str | None, algorithms: frozenset[str], material: Any) -> None:
        self.kid = kid
        self.algorithms = algorithms
        self.material = material  # a cryptography public key, or the HMAC secret's bytes
        self.thumb = (kid, tuple(sorted(algorithms)), _fingerprint(material))


def _fingerprint(material: Any) -> bytes:
    if isinstance(material, bytes):
        return material
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(material.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _algorithms_of(public: Any) -> frozenset[str]:
    if isinstance(public, rsa.RSAPublicKey):
        return RSA_ALGS
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = _CURVES.get(public.curve.name)
        if curve is None:
            raise KeyError_(f"the curve {public.curve.name} is not supported (P-256, P-384, P-521)")
        return EC_ALGS[curve]
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKP_ALGS
    raise KeyError_(f"a {type(public).__name__} can not verify JWTs")


def _narrow(kinds: frozenset[str], alg: str | None) -> frozenset[str]:
    if alg is None:
        return kinds
    if alg not in kinds:
        raise KeyError_(f"this key can not verify {alg}: it is for {', '.join(sorted(kinds))}")
    return frozenset({alg})


def pem_key(pem: str, alg: str | None, kid: str | None) -> Key:
    """A public key or certificate in PEM; never a private key (give the public half)."""
    data = pem.strip().encode("ascii", "replace")
    if b"PRIVATE KEY" in data:
        raise KeyError_("this is a private key: give the public key (openssl pkey -pubout)")
    try:
        if data.startswith(b"-----BEGIN CERTIFICATE"):
            public: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            public = load_pem_public_key(data)
    except ValueError as exc:
        raise KeyError_(f"not a PEM public key or certificate: {exc}") from None
    return Key(kid, _narrow(_algorithms_of(public), alg), public)


def secret_key(secret: bytes, alg: str, kid: str | None) -> Key:
    """An HMAC secret for HS256/384/512, at least as long as the hash (RFC 7518 §3.2)."""
    shortest = HMAC_ALGS.get(alg)
    if shortest is None:
        raise KeyError_(f"a shared secret verifies HS256, HS384 or HS512, not {alg}")
    if len(secret) < shortest:
        raise KeyError_(
            f"{alg} needs a secret of at least {shortest} bytes, this has {len(secret)}"
        )
    if secret.lstrip().startswith(b"-----BEGIN") or secret.startswith(b"ssh-"):
        raise KeyError_("this secret is a PEM or SSH key: give it as public_key, with its alg")
    return Key(kid, frozenset({alg}), secret)


def jwk_key(jwk: Mapping[str, Any], alg: str | None = None) -> Key:
    """A JWK (RFC 7517): RSA, EC (P-256/384/521), OKP (Ed25519) or oct (HMAC)."""
    if not isinstance(jwk, Mapping):
        raise KeyError_("a JWK is a JSON object")
    if "d" in jwk or "p" in jwk:
        raise KeyError_("this JWK holds a private key: give the public one (without d)")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyError_("its kid is not a string")
    declared = jwk.get("alg")
    if declared is not None and not isinstance(declared, str):
        raise KeyError_("its alg is not a string")
    if alg is not None and declared is not None and alg != declared:
        raise KeyError_(f"the JWK says alg {declared}, the settings {alg}")
    alg = alg or declared
    kty = jwk.get("kty")
    if kty == "oct":
        raw = jwk.get("k")
        if not isinstance(raw, str):
            raise KeyError_("an oct JWK needs k")
        if alg is None:
            raise KeyError_("an oct JWK needs alg (HS256, HS384 or HS512)")
        return secret_key(_b64(raw.encode("ascii", "replace")), alg, kid)
    if alg == "Ed25519":
        alg_for_pyjwt: str | None = "EdDSA"
    else:
        alg_for_pyjwt = alg if alg in ALGORITHMS else None
    if alg is not None and alg not in ALGORITHMS:
        raise KeyError_(f"alg {alg} is not supported")
    try:
        public = PyJWK(dict(jwk), alg_for_pyjwt).key
    except (PyJWKError, ValueError, TypeError) as exc:
        raise KeyError_(f"not a usable JWK: {exc}") from None
    if hasattr(public, "public_key") and not isinstance(
        public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ):
        public = public.public_key()
    return Key(kid, _narrow(_algorithms_of(public), alg), public)


def jwks_keys(document: Any) -> tuple[list[Key], list[str]]:
    """The usable signature keys of a JWK Set, and why the others were left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyError_('not a JWK Set: no "keys" list')
    keys: list[Key] = []
    skipped: list[str] = []
    for index, jwk in enumerate(document["keys"]):
        if isinstance(jwk, dict) and jwk.get("use", "sig") != "sig":
            continue  # an encryption key
        try:
            keys.append(jwk_key(jwk))
        except KeyError_ as exc:
            skipped.append(f"keys[{index}]: {exc}")
    return keys, skipped


class KeySet:
    """Keys by kid; the keys without a kid are tried for tokens without one."""

    __slots__ = ("anonymous", "by_kid", "thumbs")

    def __init__(self, keys: Iterable[Key]) -> None:
        self.by_kid: dict[str, list[Key]] = {}
        self.anonymous: list[Key] = []
        thumbs = []
        for key in keys:
            if key.kid is None:
                self.anonymous.append(key)
            else:
                self.by_kid.setdefault(key.kid, []).append(key)
            thumbs.append(key.thumb)
        self.thumbs = frozenset(thumbs)

    def __len__(self) -> int:
        return len(self.thumbs)

    def candidates(self, kid: str | None, alg: str) -> list[Key] | None:
        """The keys that may verify a token with this header (None: the kid names no key)."""
        if kid is None:
            found = self.anonymous or [k for keys in self.by_kid.values() for k in keys]
        else:
            found_or_none = self.by_kid.get(kid)
            if found_or_none is None:
                return None
            found = found_or_none
        return [k for k in found if alg in k.algorithms]


# -- JWKS ------------------------------------------------------------------------------

# JWKS fetches run here (urllib blocks); at most 2 at once for the whole process.
_FETCHER = ThreadPoolExecutor(2, thread_name_prefix="runmcp-jwks")


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(
        url, headers={"Accept": "application/jwk-set+json, application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(MAX_JWKS + 1)
    if len(body) > MAX_JWKS:
        raise ValueError(f"the JWK Set is larger than {MAX_JWKS} bytes")
    return body


class JwksSource:
    """The keys at a JWKS URL: fetched when first needed, refreshed in the background
    every `refresh` seconds (on a miss that finds them stale), refetched at once for a
    kid it does not know at most every `min_refetch` seconds.

    One per (URL, timings) in a process, shared by the steps that name it, so a config
    reload does not fetch again. Counters: `fetches`, `failures`.
    """

    _shared: ClassVar[weakref.WeakValueDictionary[tuple[str, float, float, float], JwksSource]] = (
        weakref.WeakValueDictionary()
    )

    def __init__(self, url: str, refresh: float, min_refetch: float, timeout: float) -> None:
        self.url = url
        self.refresh_every = refresh
        self.min_refetch = min_refetch
        self.timeout = timeout
        self.keys: KeySet | None = None
        self.fetched_at = 0.0  # monotonic, of the last successful fetch
        self.tried_at = -1e18  # monotonic, of the last attempt
        self.forced_at = -1e18  # monotonic, of the last fetch for an unknown kid
        self.fetches = 0
        self.failures = 0
        self.failed_in_row = 0  # failed fetches since the last good one
        self.retry_at = -1e18  # monotonic: no fetch before then while no keys are held
        self.error: str | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners: weakref.WeakSet[Verifier] = weakref.WeakSet()

    @classmethod
    def shared(cls, url: str, refresh: float, min_refetch: float, timeout: float) -> JwksSource:
        key = (url, refresh, min_refetch, timeout)
        found = cls._shared.get(key)
        if found is None:
            found = cls(url, refresh, min_refetch, timeout)
            cls._shared[key] = found
        return found

    def stale(self, now: float) -> bool:
        return now - self.fetched_at >= self.refresh_every and now - self.tried_at >= min(
            self.min_refetch, self.refresh_every
        )

    def backing_off(self, now: float) -> bool:
        """No key set held, and the last fetch failed a moment ago: do not fetch again yet.

        Without this, while the JWKS URL failed every request with a token started a
        fetch of its own (and waited up to `timeout` for it): the IdP hammered at the
        rate requests come, and each request delayed. The wait doubles with each
        failure in a row, from 1 s up to `min_refetch` (an IdP back after a short
        outage is fetched again soon; one that stays down, rarely).
        """
        return self.keys is None and self._inflight is None and now < self.retry_at

    def may_force(self, now: float) -> bool:
        """An unknown kid may trigger a fetch now (rate-limited)."""
        return now - self.forced_at >= self.min_refetch

    def refresh_soon(self) -> None:
        """Fetch in the background (the requests go on with the keys held)."""
        if self._inflight is None:
            self._start(asyncio.get_running_loop(), forced=False)

    async def load(self, forced: bool = False) -> None:
        """Fetch now, or join the fetch under way. The fetch is a task of its own: a
        request that stops waiting (its client left) does not cancel it for the others."""
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.get_loop() is not loop:  # (another gateway's loop)
            task = self._start(loop, forced)
        await asyncio.shield(task)

    def _start(self, loop: asyncio.AbstractEventLoop, forced: bool) -> asyncio.Task[None]:
        now = time.monotonic()
        self.tried_at = now
        if forced:
            self.forced_at = now
        task = loop.create_task(self._fetch_once(loop))
        self._inflight = task
        self._tasks.add(task)
        task.add_done_callback(self._fetched)
        return task

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._inflight is task:
            self._inflight = None

    async def _fetch_once(self, loop: asyncio.AbstractEventLoop) -> None:
        self.fetches += 1
        try:
            body = await loop.run_in_executor(_FETCHER, _fetch, self.url, self.timeout)
            keys, skipped = jwks_keys(orjson.loads(body))
        except (OSError, ValueError, orjson.JSONDecodeError) as exc:
            self.failures += 1
            self.failed_in_row += 1
            pause = min(2.0 ** (self.failed_in_row - 1), max(self.min_refetch, 1.0))
            self.retry_at = time.monotonic() + pause
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("JWKS %s: can not use it (%s); keeping the keys held", self.url, self.error)
            return
        if skipped:
            log.warning("JWKS %s: keys left out: %s", self.url, "; ".join(skipped))
        self.error = None
        self.failed_in_row = 0
        self.fetched_at = time.monotonic()
        changed = self.keys is not None and KeySet(keys).thumbs != self.keys.thumbs
        self.keys = KeySet(keys)
        if changed:
            for verifier in tuple(self.listeners):
                verifier.keys_changed()


# -- verification ------------------------------------------------------------------------


class Refused:
    """Why a token is refused: the HTTP status (401, or 503 when its keys can not be
    had), the OAuth error code for WWW-Authenticate, and a sentence for the client."""

    __slots__ = ("detail", "error", "status")

    def __init__(self, detail: str, status: int = 401, error: str = "invalid_token") -> None:
        self.detail = detail
        self.status = status
        self.error = error

    def __repr__(self) -> str:
        return f"Refused({self.status}, {self.detail!r})"


Verified = tuple[float, dict[str, Any], frozenset[str], Any]
"""(wall-clock deadline for the cache, claims, scopes, consumer or None)."""


def _b64(part: bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2)."""
    if part.endswith(b"=") or b"+" in part or b"/" in part:
        raise ValueError("not base64url")
    return urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The token's scopes: `scope` (RFC 8693/9068, space-separated) or `scp` (a list or a
    space-separated string, as Azure AD and Okta give it)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list):
            return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


class Verifier:
    """One step's token checks: keys, algorithms, iss, aud, time claims, required claims,
    and the claim -> consumer mapping. `keys_changed()` empties the caches registered in
    `caches` (the compiled step's), since a removed key must stop verifying at once."""

    def __init__(
        self,
        *,
        keys: Sequence[Key] = (),
        jwks: JwksSource | None = None,
        algorithms: Iterable[str] | None = None,
        issuers: Sequence[str] = (),
        audiences: Sequence[str] = (),
        leeway: float = 60.0,
        required: Sequence[str] = (),
        consumers: Mapping[str, Mapping[str, Any]] | None = None,
        cache_ttl: float = 300.0,
    ) -> None:
        self.static = KeySet(keys)
        self.jwks = jwks
        allowed = frozenset(algorithms) if algorithms is not None else None
        if allowed is None:
            allowed = (
                frozenset(a for k in keys for a in k.algorithms) if jwks is None else ALGORITHMS
            )
        self.algorithms = allowed - {"none"}
        self.issuers = frozenset(issuers)
        self.audiences = frozenset(audiences)
        self.leeway = leeway
        self.required = tuple(required)
        self.consumers = {claim: dict(values) for claim, values in (consumers or {}).items()}
        self.cache_ttl = cache_ttl
        self.caches: list[dict[bytes, Any]] = []
        if jwks is not None:
            jwks.listeners.add(self)

    def keys_changed(self) -> None:
        for cache in self.caches:
            cache.clear()

    def with_audiences(self, audiences: Sequence[str]) -> Verifier:
        """The same checks for another audience (an MCP endpoint's resource URL)."""
        twin = Verifier.__new__(Verifier)
        twin.__dict__.update(self.__dict__)
        twin.audiences = frozenset(audiences)
        twin.caches = []
        if self.jwks is not None:
            self.jwks.listeners.add(twin)
        return twin

    # -- the miss path ---------------------------------------------------------------

    def verify(self, token: bytes) -> Verified | Refused | Awaitable[Verified | Refused]:
        if len(token) > MAX_TOKEN:
            return Refused(f"the token is longer than {MAX_TOKEN} bytes")
        parts = token.split(b".")
        if len(parts) != 3:
            return Refused("not a JWT: it needs three dot-separated parts (JWE is not accepted)")
        try:
            header = orjson.loads(_b64(parts[0]))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return Refused("the token's header is not base64url JSON")
        if not isinstance(header, dict):
            return Refused("the token's header is not a JSON object")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Refused(f"the algorithm {str(alg)[:20]!r} is not accepted here")
        if "crit" in header:
            return Refused("the token has critical header parameters, none is understood")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            return Refused("the token's kid is not a string")
        found = self._keys_for(kid, alg)
        if found is None:
            return self._unknown_kid(token, parts, kid, alg)
        return self._check(parts, alg, found)

    def _keys_for(self, kid: str | None, alg: str) -> list[Key] | None:
        """The keys for this header among the configured and fetched ones; None: unknown kid."""
        static = self.static.candidates(kid, alg) if len(self.static) else None
        jwks = self.jwks
        fetched = None
        if jwks is not None and jwks.keys is not None:
            fetched = jwks.keys.candidates(kid, alg)
            now = time.monotonic()
            if jwks.stale(now):
                jwks.refresh_soon()
        if static is None and fetched is None:
            return None
        return (static or []) + (fetched or [])

    def _unknown_kid(
        self, token: bytes, parts: list[bytes], kid: str | None, alg: str
    ) -> Refused | Awaitable[Verified | Refused]:
        jwks = self.jwks
        if jwks is not None and jwks.backing_off(time.monotonic()):
            # The set could not be fetched a moment ago: answered now, not by another fetch.
            if not len(self.static):
                return Refused("the keys to check this token can not be fetched now", 503, "")
            return Refused("the token's kid names no key this gateway has" if kid else "no key")
        if jwks is not None and (jwks.keys is None or jwks.may_force(time.monotonic())):
            return self._after_fetch(parts, kid, alg, forced=jwks.keys is not None)
        if jwks is not None and jwks.keys is None:
            return Refused("the keys to check this token can not be fetched now", 503, "")
        return Refused("the token's kid names no key this gateway has" if kid else "no key")

    async def _after_fetch(
        self, parts: list[bytes], kid: str | None, alg: str, *, forced: bool
    ) -> Verified | Refused:
        jwks = self.jwks
        assert jwks is not None
        await jwks.load(forced=forced)
        if jwks.keys is None and not len(self.static):
            return Refused("the keys to check this token can not be fetched now", 503, "")
        found = self._keys_for(kid, alg)
        if found is None:
            return Refused("the token's kid names no key this gateway has" if kid else "no key")
        return self._check(parts, alg, found)

    def _check(self, parts: list[bytes], alg: str, keys: list[Key]) -> Verified | Refused:
        if not keys:
            return Refused(f"no key of this gateway verifies {alg} for this kid")
        try:
            signature = _b64(parts[2])
            payload = _b64(parts[1])
        except (ValueError, binascii.Error):
            return Refused("the token is not base64url")
        signed = parts[0] + b"." + parts[1]
        implementation = _IMPLEMENTATIONS[alg]
        for key in keys:
            try:
                if implementation.verify(signed, key.material, signature):
                    break
            except (ValueError, TypeError):
                continue
        else:
            return Refused("the token's signature is not valid")
        try:
            claims = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return Refused("the token's claims are not JSON")
        if not isinstance(claims, dict):
            return Refused("the token's claims are not a JSON object")
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> Verified | Refused:
        now = time.time()
        leeway = self.leeway
        exp = claims.get("exp")
        if exp is not None:
            if not _is_number(exp):
                return Refused("exp is not a number")
            if now >= exp + leeway:
                return Refused("the token has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_number(nbf):
                return Refused("nbf is not a number")
            if now < nbf - leeway:
                return Refused("the token is not valid yet (nbf)")
        iat = claims.get("iat")
        if iat is not None and not _is_number(iat):
            return Refused("iat is not a number")
        for name in self.required:
            if name not in claims:
                return Refused(f"the token has no {name} claim")
        if self.issuers:
            iss = claims.get("iss")
            if not isinstance(iss, str) or iss not in self.issuers:
                return Refused("the token's issuer (iss) is not accepted here")
        if self.audiences:
            aud = claims.get("aud")
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.audiences for a in given):
                return Refused("the token is not for this audience (aud)")
        consumer = None
        for claim, values in self.consumers.items():
            value = claims.get(claim)
            if isinstance(value, str | int) and not isinstance(value, bool):
                consumer = values.get(str(value))
                if consumer is not None:
                    break
        deadline = now + self.cache_ttl
        if exp is not None:
            deadline = min(deadline, exp + leeway)
        return (deadline, claims, scopes_of(claims), consumer)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
