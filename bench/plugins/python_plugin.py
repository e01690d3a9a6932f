"""A custom Python plugin that does nothing: what dispatching to Python costs a request."""

from __future__ import annotations

from typing import Any


class Noop:
    name = "py-noop"
    phase = "access"

    def request(self, view: Any) -> None:
        return None
