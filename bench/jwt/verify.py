"""JWT verification cost: PyJWT against joserfc (RS256, ES256, EdDSA, HS256), with
cryptography's bare signature check as the floor, and the jwt-auth step's cache hit.

    .venv/bin/python bench/jwt/verify.py [--seconds 0.5]

Each library verifies the same token with a key object made once (as the
plugin keeps it), and checks the same claims (exp, iss, aud). Prints the
median of 7 runs, in microseconds per verification. Not a test: nothing is
asserted about time; a library that does not accept the token fails the run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jwt import JWTClaimsRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's runmcp_fast
warnings.filterwarnings("ignore", message="EdDSA is deprecated")  # joserfc, RFC 9864

ISS = "https://issuer.example"
AUD = "https://mcp.example/mcp"


def per_call(fn: Callable[[], Any], seconds: float) -> float:
    """Median µs per call over 7 runs of about `seconds` / 7 each."""
    fn()  # warm, and fail early when it does not verify
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took > seconds / 7 / 4:
            break
        n *= 2
    n = max(1, int(n * (seconds / 7) / took))
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "exp": now + 3600,
        "iat": now,
        "scope": "tools:read tools:call",
    }


def b64d(data: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def cases() -> list[tuple[str, str, Any, Any, Callable[[], Any]]]:
    """(alg, token, PyJWT key, joserfc key, bare signature check)."""
    out = []
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    secret = b"s" * 32
    for alg, private, public in (
        ("RS256", rsa_key, rsa_key.public_key()),
        ("ES256", ec_key, ec_key.public_key()),
        ("EdDSA", ed_key, ed_key.public_key()),
        ("HS256", secret, secret),
    ):
        token = pyjwt.encode(claims(), private, algorithm=alg, headers={"kid": "k1"})
        head, body, sig = token.split(".")
        signed, signature = f"{head}.{body}".encode(), b64d(sig)
        if alg == "RS256":
            jose_key: Any = RSAKey.import_key(public)

            def bare(p=public, s=signature, m=signed) -> None:
                p.verify(s, m, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256":
            jose_key = ECKey.import_key(public)
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )

            def bare(p=public, s=der, m=signed) -> None:
                p.verify(s, m, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA":
            jose_key = OKPKey.import_key(public)

            def bare(p=public, s=signature, m=signed) -> None:
                p.verify(s, m)
        else:
            jose_key = OctKey.import_key(secret)

            def bare(k=secret, s=signature, m=signed) -> None:
                import hmac

                assert hmac.compare_digest(hmac.digest(k, m, "sha256"), s)

        out.append((alg, token, public, jose_key, bare))
    return out


def plugin_miss(token: str, public: Any, alg: str) -> Callable[[], Any]:
    """What jwt-auth does on a cache miss: its own strict parse, PyJWT's algorithm layer."""
    from runmcp_fast.plugins.jose import Key, Verifier

    verifier = Verifier(keys=[Key("k1", frozenset({alg}), public)], issuers=[ISS], audiences=[AUD])
    raw = token.encode()

    def miss() -> None:
        assert type(verifier.verify(raw)) is tuple

    return miss


def algorithm_layers(
    token: str, public: Any, jose_key: Any, alg: str, seconds: float
) -> tuple[float, float]:
    """µs of the signature check alone through PyJWT's and joserfc's algorithm objects."""
    from joserfc.jws import JWSRegistry
    from jwt.algorithms import get_default_algorithms

    head, body, sig = token.split(".")
    signed, signature = f"{head}.{body}".encode(), b64d(sig)
    ours = get_default_algorithms()[alg]
    key = ours.prepare_key(public) if alg != "HS256" else public
    theirs = JWSRegistry.algorithms[alg]

    def with_pyjwt() -> None:
        assert ours.verify(signed, key, signature)

    def with_joserfc() -> None:
        assert theirs.verify(signed, signature, jose_key)

    return per_call(with_pyjwt, seconds), per_call(with_joserfc, seconds)


def cache_hit(token: str, public: Any, alg: str, seconds: float) -> float:
    """µs per request through the jwt-auth step's cache hit (the compiled on_request)."""
    from runmcp_fast.plugins._steps import JwtAuthStep
    from runmcp_fast.plugins.jose import Key, Verifier

    verifier = Verifier(keys=[Key("k1", frozenset({alg}), public)], issuers=[ISS], audiences=[AUD])
    # hide false: the same request object is answered again and again, token and all.
    step = JwtAuthStep(verifier, "authorization", None, None, False)
    return step.time_hits(token.encode("ascii"), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    args = parser.parse_args()
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": ISS}, aud={"essential": True, "value": AUD}
    )
    rows = []
    layers: list[tuple[str, float, float]] = []
    for alg, token, public, jose_key, bare in cases():

        def with_pyjwt(t=token, k=public, a=alg) -> None:
            pyjwt.decode(t, k, algorithms=[a], audience=AUD, issuer=ISS)

        def with_joserfc(t=token, k=jose_key, a=alg) -> None:
            registry.validate(jose_jwt.decode(t, k, algorithms=[a]).claims)

        rows.append(
            (
                alg,
                per_call(bare, args.seconds),
                per_call(with_pyjwt, args.seconds),
                per_call(with_joserfc, args.seconds),
                per_call(plugin_miss(token, public, alg), args.seconds),
                cache_hit(token, public, alg, args.seconds),
            )
        )
        layers.append((alg, *algorithm_layers(token, public, jose_key, alg, args.seconds)))
    print("µs per verification (median of 7 runs)")
    print(
        f"{'alg':<7} {'cryptography':>13} {'PyJWT':>8} {'joserfc':>8} {'jwt-auth miss':>14}"
        f" {'jwt-auth hit':>13}"
    )
    for alg, bare_us, pyjwt_us, jose_us, miss_us, hit_us in rows:
        print(
            f"{alg:<7} {bare_us:>13.1f} {pyjwt_us:>8.1f} {jose_us:>8.1f} {miss_us:>14.1f}"
            f" {hit_us:>13.3f}   joserfc/PyJWT {jose_us / pyjwt_us:.2f}x"
        )
    print("cryptography: the bare signature check; PyJWT: jwt.decode; joserfc: jwt.decode +")
    print("claims registry; jwt-auth miss: Verifier.verify (strict parse, PyJWT's algorithm,")
    print("claims); jwt-auth hit: the compiled step's on_request answered from its cache.")
    print("the signature check alone, through each library's algorithm layer (µs)")
    print(f"{'alg':<7} {'PyJWT':>8} {'joserfc':>8}")
    for alg, pyjwt_us, jose_us in layers:
        print(f"{alg:<7} {pyjwt_us:>8.1f} {jose_us:>8.1f}")
    table = {b"k" * 8: 1}
    probe = b"k" * 8
    reference = per_call(lambda: table.get(probe), args.seconds) * 1000
    print(f"reference: a lambda calling dict.get costs {reference:.0f} ns on this machine now")
    print(f"PyJWT {pyjwt.__version__}; joserfc {__import__('joserfc').__version__}")


if __name__ == "__main__":
    main()
