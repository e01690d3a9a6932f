"""The listeners' TLS objects (listeners.DirectSSLObject): uvloop calls their C methods
directly, and they behave as ssl.SSLObject's do, across records and reads of any size."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from test_serve_process import make_certificate

from runmcp_fast.listeners import DirectSSLObject, tls_context


def _pump(source: ssl.MemoryBIO, sink: ssl.MemoryBIO) -> None:
    data = source.read()
    if data:
        sink.write(data)


def test_the_c_methods_serve_a_tls_session(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = tls_context(str(cert), str(key)).wrap_bio(server_in, server_out, server_side=True)
    client_context = ssl.create_default_context(cafile=str(cert))
    client = client_context.wrap_bio(client_in, client_out, server_hostname="localhost")
    assert isinstance(server, DirectSSLObject)
    # The instance's own, not ssl.SSLObject's forwarding functions.
    assert type(server.write).__name__ == "builtin_function_or_method"
    assert type(server.read).__name__ == "builtin_function_or_method"
    for _ in range(10):  # bounded: TLS 1.3 takes two flights
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        _pump(client_out, server_in)
        _pump(server_out, client_in)
        if server.version() and client.version():
            break
    assert server.version() == client.version()

    # Client to server: several records, read back in small and large reads.
    payload = bytes(range(256)) * 400  # 100 KB: 7 records of 16 KB
    client.write(payload)
    _pump(client_out, server_in)
    got = bytearray()
    buffer = bytearray(1000)
    while len(got) < len(payload):
        if server.pending() == 0 and server_in.pending == 0:
            break
        n = server.read(len(buffer), buffer)  # uvloop's buffered read
        got += buffer[:n]
        got += server.read(5000)  # and its copied one
    assert bytes(got) == payload

    # Server to client.
    assert server.write(payload) == len(payload)
    _pump(server_out, client_in)
    back = b"".join(iter(lambda: client.read(65536) if client_in.pending else b"", b""))
    assert back == payload
