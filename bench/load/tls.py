"""The TLS case's certificate and cipher: one self-signed certificate, one TLS 1.3 suite.

Both proxies get the same certificate (an ECDSA P-256 key) and are held to the same
suite, so their CPU per request compares the same cryptography. The suite is pinned
three ways: nginx's `ssl_conf_command`, and an OpenSSL config (`OPENSSL_CONF`) that the
gateway (Python's ssl module has no setter for TLS 1.3 suites) and wrk both read;
`negotiated()` checks what a handshake really agrees on.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SUITE = "TLS_AES_128_GCM_SHA256"

# OpenSSL's "system default" applies to every SSL_CTX a program makes (wrk's, Python's).
_OPENSSL_CONF = f"""\
openssl_conf = bench_conf

[bench_conf]
ssl_conf = bench_ssl

[bench_ssl]
system_default = bench_tls

[bench_tls]
MinProtocol = TLSv1.3
Ciphersuites = {SUITE}
"""


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key: (cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            # localhost too: nginx checks an upstream's name as a DNS name only.
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def openssl_conf(directory: Path) -> Path:
    """The OpenSSL config that pins TLS 1.3 and the suite (for OPENSSL_CONF)."""
    path = directory / "openssl-bench.cnf"
    path.write_text(_OPENSSL_CONF)
    return path


def client_context() -> ssl.SSLContext:
    """A client context that trusts anything (the certificate is self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def negotiated(port: int) -> str:
    """`TLSv1.3 TLS_AES_128_GCM_SHA256`: what a handshake with 127.0.0.1:port agrees on."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context().wrap_socket(raw) as conn,
    ):
        cipher = conn.cipher()
    return f"{cipher[1]} {cipher[0]}" if cipher else "none"
