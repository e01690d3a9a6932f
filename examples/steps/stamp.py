"""A step in Python that stamps `X-Served-By` on every response of its routes.

The worked example of docs/architecture.md ("Adding a step"); its twin in
Cython is stamp.pyx. Give it to a gateway through a step source:

    from runmcp_fast._dataplane import PyStep
    gateway = Gateway(config, steps=lambda route: [PyStep(Stamp("edge-1"))])
"""

from __future__ import annotations

from typing import Any


class Stamp:
    """Adds `X-Served-By: <value>` to the response head, proxied or answered by the gateway."""

    name = "stamp"
    phase = "response_headers"

    def __init__(self, value: str) -> None:
        self.value = value

    def response(self, view: Any, status: int, headers: list[tuple[str, str]]) -> None:
        headers.append(("X-Served-By", self.value))
