"""JSON text read and written exactly: integers of any size stay integers.

orjson reads an integer past 64 bits as a float (an API's id of 2**70 + 3 came back
as 1.1805916207174113e+21) and refuses to write one; JSON has no such limit, and
neither has msgspec. Used where the gateway reads JSON that someone else wrote and
may pass it on: values held in parameters and parts, MCP tool results, a federated
member's answers.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


def loads(raw: str | bytes | bytearray | memoryview) -> Any:
    """The value of JSON text. ValueError when it is not JSON, or nests too deeply to read
    (msgspec's RecursionError, which orjson reported as a decode error)."""
    try:
        return _DECODER.decode(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value `loads` gives (or one built of the same types), as
    orjson writes it. TypeError or msgspec.EncodeError when something in it is not JSON."""
    return _ENCODER.encode(value)
