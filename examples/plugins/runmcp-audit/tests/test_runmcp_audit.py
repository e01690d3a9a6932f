"""The example plugins' own tests: their logic, given a request view like the gateway's.

The gateway-level test (installed as a package, through entry points, on a
real gateway) is the project's tests/test_plugin_example.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from runmcp_audit import Allowlist, AllowlistConfig, Audit, AuditConfig


class View:
    """What the gateway's RequestView offers, for the fields these plugins read."""

    def __init__(self, consumer: str | None, route: str) -> None:
        self.consumer = consumer
        self.route = route
        self.service = "pets"
        self.method = "GET"
        self.path = "/pets"
        self._headers = {"x-trace": "t-1"}

    def header(self, name: str) -> str | None:
        return self._headers.get(name)


def test_audit_appends_one_line_per_exchange(tmp_path: Path) -> None:
    audit = Audit(AuditConfig(path=str(tmp_path / "audit.log"), include_headers=["X-Trace"]))
    audit.log(View("alice", "listPets"), 200)
    audit.log(View(None, "listPets"), 401)
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["consumer"], r["status"], r["x-trace"]) for r in lines] == [
        ("alice", 200, "t-1"),
        (None, 401, "t-1"),
    ]


@pytest.mark.parametrize(
    ("consumer", "route", "allowed"),
    [
        ("alice", "listPets", True),
        ("alice", "deletePet", False),
        ("root", "deletePet", True),
        (None, "listPets", False),
    ],
)
def test_allowlist(consumer: str | None, route: str, allowed: bool) -> None:
    plugin = Allowlist(AllowlistConfig(allow={"alice": ["listPets"], "root": ["*"]}))
    answer: Any = asyncio.run(plugin.request(View(consumer, route)))
    assert (answer is None) is allowed
    if not allowed:
        assert answer[0] == 403


def test_allowlist_unavailable_raises() -> None:
    plugin = Allowlist(AllowlistConfig(allow={}, unavailable=True))
    with pytest.raises(ConnectionError):
        asyncio.run(plugin.request(View("alice", "listPets")))
