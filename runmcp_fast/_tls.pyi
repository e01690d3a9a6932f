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
