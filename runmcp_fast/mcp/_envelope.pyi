from typing import Any

def bind(
    envelope: type,
    unset: object,
    fast: type,
    fast_params: type,
    names: dict[str, str],
    decode_single: Any,
) -> None: ...
def fast_envelope(msg: Any) -> Any:
    """The Envelope of a message the fast decoder accepted, or None to ask the slow path."""

def check_single(body: bytes) -> Any:
    """`check_envelope(body, allow_batch=False)` when it is an Envelope the fast path finds;
    None for anything else: ask jsonrpc then."""

# check_single's C function in a PyCapsule, for the data plane to call directly.
CHECK_SINGLE: object

def valid_single(body: bytes) -> bool:
    """Whether the scanner accepts `body`: check_single would give its Envelope (False:
    it leaves it to msgspec, which may accept it or not)."""

# valid_single's C function (buffer, size) in a PyCapsule: the data plane's check on a
# route none of whose steps reads the Envelope.
VALID_SINGLE: object

def decode_single(body: bytes) -> Any:
    """check_single through msgspec: what the scanner must agree with where it decides."""

def scan_single(body: bytes) -> Any:
    """The scanner's Envelope for `body`, or None where it leaves it to msgspec (a body
    that is not ASCII among them)."""
