"""Authentication plugins and the restriction that follows them: key-auth, basic-auth,
consumer-restriction (also named acl)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import BasicAuthStep, ConsumerRestrictionStep, KeyAuthStep
from runmcp_fast.plugins.contract import (
    BuildContext,
    Plugin,
    PluginError,
    SecretValue,
    Settings,
)

_HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"


def _doc(text: str) -> Meta:
    return Meta(description=text)


# -- key-auth -----------------------------------------------------------------------------


class KeyAuthSettings(Settings, frozen=True):
    header: Annotated[str, Meta(pattern=_HEADER), _doc("The header carrying the key.")] = "apikey"
    query: Annotated[
        str | None, _doc("Also take the key from this query parameter (null: never).")
    ] = None
    hide_credentials: Annotated[bool, _doc("Remove the key before the request goes upstream.")] = (
        True
    )
    anonymous: Annotated[
        str | None,
        _doc("A consumer to identify requests without a key as (else they get 401)."),
    ] = None


class KeyAuthCredential(Settings, frozen=True):
    key: Annotated[SecretValue, _doc("The consumer's key: a string, {env: NAME} or {file: PATH}.")]


class KeyAuth(Plugin):
    """An API key in a header (or query parameter) identifies the consumer holding it."""

    name = "key-auth"
    phase = "access"
    priority = 2500
    Config = KeyAuthSettings
    Credential = KeyAuthCredential
    scopes = frozenset({"global", "service", "operation"})
    summary = "API key in a header or query parameter, per consumer; constant-time comparison"

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        keys: dict[bytes, Any] = {}
        owners: dict[bytes, str] = {}
        for credential in context.credentials.get(self.name, []):
            at = f"{credential.pointer}/key"
            key = context.secret(credential.value.key, at).encode("utf-8")
            if len(key) < 8:
                raise PluginError(
                    "the key is shorter than 8 bytes", pointer=at, hint="use a long random key"
                )
            if key in keys:
                raise PluginError(
                    f"consumer {owners[key]!r} has the same key",
                    pointer=at,
                    hint="each consumer needs its own key",
                )
            keys[key] = credential.consumer
            owners[key] = credential.consumer.name
        anonymous = context.consumer(settings.anonymous) if settings.anonymous else None
        return KeyAuthStep(
            settings.header,
            settings.query,
            settings.hide_credentials,
            keys,
            anonymous,
            fail_open=fail_open,
        )


# -- basic-auth ---------------------------------------------------------------------------


class BasicAuthSettings(Settings, frozen=True):
    realm: Annotated[str, _doc("Named in the 401's WWW-Authenticate challenge.")] = "runmcp-fast"
    hide_credentials: Annotated[
        bool, _doc("Remove the Authorization header before the request goes upstream.")
    ] = True
    anonymous: Annotated[
        str | None, _doc("A consumer to identify requests without credentials as.")
    ] = None
    cache_ttl: Annotated[
        float,
        Meta(ge=0),
        _doc("Seconds a checked password is remembered (by a keyed digest, never the password)."),
    ] = 300.0
    max_pending: Annotated[
        int,
        Meta(ge=1, le=1_000_000),
        _doc("Password checks under way at once; beyond, 503 with Retry-After."),
    ] = 64


class BasicAuthCredential(Settings, frozen=True):
    username: Annotated[str, Meta(min_length=1), _doc("The user name (no ':').")]
    password_hash: Annotated[
        SecretValue,
        _doc("A bcrypt ($2b$...) or argon2 ($argon2id$...) hash, never the password."),
    ]


def _verify(hashed: bytes, password: bytes) -> bool:
    """Runs on a thread: both libraries release the GIL while hashing."""
    if hashed.startswith(b"$argon2"):
        import argon2

        try:
            return bool(argon2.PasswordHasher().verify(hashed, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        return False


# Hash checks run here, off the event loop; shared by every basic-auth step.
_EXECUTOR = ThreadPoolExecutor(2, thread_name_prefix="runmcp-basic-auth")


class BasicAuth(Plugin):
    """HTTP Basic credentials, checked against consumers' bcrypt or argon2 hashes."""

    name = "basic-auth"
    phase = "access"
    priority = 2520
    Config = BasicAuthSettings
    Credential = BasicAuthCredential
    scopes = frozenset({"global", "service", "operation"})
    summary = "HTTP Basic against bcrypt/argon2 hashes, checked off the event loop, then cached"

    def check_credential(self, credential: Any) -> Iterator[PluginError]:
        if ":" in credential.username:
            yield PluginError("a user name can not hold ':'", at="/username")
        hashed = credential.password_hash
        if isinstance(hashed, str) and not hashed.startswith(("$2a$", "$2b$", "$2y$", "$argon2")):
            yield PluginError(
                "not a bcrypt or argon2 hash",
                at="/password_hash",
                hint="hash it: python -c \"import bcrypt;print(bcrypt.hashpw(b'...', "
                'bcrypt.gensalt()).decode())"; a plaintext password is never accepted',
            )

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        users: dict[bytes, tuple[bytes, Any]] = {}
        for credential in context.credentials.get(self.name, []):
            user = credential.value.username.encode("utf-8")
            at = f"{credential.pointer}/password_hash"
            hashed = context.secret(credential.value.password_hash, at).encode("ascii", "replace")
            if not hashed.startswith((b"$2a$", b"$2b$", b"$2y$", b"$argon2")):
                raise PluginError("not a bcrypt or argon2 hash", pointer=at)
            if user in users:
                raise PluginError(
                    f"another consumer has the user name {credential.value.username!r}",
                    pointer=f"{credential.pointer}/username",
                )
            users[user] = (hashed, credential.consumer)
        anonymous = context.consumer(settings.anonymous) if settings.anonymous else None
        return BasicAuthStep(
            settings.realm,
            settings.hide_credentials,
            users,
            _verify,
            _EXECUTOR,
            settings.cache_ttl,
            settings.max_pending,
            anonymous,
            fail_open=fail_open,
        )


# -- consumer-restriction / acl -----------------------------------------------------------


class Who(Settings, frozen=True):
    consumers: Annotated[list[str], _doc("Consumers by name.")] = msgspec.field(
        default_factory=list
    )
    groups: Annotated[list[str], _doc("Consumer groups.")] = msgspec.field(default_factory=list)


class RestrictionSettings(Settings, frozen=True):
    allow: Annotated[
        Who | None, _doc("Only these consumers or groups may use the route (default: any).")
    ] = None
    deny: Annotated[Who | None, _doc("These consumers or groups may not (wins over allow).")] = None
    rejected_code: Annotated[
        int, Meta(ge=400, le=599), _doc("The status a refused consumer gets.")
    ] = 403


class ConsumerRestriction(Plugin):
    """Which consumers (or groups) may use a route, once authentication has identified them."""

    name = "consumer-restriction"
    phase = "access"
    priority = 2400
    Config = RestrictionSettings
    scopes = frozenset({"global", "service", "operation"})
    summary = "allow or deny consumers and consumer groups per route"

    def check(self, settings: Any) -> Iterator[PluginError]:
        if settings.allow is None and settings.deny is None:
            yield PluginError("give allow, deny or both", hint="e.g. allow: {groups: [staff]}")

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        allow = settings.allow or Who()
        deny = settings.deny or Who()
        for kind, who in (("allow", allow), ("deny", deny)):
            for i, name in enumerate(who.consumers):
                if name not in context.consumers:
                    raise PluginError(f"no consumer named {name!r}", at=f"/{kind}/consumers/{i}")
        return ConsumerRestrictionStep(
            allow.consumers,
            allow.groups,
            deny.consumers,
            deny.groups,
            settings.rejected_code,
            name=self.name,
            fail_open=fail_open,
        )


class Acl(ConsumerRestriction):
    """consumer-restriction under the name Kong users know it by."""

    name = "acl"
    summary = "consumer-restriction's other name (Kong's)"
