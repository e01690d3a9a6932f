"""access-log: one JSON line per exchange (docs/plugins/access-log.md).

The line is built in C by the compiled step (plugins/steps/access_log.pxi),
the fields chosen here, into a buffer its sink (builtin/log_sinks.py) writes
in batches: stdout (the default), a file (reopened on SIGUSR1), or a syslog
server over UDP or TCP. `access_log: true` in the config, or `serve
--access-log`, puts it on every route with its defaults (plugins/build.py).

Given globally, it also logs the requests no route took (404, 405, a bad
Host: the snapshot's `unrouted_chain`). It is never given per consumer: it
starts its clock before authentication finds one.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable, Iterator
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlsplit

from msgspec import Meta

from runmcp_fast._dataplane import Step
from runmcp_fast.plugins._steps import (
    ACCESS_LOG_DEFAULT,
    ACCESS_LOG_FIELDS,
    AccessLogStep,
    LogBuffer,
)
from runmcp_fast.plugins.builtin.fields import doc
from runmcp_fast.plugins.builtin.log_sinks import (
    FileSink,
    Sink,
    StdoutSink,
    SyslogTcpSink,
    SyslogUdpSink,
)
from runmcp_fast.plugins.contract import BuildContext, Plugin, PluginError, Resource, Settings

# RFC 5424 §6.2.1, by code.
_FACILITY_NAMES = (
    *("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron"),
    *("authpriv", "ftp", "ntp", "audit", "alert", "clock"),
    *(f"local{i}" for i in range(8)),
)
FACILITIES = {name: code for code, name in enumerate(_FACILITY_NAMES)}
_SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SEVERITIES = {name: code for code, name in enumerate(_SEVERITY_NAMES)}
SYSLOG_PORTS = {"udp": 514, "tcp": 601}  # RFC 5426, RFC 6587 (IANA's syslog-conn)


class SyslogSettings(Settings, frozen=True):
    address: Annotated[
        str,
        doc("The syslog server: udp://HOST[:PORT] (514) or tcp://HOST[:PORT] (601)."),
    ]
    facility: Annotated[str, doc("RFC 5424 facility: kern ... local7.")] = "local7"
    severity: Annotated[str, doc("RFC 5424 severity of every line: emerg ... debug.")] = "info"
    app_name: Annotated[
        str, Meta(min_length=1, max_length=48), doc("APP-NAME of each message.")
    ] = "runmcp-fast"
    hostname: Annotated[
        Annotated[str, Meta(min_length=1, max_length=255)] | None,
        doc("HOSTNAME of each message (default: this machine's name)."),
    ] = None


class AccessLogSettings(Settings, frozen=True):
    fields: Annotated[
        tuple[str, ...],
        doc(
            "The fields of a line, in this order: time, request_id, client, peer, method,"
            " host, path, status, duration_ms, service, route, consumer, upstream,"
            " upstream_ms, bytes_in, bytes_out, mcp_method, mcp_tool, user_agent, referer."
        ),
    ] = ACCESS_LOG_DEFAULT
    query: Annotated[
        bool, doc("Log the path with its query string (queries may carry secrets).")
    ] = False
    file: Annotated[
        Annotated[str, Meta(min_length=1)] | None,
        doc("Append to this file (relative to the config file), reopened on SIGUSR1."),
    ] = None
    syslog: Annotated[
        SyslogSettings | None, doc("Send each line to a syslog server (RFC 5424).")
    ] = None
    queue_bytes: Annotated[
        int,
        Meta(ge=1024, le=1 << 30),
        doc(
            "Lines waiting to be written (a slow disk, a syslog server away or slow) may"
            " hold this many bytes (and one batch more); beyond, a batch is dropped, its"
            " lines counted."
        ),
    ] = 4 << 20


class AccessLog(Plugin):
    """One JSON line per request: built in C, written in batches to stdout, a file or syslog."""

    name = "access-log"
    phase = "rewrite"
    priority = 99000  # its clock starts first (after prometheus's, which it then shares)
    Config = AccessLogSettings
    scopes = frozenset({"global", "service", "operation"})
    unrouted = True
    summary = "a JSON line per request (fields chosen), to stdout, a file or syslog"

    def check(self, settings: Any) -> Iterator[PluginError]:
        fields: tuple[str, ...] = settings.fields
        if not fields:
            yield PluginError(
                "no fields", at="/fields", hint=f"name some of: {', '.join(ACCESS_LOG_FIELDS)}"
            )
        seen: set[str] = set()
        for index, field in enumerate(fields):
            if field not in ACCESS_LOG_FIELDS:
                close = difflib.get_close_matches(field, ACCESS_LOG_FIELDS, n=1)
                yield PluginError(
                    f"no field {field!r}",
                    at=f"/fields/{index}",
                    hint=f"did you mean {close[0]!r}?"
                    if close
                    else f"the fields: {', '.join(ACCESS_LOG_FIELDS)}",
                )
            elif field in seen:
                yield PluginError(
                    f"{field!r} is given twice", at=f"/fields/{index}", hint="name it once"
                )
            seen.add(field)
        if settings.file is not None and settings.syslog is not None:
            yield PluginError(
                "both file and syslog are given",
                at="/syslog",
                hint="one access-log writes to one place: stdout (neither), file or syslog",
            )
        syslog: SyslogSettings | None = settings.syslog
        if syslog is not None:
            yield from _syslog_problems(syslog)

    def step(self, settings: Any, context: BuildContext, *, fail_open: bool) -> Step:
        sink = self._sink(settings, context)
        head = tail = None
        octets = False
        syslog: SyslogSettings | None = settings.syslog
        if syslog is not None:
            scheme, _, _ = _syslog_address(syslog.address)
            octets = scheme == "tcp"
            priority = FACILITIES[syslog.facility] * 8 + SEVERITIES[syslog.severity]
            hostname = syslog.hostname or _hostname()
            head = b"<%d>1 " % priority
            # HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA, then the JSON line as MSG
            tail = f" {hostname} {syslog.app_name} {os.getpid()} access - ".encode("ascii")
        return AccessLogStep(
            settings.fields,
            LogBuffer(sink),
            query=settings.query,
            octet_counting=octets,
            syslog_head=head,
            syslog_tail=tail,
            priority=self.priority,
            fail_open=fail_open,
        )

    def _sink(self, settings: Any, context: BuildContext) -> Sink:
        """The sink of its destination: the gateway's (shared, kept across reloads)."""
        queue = settings.queue_bytes
        make: Callable[[], Resource]
        if settings.syslog is not None:
            scheme, host, port = _syslog_address(settings.syslog.address)
            kind = SyslogTcpSink if scheme == "tcp" else SyslogUdpSink
            key = f"access-log {scheme}://{host}:{port} {queue}"
            make = partial(kind, host, port, queue)
        elif settings.file is not None:
            path = os.path.abspath(os.path.join(context.base_dir, settings.file))
            _check_writable(path)
            key = f"access-log file {path} {queue}"
            make = partial(FileSink, path, queue)
        else:
            key = f"access-log stdout {queue}"
            make = partial(StdoutSink, queue)
        sink = context.resources.get(key, make) if context.resources is not None else make()
        assert isinstance(sink, Sink)
        return sink


def _syslog_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a checked syslog address."""
    parts = urlsplit(address)
    port = parts.port or SYSLOG_PORTS[parts.scheme]
    return parts.scheme, parts.hostname or "", port


def _syslog_problems(syslog: SyslogSettings) -> Iterator[PluginError]:
    at = "/syslog/address"
    hint = "udp://HOST[:PORT] or tcp://HOST[:PORT], e.g. udp://127.0.0.1:514"
    try:
        parts = urlsplit(syslog.address)
        port = parts.port
    except ValueError as exc:
        yield PluginError(f"{syslog.address!r} is not an address: {exc}", at=at, hint=hint)
        return
    if parts.scheme not in SYSLOG_PORTS:
        yield PluginError(f"{syslog.address!r} is neither udp:// nor tcp://", at=at, hint=hint)
    elif not parts.hostname:
        yield PluginError(f"{syslog.address!r} names no host", at=at, hint=hint)
    elif parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        yield PluginError(f"{syslog.address!r} has more than a host and a port", at=at, hint=hint)
    elif port == 0:
        yield PluginError(f"{syslog.address!r}: port 0", at=at, hint=hint)
    if syslog.facility not in FACILITIES:
        yield PluginError(
            f"no facility {syslog.facility!r}",
            at="/syslog/facility",
            hint=f"one of: {', '.join(FACILITIES)}",
        )
    if syslog.severity not in SEVERITIES:
        yield PluginError(
            f"no severity {syslog.severity!r}",
            at="/syslog/severity",
            hint=f"one of: {', '.join(SEVERITIES)}",
        )
    for key, value in (("app_name", syslog.app_name), ("hostname", syslog.hostname)):
        if value is not None and not all(33 <= ord(c) <= 126 for c in value):
            yield PluginError(
                f"{key} {value!r} has a character RFC 5424 does not allow there",
                at=f"/syslog/{key}",
                hint="printable ASCII, no spaces",
            )


def _hostname() -> str:
    name = socket.gethostname()
    ok = name and all(33 <= ord(c) <= 126 for c in name)
    return name[:255] if ok else "-"


def _check_writable(path: str) -> None:
    """A file the gateway can append to (it is opened when the first line comes)."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise PluginError(
            f"{directory} is not a directory", at="/file", hint="create it, or give another path"
        )
    target = path if os.path.exists(path) else directory
    if os.path.isdir(path):
        raise PluginError(f"{path} is a directory", at="/file", hint="give a file's path")
    if not os.access(target, os.W_OK):
        raise PluginError(
            f"can not write {path}",
            at="/file",
            hint="give the gateway's user write access, or give another path",
        )
