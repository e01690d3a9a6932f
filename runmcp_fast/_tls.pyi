"""TLS for the listeners, on OpenSSL directly (see _tls.pyx)."""

import asyncio
from typing import Any

class TlsContext:
    """A server certificate and key, and the protocol settings of every connection."""

    def __init__(self, cert: str, key: str) -> None: ...

class TlsConnection(asyncio.Protocol, asyncio.Transport):
    """The TCP transport's protocol, and the transport of `app`: ciphertext below,
    plaintext above."""

    def __init__(
        self, context: TlsContext, app: asyncio.BaseProtocol, handshake_timeout: float = 60.0
    ) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
    async def handshake(self) -> None: ...

class TlsClientContext:
    """What the gateway's TLS connections to one upstream share (trusted CAs, checks,
    the last session, resumed by the next connection)."""

    def __init__(self) -> None: ...
    def sessions_resumed(self) -> int: ...

def connect_to(context: TlsClientContext, app: asyncio.BaseProtocol, host: str) -> TlsConnection:
    """The TCP transport's protocol for a TLS connection to `host`, carrying `app`."""
