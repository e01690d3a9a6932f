"""The workers of one `serve --workers N` answer each other's scrapes.

Any worker may accept a scrape (they share the admin socket), but each
counts only its own requests. So each listens on a Unix socket of its own in
a directory the parent made before forking; the one scraped asks the others
for their numbers (collect.Samples, as JSON) and sums them with its own. A
worker that does not answer in time is left out of that scrape (and said so:
`runmcp_workers` counts those that answered); a worker that was replaced
starts from zero, which Prometheus's rate() reads as a counter reset.

The same sockets carry the active health checks' verdicts (health.py): the
worker that runs the checks tells the others (`tell`), each applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from runmcp_fast.metrics.collect import Samples, from_wire, to_wire

_ASK = b"samples\n"
_HEALTH = b"health\n"
_MAX_ANSWER = 64 * 1024 * 1024


class Peers:
    """This worker's place among its siblings: `directory` holds one socket per worker."""

    def __init__(self, directory: str, number: int) -> None:
        self.directory = Path(directory)
        self.number = number
        self._server: asyncio.AbstractServer | None = None

    @property
    def path(self) -> Path:
        return self.directory / f"worker-{self.number}.sock"

    async def start(
        self,
        local: Callable[[], Samples] | None,
        on_health: Callable[[Any], None] | None = None,
    ) -> None:
        """Answer siblings with `local()`: this worker's numbers at the time they ask; hand
        the health verdicts a sibling tells to `on_health` (decoded JSON)."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await reader.readline()
                if line == _ASK and local is not None:
                    writer.write(orjson.dumps(to_wire(local())))
                    await writer.drain()
                elif line == _HEALTH and on_health is not None:
                    on_health(orjson.loads(await _read_all(reader)))
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):  # JSON too
                pass
            finally:
                writer.close()

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a predecessor's (this worker number was replaced)
        self._server = await asyncio.start_unix_server(answer, str(self.path))

    async def gather(self, timeout: float = 1.0) -> list[Samples]:
        """The other workers' numbers (those that answered within `timeout`)."""
        others = [p for p in self.directory.glob("worker-*.sock") if p != self.path]
        found = await asyncio.gather(*(self._ask(p, timeout) for p in others))
        return [samples for samples in found if samples is not None]

    async def tell_health(self, data: Any, timeout: float = 1.0) -> None:
        """Send the health verdicts (JSON-able) to every other worker; those that do not
        take them within `timeout` get the next round's."""
        payload = _HEALTH + orjson.dumps(data)
        others = [p for p in self.directory.glob("worker-*.sock") if p != self.path]
        await asyncio.gather(*(self._tell(p, payload, timeout) for p in others))

    async def _tell(self, path: Path, payload: bytes, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                _reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    writer.write(payload)
                    writer.write_eof()
                    await writer.drain()
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            pass  # gone, or too slow: the next round

    async def _ask(self, path: Path, timeout: float) -> Samples | None:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    writer.write(_ASK)
                    data = await _read_all(reader)
                finally:
                    writer.close()
            return from_wire(orjson.loads(data))
        except (OSError, TimeoutError, orjson.JSONDecodeError, ValueError, TypeError):
            return None  # gone, or too slow: left out of this scrape

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything up to EOF (at most _MAX_ANSWER bytes): one read() returns only what
    has arrived, which for a large answer is a part of it."""
    parts: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > _MAX_ANSWER:
            raise ValueError("a sibling's message is too large")
        parts.append(chunk)
    return b"".join(parts)
