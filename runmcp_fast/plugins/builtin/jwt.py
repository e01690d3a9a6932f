"""jwt-auth: bearer JWTs verified against configured keys or a JWKS URL (docs/plugins/auth-tokens.md).

The settings shared with mcp-auth (keys, JWKS, issuer, algorithms, time claims,
required claims, cache) are `TokenSettings`; `verifier()` turns them into the
`plugins.jose.Verifier` the compiled step (steps/jwt.pxi) asks on a cache miss.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from runmcp_fast._dataplane import Consumer, Step
from runmcp_fast.plugins._steps import JwtAuthStep
from runmcp_fast.plugins.contract import (
    BuildContext,
    Plugin,
    PluginError,
    SecretValue,
    Settings,
)
from runmcp_fast.plugins.jose import (
    ALGORITHMS,
    HMAC_ALGS,
    JwksSource,
    Key,
    KeyError_,
    Verifier,
    jwk_key,
    pem_key,
    secret_key,
)

_HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_TOKEN_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
Algorithm = Annotated[
    str,
    Meta(pattern=r"^(RS|PS|ES|HS)(256|384|512)$|^EdDSA$|^Ed25519$"),
    Meta(description="RS256/384/512, PS256/384/512, ES256/384/512, EdDSA (Ed25519), HS256/384/512"),
]


def _doc(text: str) -> Meta:
    return Meta(description=text)


class KeySettings(Settings, frozen=True):
    """One verification key: a PEM public key (or certificate), a JWK, or a shared secret."""

    kid: Annotated[
        str | None, _doc("Tokens naming this kid use this key; without, tokens without a kid.")
    ] = None
    alg: Annotated[
        Algorithm | None,
        _doc(
            "The one algorithm this key verifies (required for a secret; a PEM or JWK key"
            " without it verifies every algorithm of its kind)."
        ),
    ] = None
    public_key: Annotated[
        SecretValue | None, _doc("A PEM public key or certificate: a string, {env} or {file}.")
    ] = None
    jwk: Annotated[
        dict[str, Any] | None, _doc("A public JWK (RFC 7517): RSA, EC, OKP (Ed25519) or oct.")
    ] = None
    secret: Annotated[
        SecretValue | None,
        _doc("An HMAC secret for HS256/384/512: a string, {env: NAME} or {file: PATH}."),
    ] = None
    secret_base64: Annotated[bool, _doc("The secret is base64 (or base64url) encoded.")] = False


class TokenSettings(Settings, frozen=True):
    """What jwt-auth and mcp-auth check of a token."""

    keys: Annotated[list[KeySettings], _doc("Verification keys given inline.")] = msgspec.field(
        default_factory=list
    )
    jwks_url: Annotated[
        str | None, _doc("A JWK Set URL (http or https), fetched off the event loop.")
    ] = None
    jwks_refresh: Annotated[
        float, Meta(ge=1), _doc("Seconds after which the JWK Set is fetched again.")
    ] = 300.0
    jwks_min_refetch: Annotated[
        float,
        Meta(ge=0),
        _doc("An unknown kid fetches the JWK Set again at most once per this many seconds."),
    ] = 30.0
    jwks_timeout: Annotated[float, Meta(gt=0), _doc("Seconds a JWK Set fetch may take.")] = 5.0
    algorithms: Annotated[
        list[Algorithm] | None,
        _doc(
            "The algorithms accepted (never none). Default: those of the inline keys;"
            " with a JWKS URL, every asymmetric one its keys allow."
        ),
    ] = None
    issuer: Annotated[
        str | list[str] | None, _doc("The accepted iss (one or a list); default: any.")
    ] = None
    leeway: Annotated[float, Meta(ge=0), _doc("Seconds of clock skew allowed on exp and nbf.")] = (
        60.0
    )
    required_claims: Annotated[
        list[str], _doc("Claims every token must have (exp by default).")
    ] = msgspec.field(default_factory=lambda: ["exp"])
    cache_size: Annotated[
        int, Meta(ge=1, le=100_000_000), _doc("Verified tokens remembered (by token).")
    ] = 65536
    cache_ttl: Annotated[
        float,
        Meta(gt=0),
        _doc("A verified token is remembered at most this long (and never past its exp)."),
    ] = 300.0


class JwtSettings(TokenSettings, frozen=True):
    audience: Annotated[
        str | list[str] | None, _doc("The accepted aud (one or a list); default: any.")
    ] = None
    header: Annotated[
        str,
        Meta(pattern=_HEADER),
        _doc("The header with the token: Authorization (Bearer scheme) or another one."),
    ] = "Authorization"
    cookie: Annotated[
        Annotated[str, Meta(pattern=_TOKEN_NAME)] | None,
        _doc("Also take the token from this cookie."),
    ] = None
    query: Annotated[
        str | None,
        _doc("Also take the token from this query parameter (off by default: URLs get logged)."),
    ] = None
    hide_credentials: Annotated[
        bool, _doc("Remove the token before the request goes upstream.")
    ] = True
    anonymous: Annotated[
        str | None, _doc("A consumer to identify requests without a token as (else 401).")
    ] = None


class JwtCredential(Settings, frozen=True):
    """A consumer's jwt-auth identity: tokens whose `claim` has `value` are this consumer."""

    value: Annotated[str, Meta(min_length=1), _doc("The claim's value (compared as a string).")]
    claim: Annotated[str, Meta(min_length=1), _doc("The claim (default: sub).")] = "sub"


def check_token_settings(settings: TokenSettings) -> Iterator[PluginError]:
    """Problems of the shared settings a type can not see (each at its pointer)."""
    if not settings.keys and settings.jwks_url is None:
        yield PluginError(
            "no key to verify tokens with",
            hint="give keys: [{public_key: ..., alg: RS256}] or jwks_url: https://.../jwks.json",
        )
    if settings.jwks_url is not None:
        parts = urlsplit(settings.jwks_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            yield PluginError(
                "the JWKS URL must be http:// or https:// with a host",
                at="/jwks_url",
                hint="e.g. https://issuer.example.com/.well-known/jwks.json",
            )
    if settings.algorithms is not None and not settings.algorithms:
        yield PluginError(
            "no algorithm is accepted", at="/algorithms", hint="e.g. algorithms: [RS256, ES256]"
        )
    for index, key in enumerate(settings.keys):
        given = [n for n in ("public_key", "jwk", "secret") if getattr(key, n) is not None]
        if len(given) != 1:
            yield PluginError(
                "a key is one of public_key, jwk or secret",
                at=f"/keys/{index}",
                hint="give exactly one of them",
            )
        elif key.secret is not None and key.alg not in HMAC_ALGS:
            yield PluginError(
                "a secret needs alg: HS256, HS384 or HS512",
                at=f"/keys/{index}/alg",
                hint="an RSA or EC public key goes in public_key, with its alg",
            )
        if (
            key.alg is not None
            and settings.algorithms is not None
            and key.alg not in settings.algorithms
        ):
            yield PluginError(
                f"this key's alg {key.alg} is not in algorithms",
                at=f"/keys/{index}/alg",
                hint="add it to algorithms, or give the key another alg",
            )
    kids = [k.kid for k in settings.keys if k.kid is not None]
    for kid in sorted({k for k in kids if kids.count(k) > 1}):
        index = max(i for i, k in enumerate(settings.keys) if k.kid == kid)
        yield PluginError(
            f"two keys have the kid {kid!r}",
            at=f"/keys/{index}/kid",
            hint="a kid names one key: give each its own",
        )


def secret_setting(context: BuildContext, value: Any, at: str) -> str:
    """A secret setting's value; its problem at `at` (below the plugin's entry)."""
    try:
        return context.secret(value, "")
    except PluginError as exc:
        raise PluginError(str(exc), at=at + exc.pointer, hint=exc.hint) from None


def load_keys(settings: TokenSettings, context: BuildContext) -> list[Key]:
    """The inline keys, loaded (PluginError at the key's pointer when one can not be)."""
    keys: list[Key] = []
    for index, key in enumerate(settings.keys):
        at = f"/keys/{index}"
        try:
            if key.public_key is not None:
                keys.append(
                    pem_key(
                        secret_setting(context, key.public_key, at + "/public_key"),
                        key.alg,
                        key.kid,
                    )
                )
            elif key.jwk is not None:
                loaded = jwk_key({**key.jwk, **({"kid": key.kid} if key.kid else {})}, key.alg)
                keys.append(loaded)
            elif key.secret is not None:
                raw = secret_setting(context, key.secret, at + "/secret").encode("utf-8")
                if key.secret_base64:
                    try:
                        raw = base64.urlsafe_b64decode(
                            raw.replace(b"+", b"-").replace(b"/", b"_") + b"=" * (-len(raw) % 4)
                        )
                    except (binascii.Error, ValueError):
                        raise PluginError(
                            "the secret is not base64",
                            at=at + "/secret",
                            hint="encode it with base64, or set secret_base64: false",
                        ) from None
                assert key.alg is not None
                keys.append(secret_key(raw, key.alg, key.kid))
        except KeyError_ as exc:
            raise PluginError(str(exc), at=at, hint=_key_hint(key)) from None
    return keys


def _key_hint(key: KeySettings) -> str:
    if key.public_key is not None:
        return "a PEM public key (BEGIN PUBLIC KEY) or certificate, and its alg"
    if key.secret is not None:
        return "a long random secret: python -c 'import secrets;print(secrets.token_urlsafe(48))'"
    return "a public JWK with kty, and alg when it has none"


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def consumer_claims(context: BuildContext) -> dict[str, dict[str, Consumer]]:
    """claim -> value -> consumer, from the consumers' `jwt-auth` keys (checked unique)."""
    mapping: dict[str, dict[str, Consumer]] = {}
    for credential in context.credentials.get("jwt-auth", []):
        claim, value = credential.value.claim, credential.value.value
        taken = mapping.setdefault(claim, {})
        if value in taken:
            raise PluginError(
                f"consumer {taken[value].name!r} already has {claim} = {value!r}",
                pointer=f"{credential.pointer}/value",
                hint="one claim value names one consumer",
            )
        taken[value] = credential.consumer
    return mapping


def verifier(
    settings: TokenSettings,
    context: BuildContext,
    *,
    audiences: list[str],
    consumers: dict[str, dict[str, Consumer]],
) -> Verifier:
    keys = load_keys(settings, context)
    jwks = (
        JwksSource.shared(
            settings.jwks_url,
            settings.jwks_refresh,
            settings.jwks_min_refetch,
            settings.jwks_timeout,
        )
        if settings.jwks_url is not None
        else None
    )
    algorithms: set[str] | None = None
    if settings.algorithms is not None:
        algorithms = set(settings.algorithms)
    elif jwks is not None:
        # A JWK Set's keys are public: an HMAC key can not come from one.
        algorithms = {a for a in ALGORITHMS if a not in HMAC_ALGS}
        algorithms.update(a for k in keys for a in k.algorithms)
    return Verifier(
        keys=keys,
        jwks=jwks,
        algorithms=algorithms,
        issuers=_listed(settings.issuer),
        audiences=audiences,
        leeway=settings.leeway,
        required=settings.required_claims,
        consumers=consumers,
        cache_ttl=settings.cache_ttl,
    )


class JwtAuth(Plugin):
    """A bearer JWT (RS/PS/ES/EdDSA/HS) verified against inline keys or a JWKS URL; its
    claims and scopes are given to later steps, its consumer identified."""

    name = "jwt-auth"
    phase = "access"
    priority = 2510
    Config = JwtSettings
    Credential = JwtCredential
    scopes = frozenset({"global", "service", "operation"})
    summary = "bearer JWT: inline keys or JWKS, iss/aud/exp/nbf, claim -> consumer, cached"

    def check(self, settings: Any) -> Iterator[PluginError]:
        yield from check_token_settings(settings)
        if settings.query is not None and not settings.query:
            yield PluginError(
                "an empty query parameter name", at="/query", hint="e.g. jwt, or leave it out"
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        anonymous = context.consumer(settings.anonymous) if settings.anonymous else None
        checks = verifier(
            settings,
            context,
            audiences=_listed(settings.audience),
            consumers=consumer_claims(context),
        )
        return JwtAuthStep(
            checks,
            settings.header,
            settings.cookie,
            settings.query,
            settings.hide_credentials,
            anonymous,
            cache_size=settings.cache_size,
            fail_open=fail_open,
        )
