"""Listening sockets: TCP (IPv4/IPv6), TLS, Unix."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

from runmcp_fast._dataplane import ClientProtocol, ServerContext
from runmcp_fast.config import ListenerConfig, parse_address

_BACKLOG = 4096


class DirectSSLObject(ssl.SSLObject):
    """An SSLObject whose `read`, `write` and `pending` are the C methods themselves.

    uvloop's TLS transport calls these for every record it reads or writes, and
    ssl.SSLObject's are Python functions that only forward to the C object: a
    Python frame each, ~3k instructions of a TLS request's ~55k. Bound on the
    instance, they shadow the forwarding ones (same arguments, same results).
    """

    @classmethod
    def _create(cls, *args: object, **kwargs: object) -> DirectSSLObject:
        self = super()._create(*args, **kwargs)  # type: ignore[misc]
        inner = getattr(self, "_sslobj", None)
        if inner is not None:  # (CPython's layout; anything else keeps the forwarding ones)
            self.read = inner.read
            self.write = inner.write
            self.pending = inner.pending
        return self  # type: ignore[no-any-return]


def own_tls() -> bool:
    """Whether listeners terminate TLS on OpenSSL directly (runmcp_fast._tls): when it
    was built (OpenSSL's headers at build time) and RUNMCP_TLS is not `python` (the
    event loop's TLS, uvloop's or asyncio's, as before it)."""
    if os.environ.get("RUNMCP_TLS", "").lower() == "python":
        return False
    try:
        import runmcp_fast._tls  # noqa: F401
    except ImportError:
        return False
    return True


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    context.sslobject_class = DirectSSLObject
    return context


def bind_listener(listener: ListenerConfig) -> socket.socket:
    """Bind and listen, without an event loop: for sockets shared by worker processes."""
    address = parse_address(listener.address)
    if isinstance(address, str):
        _remove_stale_socket(address)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
            sock.listen(_BACKLOG)
        except OSError:
            sock.close()
            raise
    else:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    sock.setblocking(False)
    return sock


def bind_reuseport(listener: ListenerConfig, port: int | None = None) -> socket.socket:
    """A TCP listening socket with SO_REUSEPORT (one per worker, on one port):
    `port` overrides the listener's (to join the first socket's when that was 0)."""
    address = parse_address(listener.address)
    assert not isinstance(address, str)
    host, own = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, own if port is None else port))
        sock.listen(_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def accept_queue(sock: socket.socket) -> int:
    """Connections waiting in a TCP listening socket's accept queue (Linux: TCP_INFO's
    tcpi_unacked is the backlog for a listener); 0 where that can not be read."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, AttributeError):
        return 0
    # 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked.
    return int.from_bytes(info[24:28], "little") if len(info) >= 28 else 0


async def start_listener(
    loop: asyncio.AbstractEventLoop,
    listener: ListenerConfig,
    ctx: ServerContext,
    base_dir: str,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Serve one listener, binding it unless `sock` is already bound (shared by workers)."""
    address = parse_address(listener.address)
    context = None
    factory: Callable[[], asyncio.BaseProtocol]
    if listener.tls is not None and own_tls():
        from runmcp_fast._tls import TlsConnection, TlsContext

        own = TlsContext(
            str(Path(base_dir, listener.tls.cert)), str(Path(base_dir, listener.tls.key))
        )
        # The handshake is part of the head a client has header_timeout to send (nginx:
        # client_header_timeout covers it).
        handshake_timeout = ctx.header_timeout

        def factory() -> asyncio.BaseProtocol:
            return TlsConnection(own, ClientProtocol(ctx, b"https"), handshake_timeout)

    else:
        if listener.tls is not None:
            context = tls_context(
                str(Path(base_dir, listener.tls.cert)), str(Path(base_dir, listener.tls.key))
            )
        scheme = b"https" if context is not None else b"http"

        def factory() -> asyncio.BaseProtocol:
            return ClientProtocol(ctx, scheme)

    if sock is not None:
        if sock.family == socket.AF_UNIX:
            return await loop.create_unix_server(factory, sock=sock, ssl=context)
        return await loop.create_server(factory, sock=sock, ssl=context)
    if isinstance(address, str):
        _remove_stale_socket(address)
        return await loop.create_unix_server(factory, address, ssl=context, backlog=_BACKLOG)
    host, port = address
    return await loop.create_server(
        factory,
        host,
        port,
        ssl=context,
        backlog=_BACKLOG,
        reuse_address=True,
        family=socket.AF_INET6 if ":" in host else socket.AF_UNSPEC,
    )


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a previous run would make bind fail; anything else is kept."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        os.unlink(path)


def bound_addresses(server: asyncio.Server) -> list[str]:
    """`HOST:PORT` (or `unix:PATH`) for each bound socket, for the startup line."""
    found = []
    for sock in server.sockets:
        name = sock.getsockname()
        if isinstance(name, str):
            found.append(f"unix:{name}")
        elif sock.family == socket.AF_INET6:
            found.append(f"[{name[0]}]:{name[1]}")
        else:
            found.append(f"{name[0]}:{name[1]}")
    return found
