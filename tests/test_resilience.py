"""Upstream resilience, end to end: real upstreams, faults injected on loopback.

Balancing, ejection of a replica failing in a row, retries only when safe and
within the budget, circuit breaking, timeouts per route, active health checks
(docs/resilience.md). Every upstream is a real server (`faults.StatusUpstream`,
aiohttp, or one behind a `faults.FaultProxy`); the gateway runs in-process on
its own loop thread, or as `runmcp-fast serve --workers 2`. No timing
thresholds: a deadline is only checked not to fire early.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import FaultProxy, StatusUpstream
from servers import GatewayProcess, GatewayThread, Harness, RawClient, free_port, wait_until

from runmcp_fast._dataplane import Replicas


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def upstream(h: Harness, name: str, status: int = 200, **options: Any) -> StatusUpstream:
    """A counting upstream on `h`'s upstream loop, closed with `h`."""
    made = StatusUpstream(name, h.upstream_loop, status, **options)
    h._upstreams.append(made)  # type: ignore[arg-type]  # anything with close()
    return made


def fault(h: Harness, port: int) -> FaultProxy:
    """A fault proxy in front of `port`, closed with `h`."""
    made = FaultProxy(port, h.upstream_loop)
    h._upstreams.append(made)  # type: ignore[arg-type]
    return made


def service(upstream: list[str], **settings: Any) -> dict[str, Any]:
    return {"services": [{"name": "svc", "upstream": upstream, "prefix": "/", **settings}]}


def send(
    client: RawClient,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
    client.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{length}{extra}\r\n".encode() + body)
    return client.read_response(head_request=method == "HEAD")


def load(
    port: int,
    count: int,
    request: Callable[[int], tuple[str, str, bytes]],
    connections: int = 8,
) -> list[tuple[int, bytes]]:
    """`count` requests over `connections` keep-alive connections (threads); (status, body)
    of each, in request order. A connection the gateway closed is opened again."""
    results: list[tuple[int, bytes]] = [(0, b"")] * count
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        client = RawClient(port)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= count:
                    return
                method, path, body = request(i)
                try:
                    status, headers, data = send(client, method, path, body)
                except (ConnectionError, OSError):
                    client.close()
                    client = RawClient(port)
                    status, data, headers = -1, b"", {}
                results[i] = (status, data)
                if headers.get("connection") == "close":
                    client.close()
                    client = RawClient(port)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def replicas_of(gw: GatewayThread, name: str = "svc") -> Replicas:
    snapshot = gw.gateway.snapshot
    found = snapshot.service(name)
    assert found is not None
    return found.replicas


def upstreams_view(gw: GatewayThread) -> dict[str, Any]:
    """GET /admin/upstreams, through the admin listener."""
    port = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])
    with RawClient(port) as client:
        status, _, body = send(client, "GET", "/admin/upstreams")
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


ADMIN = {"admin": {"address": "127.0.0.1:0"}}

# -- a replica answering 500: ejected, and nothing retried that must not be ----------------


def failing_replica_case(h: Harness, requests: int) -> None:
    """One of 3 replicas always answers 500: `requests` GETs, then 60 POSTs."""
    good = [upstream(h, n) for n in ("a", "b")]
    bad = upstream(h, "bad", status=500)
    gw = h.gateway(service([good[0].url, bad.url, good[1].url]) | ADMIN)
    results = load(gw.port, requests, lambda i: ("GET", f"/items/{i}", b""))
    ok = sum(1 for status, _ in results if status == 200)
    failed = [status for status, _ in results if status != 200]
    assert set(failed) <= {500}, Counter(failed)
    # Ejected within 5 failures in a row (plus what was in flight on it then); a 500
    # is the application's answer, passed on, never retried: each failure is one of its.
    assert 5 <= bad.count() <= 5 + 8, bad.count()
    assert len(failed) == bad.count()
    assert ok / requests >= 0.999, (ok, requests, bad.count())
    view = upstreams_view(gw)["services"][0]["replicas"]
    assert [r["state"] for r in view] == ["up", "ejected", "up"], view
    assert view[1]["ejections"] == 1 and view[1]["last_error"] == f"500 from {bad.url}"
    # A POST the failing replica got reached it once, and nowhere else: a 500 is
    # the application's answer, never retried.
    replicas = replicas_of(gw)
    gw.loop_thread.call(lambda: replicas.set_checked(1, True))  # back in rotation (un-ejects)
    posts = load(gw.port, 60, lambda i: ("POST", "/orders", b"order-%d" % i), connections=4)
    everywhere = Counter(b for u in (*good, bad) for b in u.bodies("POST"))
    assert everywhere == Counter(b"order-%d" % i for i in range(60))  # each exactly once
    answered_500 = {i for i, (status, _) in enumerate(posts) if status == 500}
    assert answered_500  # some did reach it (before it was ejected again)
    assert {b"order-%d" % i for i in answered_500} == set(bad.bodies("POST"))


def test_a_replica_answering_500_is_ejected_and_gets_are_answered(h: Harness) -> None:
    failing_replica_case(h, 10_000)  # a few seconds


def test_an_ejected_replica_comes_back_after_base_ejection_time(h: Harness) -> None:
    good = upstream(h, "good")
    flaky = upstream(h, "flaky", status=500)
    outlier = {"consecutive_failures": 3, "base_ejection_time": 0.3, "max_ejection_percent": 50}
    gw = h.gateway(
        service([good.url, flaky.url], balancer={"policy": "round_robin"}, outlier=outlier) | ADMIN
    )
    client = h.client(gw.port)
    replicas = replicas_of(gw)
    statuses = [send(client, "GET", f"/x/{i}")[0] for i in range(6)]
    assert sorted(statuses) == [200, 200, 200, 500, 500, 500]  # 3 in a row: out
    assert replicas.replicas[1].ejected
    view = upstreams_view(gw)["services"][0]["replicas"][1]
    assert (view["state"], view["ejections"]) == ("ejected", 1)
    assert 0 < view["ejected_for"] <= 0.3
    hits = flaky.count()
    assert [send(client, "GET", f"/y/{i}")[0] for i in range(6)] == [200] * 6
    assert flaky.count() == hits  # none while it is out
    flaky.status = 200  # it recovered meanwhile
    assert wait_until(lambda: not replicas.replicas[1].ejected, 10)
    assert upstreams_view(gw)["services"][0]["replicas"][1]["state"] == "up"
    bodies = [send(client, "GET", f"/z/{i}")[2] for i in range(6)]
    assert bodies.count(b"flaky") == 3  # back in rotation, its share again


# -- connection failures: any method moves on, before anything was written ----------------


def test_posts_go_to_another_replica_when_one_refuses(h: Harness) -> None:
    a, b = upstream(h, "a"), upstream(h, "b")
    proxy = fault(h, b.port)
    proxy.set("refuse")
    gw = h.gateway(service([a.url, proxy.url]) | {"pool": {"fail_timeout": 0.2}})
    results = load(gw.port, 50, lambda i: ("POST", "/orders", b"order-%d" % i), connections=4)
    assert [status for status, _ in results] == [200] * 50
    assert Counter(a.bodies()) == Counter(b"order-%d" % i for i in range(50))
    assert b.count() == 0
    # It comes back: connections reach it again once pool.fail_timeout is over.
    proxy.set("pass")
    more = iter(range(10_000))
    assert wait_until(
        lambda: (
            load(gw.port, 10, lambda i: ("POST", "/orders", b"later-%d" % next(more))) is not None
            and b.count() > 0
        ),
        10,
    )


def test_connect_retries_take_nothing_from_the_budget(h: Harness) -> None:
    # A budget of none: a refused connect still moves on (nothing was sent), while a
    # 502 for a GET, which needs the budget, is passed on.
    a, b = upstream(h, "a"), upstream(h, "b")
    proxy = fault(h, b.port)
    proxy.set("refuse")
    gw = h.gateway(
        service(
            [a.url, proxy.url],
            balancer={"policy": "round_robin"},
            retries={"budget_min": 0, "budget_percent": 0},
            outlier={"enabled": False},
        )
        | {"pool": {"fail_timeout": 0}}
        | ADMIN
    )
    results = load(gw.port, 40, lambda i: ("POST", "/orders", b"order-%d" % i), connections=4)
    assert [status for status, _ in results] == [200] * 40
    assert Counter(a.bodies()) == Counter(b"order-%d" % i for i in range(40))
    view = upstreams_view(gw)["services"][0]
    assert view["retries"]["connect"] > 0
    assert view["retry_budget"]["exhausted"] == 0


# -- the retry budget ------------------------------------------------------------------------


def test_all_replicas_503_retries_stay_within_the_budget(h: Harness) -> None:
    ups = [upstream(h, n, status=503) for n in ("a", "b", "c")]
    gw = h.gateway(service([u.url for u in ups], retries={"backoff_base": 0.001}) | ADMIN)
    requests = 300
    results = load(gw.port, requests, lambda i: ("GET", f"/x/{i}", b""), connections=6)
    assert {status for status, _ in results} == {503}
    attempts = sum(u.count() for u in ups)
    budget_min = 3
    assert attempts <= 1.2 * requests + budget_min, attempts
    assert attempts > requests  # some were retried
    view = upstreams_view(gw)["services"][0]
    assert view["retries"]["503"] == attempts - requests
    assert view["retry_budget"]["exhausted"] > 0


def test_a_503_with_retry_after_is_not_retried(h: Harness) -> None:
    ups = [upstream(h, n, status=503, headers=(("Retry-After", "5"),)) for n in ("a", "b")]
    gw = h.gateway(service([u.url for u in ups]))
    client = h.client(gw.port)
    for i in range(10):
        status, headers, _ = send(client, "GET", f"/x/{i}")
        assert (status, headers["retry-after"]) == (503, "5")
    assert sum(u.count() for u in ups) == 10


def test_a_get_answered_502_is_retried_on_another_replica(h: Harness) -> None:
    bad = upstream(h, "bad", status=502)
    good = upstream(h, "good")
    # A budget wide enough for every retry here, and no ejection: the rules alone.
    gw = h.gateway(
        service(
            [bad.url, good.url],
            balancer={"policy": "round_robin"},
            retries={"budget_min": 10},
            outlier={"enabled": False},
        )
    )
    client = h.client(gw.port)
    for i in range(6):
        status, _, body = send(client, "GET", f"/x/{i}")
        assert (status, body) == (200, b"good")
    # POSTs are not: the replica may have acted on them.
    statuses = [send(client, "POST", "/o", b"o%d" % i)[0] for i in range(4)]
    assert sorted(statuses) == [200, 200, 502, 502]
    assert Counter(bad.bodies() + good.bodies()) == Counter(b"o%d" % i for i in range(4))


def test_an_mcp_post_is_not_retried_even_with_an_idempotency_key(h: Harness) -> None:
    bad = upstream(h, "bad", status=503)
    good = upstream(h, "good")
    gw = h.gateway(
        {
            "services": [
                {
                    "name": "m",
                    "kind": "mcp",
                    "upstream": [bad.url + "/mcp", good.url + "/mcp"],
                    "balancer": {"policy": "round_robin"},
                    "mcp": {"dns_rebinding_protection": False},
                }
            ]
        }
    )
    client = h.client(gw.port)
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Idempotency-Key": "k1",
    }
    statuses = [send(client, "POST", "/mcp", body, headers)[0] for _ in range(4)]
    assert sorted(statuses) == [200, 200, 503, 503]
    assert bad.count("POST") == 2 and good.count("POST") == 2


def test_a_route_marked_idempotent_and_an_idempotency_key_are_retried(h: Harness) -> None:
    bad = upstream(h, "bad", status=503)
    good = upstream(h, "good")
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/charge": {
                "post": {"operationId": "charge", "responses": {"200": {"description": ""}}}
            },
            "/note": {"post": {"operationId": "note", "responses": {"200": {"description": ""}}}},
        },
    }
    gw = h.gateway(
        {
            "services": [
                {
                    "name": "svc",
                    "upstream": [bad.url, good.url],
                    "openapi": spec,
                    "validation": {"mode": "off"},
                    "mcp": {"enabled": False},
                    "balancer": {"policy": "round_robin"},
                    "retries": {"budget_min": 10},
                    "outlier": {"enabled": False},
                    "operations": {"charge": {"idempotent": True}},
                }
            ]
        }
    )
    client = h.client(gw.port)
    assert [send(client, "POST", "/charge", b"c%d" % i)[0] for i in range(4)] == [200] * 4
    keyed = [
        send(client, "POST", "/note", b"n%d" % i, {"Idempotency-Key": f"k{i}"})[0] for i in range(4)
    ]
    assert keyed == [200] * 4
    plain = [send(client, "POST", "/note", b"p%d" % i)[0] for i in range(4)]
    assert sorted(plain) == [200, 200, 503, 503]


# -- timeouts -----------------------------------------------------------------------------


def test_a_blackholed_replica_gives_504_at_the_timeout_then_is_ejected(h: Harness) -> None:
    good = upstream(h, "good")
    hole = upstream(h, "hole")
    proxy = fault(h, hole.port)
    proxy.set("blackhole")
    timeout = 0.4
    gw = h.gateway(
        service(
            [proxy.url, good.url],
            balancer={"policy": "round_robin"},
            timeouts={"first_byte": timeout},
            outlier={"consecutive_failures": 2},
            retries={"attempts": 0},
        )
        | ADMIN
    )
    client = h.client(gw.port)
    timed: list[float] = []
    for i in range(4):
        started = time.monotonic()
        status, _, body = send(client, "GET", f"/x/{i}")
        elapsed = time.monotonic() - started
        if status == 504:
            timed.append(elapsed)
        else:
            assert (status, body) == (200, b"good")
    assert len(timed) == 2  # round robin: every other one, until the second ejects it
    assert all(t >= timeout for t in timed), timed  # never early (late by a sweep at most)
    view = upstreams_view(gw)["services"][0]["replicas"]
    assert view[0]["state"] == "ejected" and view[0]["ejections"] == 1
    for i in range(6):
        assert send(client, "GET", f"/y/{i}")[:3:2] == (200, b"good")


def test_a_timeout_is_retried_for_a_get_on_another_replica(h: Harness) -> None:
    good = upstream(h, "good")
    hole = fault(h, upstream(h, "hole").port)
    hole.set("blackhole")
    gw = h.gateway(
        service(
            [hole.url, good.url],
            balancer={"policy": "round_robin"},
            timeouts={"first_byte": 0.2},
            retries={"budget_min": 10},
        )
    )
    client = h.client(gw.port)
    for i in range(4):
        assert send(client, "GET", f"/x/{i}")[::2] == (200, b"good")


def test_the_total_timeout_per_operation_and_event_streams(h: Harness) -> None:
    slow = upstream(h, "slow", body_size=2000)
    drip = fault(h, slow.port)
    drip.set("drip", n=100, seconds=0.05)  # 2 KB over a second
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/quick": {"get": {"operationId": "quick", "responses": {"200": {"description": ""}}}},
            "/patient": {
                "get": {"operationId": "patient", "responses": {"200": {"description": ""}}}
            },
        },
    }
    gw = h.gateway(
        {
            "services": [
                {
                    "name": "svc",
                    "upstream": drip.url,
                    "openapi": spec,
                    "mcp": {"enabled": False},
                    "timeouts": {"total": 0.3},
                    "operations": {"patient": {"timeouts": {"total": 30}}},
                }
            ]
        }
    )
    client = h.client(gw.port)
    # The head comes at once, the body drips past the total: the client connection is
    # cut, never a truncated body that looks complete.
    with pytest.raises((ConnectionError, OSError)):
        send(client, "GET", "/quick")
    client = h.client(gw.port)
    status, _, body = send(client, "GET", "/patient")
    assert (status, len(body)) == (200, 2000)


def test_the_total_timeout_answers_504_before_the_head(h: Harness) -> None:
    up = upstream(h, "late")
    delay = fault(h, up.port)
    delay.set("delay", seconds=2.0)
    gw = h.gateway(service([delay.url], timeouts={"total": 0.3}))
    client = h.client(gw.port)
    started = time.monotonic()
    status, _, body = send(client, "GET", "/x")
    assert status == 504 and b"total timeout" in body
    assert time.monotonic() - started >= 0.3


# -- resets and half-closes after the head ------------------------------------------------


@pytest.mark.parametrize("mode", ["reset_after", "half_close"])
def test_a_reset_after_the_head_aborts_the_client_and_is_not_retried(h: Harness, mode: str) -> None:
    ups = [upstream(h, n, body_size=10_000) for n in ("a", "b")]
    proxies = [fault(h, u.port) for u in ups]
    for proxy in proxies:
        proxy.set(mode, n=300)  # the head and some of the body
    gw = h.gateway(service([p.url for p in proxies], timeouts={"idle": 0.5}))
    client = h.client(gw.port)
    client.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    head = client.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 10000" in head
    got = b""
    try:
        while chunk := client.sock.recv(65536):
            got += chunk
    except (ConnectionError, OSError):
        pass
    got += client.buffer
    assert len(got) < 10_000  # cut: never framed as complete
    assert sum(u.count() for u in ups) == 1  # and not retried


def test_a_reset_before_the_head_retries_a_get_but_never_a_written_post(h: Harness) -> None:
    # The proxy passes the request on, then resets the gateway's connection at the
    # first byte of the response: the replica got (and may have acted on) the request.
    ups = [upstream(h, n) for n in ("reset", "good")]
    cut = fault(h, ups[0].port)
    cut.set("reset_after", n=0)
    gw = h.gateway(
        service(
            [cut.url, ups[1].url],
            balancer={"policy": "round_robin"},
            retries={"budget_min": 10},
            outlier={"enabled": False},
        )
    )
    client = h.client(gw.port)
    for i in range(4):
        assert send(client, "GET", f"/x/{i}")[::2] == (200, b"good")
    assert ups[0].count("GET") >= 1 and ups[1].count("GET") == 4  # reached it, moved on
    client = h.client(gw.port)
    statuses = []
    for i in range(4):
        status, headers, _ = send(client, "POST", "/o", b"o%d" % i)
        statuses.append(status)
        if headers.get("connection") == "close":
            client = h.client(gw.port)
    assert sorted(statuses) == [200, 200, 502, 502]
    # Each POST reached exactly one replica, once.
    assert Counter(ups[0].bodies() + ups[1].bodies()) == Counter(b"o%d" % i for i in range(4))


# -- circuit breaking ------------------------------------------------------------------------


def test_past_max_requests_a_replica_answers_503_with_retry_after(h: Harness) -> None:
    up = upstream(h, "slow")
    delay = fault(h, up.port)
    delay.set("delay", seconds=1.0)
    gw = h.gateway(service([delay.url], circuit_breaker={"max_requests": 1}) | ADMIN)
    first = h.client(gw.port)
    first.send(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
    assert wait_until(lambda: replicas_of(gw).replicas[0].active == 1)
    second = h.client(gw.port)
    status, headers, body = send(second, "GET", "/refused")
    assert (status, headers["retry-after"]) == (503, "1")
    assert headers["content-type"] == "application/problem+json"
    assert b"circuit breaker" in body
    assert first.read_response()[0] == 200
    view = upstreams_view(gw)["services"][0]["replicas"][0]
    assert view["rejected"] == {"requests": 1, "pending": 0}


# -- balancing ------------------------------------------------------------------------------


def test_weights_share_the_traffic(h: Harness) -> None:
    a, b = upstream(h, "a"), upstream(h, "b")
    for policy in ("round_robin", "least_request"):
        a.seen.clear()
        b.seen.clear()
        gw = h.gateway(
            service(
                [{"url": a.url, "weight": 3}, b.url],
                balancer={"policy": policy},
            )
        )
        load(gw.port, 400, lambda i: ("GET", f"/x/{i}", b""), connections=1)
        if policy == "round_robin":
            assert (a.count(), b.count()) == (300, 100)
        else:
            assert 250 <= a.count() <= 350, (a.count(), b.count())


def test_consistent_hashing_on_a_header_sticks_and_moves_little(h: Harness) -> None:
    ups = [upstream(h, n) for n in "abcd"]
    keyed = {"balancer": {"policy": "hash", "hash_on": {"header": "X-User"}}}
    gw = h.gateway(service([u.url for u in ups[:3]], **keyed))
    client = h.client(gw.port)
    users = [f"user-{i}" for i in range(300)]
    first = {u: send(client, "GET", "/x", headers={"X-User": u})[2] for u in users}
    again = {u: send(client, "GET", "/x", headers={"X-User": u})[2] for u in users}
    assert first == again
    assert set(first.values()) == {b"a", b"b", b"c"}
    gw4 = h.gateway(service([u.url for u in ups], **keyed))
    client4 = h.client(gw4.port)
    after = {u: send(client4, "GET", "/x", headers={"X-User": u})[2] for u in users}
    moved = sum(1 for u in users if after[u] != first[u])
    # Maglev moves keys to the new replica, but for a few slots that change hands
    # between the others. The ports here are random, hence the table: 4 of these 300
    # keys did so in one clean-clone CI run, so allow 2 %.
    elsewhere = [u for u in users if after[u] != first[u] and after[u] != b"d"]
    assert len(elsewhere) <= 6, elsewhere
    assert moved <= len(users) / 3, moved


def test_consistent_hashing_on_a_path_parameter(h: Harness) -> None:
    """`hash_on: {path: id}`: the key is the route's decoded parameter, made for the
    balancer though no step reads the params (escaped and plain spellings agree)."""
    ups = [upstream(h, n) for n in "abc"]
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "users", "version": "1"},
        "paths": {
            "/users/{id}": {
                "get": {
                    "operationId": "getUser",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    settings = {"balancer": {"policy": "hash", "hash_on": {"path": "id"}}}
    svc = {"name": "users", "upstream": [u.url for u in ups], "openapi": spec, **settings}
    gw = h.gateway({"services": [svc]})
    client = h.client(gw.port)
    ids = [f"u{i}" for i in range(200)]
    first = {i: send(client, "GET", f"/users/{i}")[2] for i in ids}
    assert {i: send(client, "GET", f"/users/{i}")[2] for i in ids} == first
    # "%75" is "u": the same key, so the same replica.
    assert {i: send(client, "GET", f"/users/%75{i[1:]}")[2] for i in ids} == first
    assert set(first.values()) == {b"a", b"b", b"c"}


@pytest.mark.parametrize("algorithm", ["maglev", "ring"])
def test_a_fourth_replica_moves_at_most_a_third_of_the_keys(algorithm: str) -> None:
    from runmcp_fast.config import HashOnConfig

    def owners(urls: list[str]) -> list[str]:
        replicas = Replicas(
            [None] * len(urls),
            urls=urls,
            policy="hash",
            hash_on=HashOnConfig(header="x-key"),
            algorithm=algorithm,
        )
        return [urls[replicas.owner_of(b"key-%d" % i)] for i in range(10_000)]

    three = [f"http://10.0.0.{i}:8080" for i in range(1, 4)]
    before = owners(three)
    after = owners([*three, "http://10.0.0.4:8080"])
    moved = sum(1 for x, y in zip(before, after, strict=True) if x != y)
    elsewhere = sum(
        1 for x, y in zip(before, after, strict=True) if x != y and y != "http://10.0.0.4:8080"
    )
    # A ring moves keys only to the new replica; Maglev's table, nearly so (its paper:
    # a few slots change hands between the others too; here 5 of 10,000 keys).
    assert elsewhere <= (0 if algorithm == "ring" else 100), elsewhere
    shares = Counter(after)
    print(f"{algorithm}: {moved / 100:.1f} % of 10,000 keys moved ({elsewhere} not to the new one)")
    assert moved <= 10_000 / 3
    assert all(1_500 <= n <= 3_500 for n in shares.values()), shares
    # Removing it puts every key back where it was.
    assert owners(three) == before


# -- active health checks ---------------------------------------------------------------------


def test_a_replica_failing_its_check_leaves_and_comes_back_after_rise(h: Harness) -> None:
    a, b = upstream(h, "a"), upstream(h, "b")
    b.health_status = 503
    check = {"path": "/healthz", "interval": 0.05, "timeout": 0.05, "rise": 3, "fall": 2}
    gw = h.gateway(service([a.url, b.url], health_check=check) | ADMIN)
    replicas = replicas_of(gw)
    assert wait_until(lambda: not replicas.replicas[1].check_up, 10)
    seen_down = len(b.health_checks)
    assert seen_down >= 2  # fall
    b.seen.clear()
    load(gw.port, 50, lambda i: ("GET", f"/x/{i}", b""), connections=2)
    assert b.count() == 0
    assert upstreams_view(gw)["services"][0]["replicas"][1]["state"] == "unhealthy"
    b.health_status = 200
    recovered_at = len(b.health_checks)
    assert wait_until(lambda: replicas.replicas[1].check_up, 10)
    assert len(b.health_checks) - recovered_at >= 3  # rise
    load(gw.port, 50, lambda i: ("GET", f"/y/{i}", b""), connections=2)
    assert b.count() > 0
    port = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])
    with RawClient(port) as client:
        text = send(client, "GET", "/metrics")[2].decode()
    for result in ("ok", "failed"):
        series = f'runmcp_upstream_health_checks_total{{result="{result}",service="svc",upstream="{b.url}"}} '
        found = [line for line in text.splitlines() if line.startswith(series)]
        assert found and float(found[0].split()[-1]) >= 2, (result, found)


def test_checks_run_in_one_worker_and_every_worker_follows(h: Harness, tmp_path: Path) -> None:
    a, b = upstream(h, "a"), upstream(h, "b")
    b.health_status = 503
    check = {"path": "/healthz", "interval": 0.1, "timeout": 0.1, "rise": 1, "fall": 1}
    data = service([a.url, b.url], health_check=check) | {
        "admin": {"address": f"127.0.0.1:{free_port()}"}
    }
    with GatewayProcess.from_config(data, tmp_path, ("--workers", "2")):
        admin = int(data["admin"]["address"].rsplit(":", 1)[1])

        def states() -> dict[int, str]:
            """Worker pid -> replica b's check, from as many workers as answer."""
            found: dict[int, str] = {}
            for _ in range(20):
                with RawClient(admin) as client:
                    client.send(
                        b"GET /admin/upstreams HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    )
                    _, _, body = client.read_response()
                view = json.loads(body)
                found[view["worker"]] = view["services"][0]["replicas"][1]["check"]
            return found

        assert wait_until(lambda: set(states().values()) == {"failing"} and len(states()) == 2, 20)
        pids = {s.headers["user-agent"] for s in b.health_checks}
        assert len(pids) == 1, pids  # one worker checks, for the node
        b.health_status = 200
        assert wait_until(lambda: set(states().values()) == {"passing"} and len(states()) == 2, 20)


# -- visible state --------------------------------------------------------------------------


def test_metrics_show_health_ejections_retries_and_rejections(h: Harness) -> None:
    good = upstream(h, "good")
    bad = upstream(h, "bad", status=502)
    gw = h.gateway(
        service([good.url, bad.url], balancer={"policy": "round_robin"})
        | {"admin": {"address": "127.0.0.1:0"}}
    )
    load(gw.port, 40, lambda i: ("GET", f"/x/{i}", b""), connections=2)
    port = int(gw.gateway.admin_addresses[0].rsplit(":", 1)[1])
    with RawClient(port) as client:
        status, _, body = send(client, "GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert f'runmcp_upstream_health{{service="svc",upstream="{bad.url}"}} 0.0' in text
    assert f'runmcp_upstream_health{{service="svc",upstream="{good.url}"}} 1.0' in text
    assert f'runmcp_upstream_ejections_total{{service="svc",upstream="{bad.url}"}} 1.0' in text
    replicas = replicas_of(gw)
    retried = replicas.retried_counts()["502"]
    assert retried > 0
    assert f'runmcp_upstream_retries_total{{reason="502",service="svc"}} {retried:.1f}' in text
    exhausted = replicas.budget_exhausted
    assert f'runmcp_upstream_retry_budget_exhausted_total{{service="svc"}} {exhausted:.1f}' in text
    for url in (good.url, bad.url):
        assert f'runmcp_upstream_requests_in_flight{{service="svc",upstream="{url}"}} 0.0' in text
        for limit in ("pending", "requests"):
            assert (
                "runmcp_upstream_circuit_breaker_rejections_total"
                f'{{limit="{limit}",service="svc",upstream="{url}"}} 0.0'
            ) in text
    assert "runmcp_upstream_health_checks_total{" not in text  # no active checks here
