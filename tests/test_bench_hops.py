"""bench/mcp/hops.py's reading of a capture: packets cut into calls, each call's hops
(the proxy's turnarounds and the upstream's time) from the right packets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# (appended: its modules' plain names must not shadow anything the suite imports)
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench" / "mcp"))

from hops import Packet, call_hops, parse_capture, per_peer, split_calls


def packets(*timed: tuple[float, str], peer: str = "a") -> list[Packet]:
    """(µs, direction) -> Packets through proxy `peer`, as read_capture gives them."""
    return [Packet(t / 1e6, d, peer) for t, d in timed]


def test_a_call_in_two_request_packets_and_three_answer_packets() -> None:
    # The request's head and body in two packets; the answer's head, an event, the end.
    call = packets(
        (0, "cp"), (10, "cp"), (50, "pu"), (60, "pu"), (400, "up"), (440, "pc"),
        (500, "up"), (520, "up"), (560, "pc"),
    )  # fmt: skip
    hops = call_hops(call)
    assert hops == pytest.approx(
        {"request": 40, "upstream": 340, "head": 40, "end": 40, "total": 560, "pieces": 3}
    )


def test_calls_are_cut_where_the_client_speaks_after_an_answer() -> None:
    # Through two proxies in turn: each call's packets stay with it.
    first = packets((0, "cp"), (40, "pu"), (300, "up"), (330, "pc"), peer="a")
    second = packets((1000, "cp"), (1050, "pu"), (1300, "up"), (1340, "pc"), (1345, "pc"), peer="b")
    calls = split_calls(first + second)
    assert [len(c) for c in calls] == [4, 5]
    assert [c[0].peer for c in calls] == ["a", "b"]
    assert call_hops(calls[1]) == pytest.approx(
        {"request": 50, "upstream": 250, "head": 40, "end": 45, "total": 345, "pieces": 1}
    )


def test_an_upstream_packet_before_the_request_went_on_is_not_this_calls() -> None:
    # The previous answer's last chunk, after the proxy had answered its client.
    call = packets((0, "cp"), (5, "up"), (40, "pu"), (300, "up"), (330, "pc"))
    assert call_hops(call) == pytest.approx(
        {"request": 40, "upstream": 260, "head": 30, "end": 30, "total": 330, "pieces": 1}
    )


@pytest.mark.parametrize(
    "call",
    [
        [(0, "pu"), (300, "up"), (330, "pc")],  # the capture began mid-call
        [(0, "cp"), (40, "pu")],  # it ended before the answer
        [(0, "cp"), (40, "pc")],  # answered by the proxy itself, nothing forwarded
        [(0, "cp"), (40, "pu"), (300, "up"), (330, "pc"), (360, "up")],  # answer cut short
    ],
)
def test_a_partial_call_is_left_out(call: list[tuple[float, str]]) -> None:
    assert call_hops(packets(*call)) is None


def test_an_answer_ending_after_the_next_call_began_stays_with_its_proxy() -> None:
    # tcpdump's text for: a call through proxy :9001 (upstream side from :5001) whose
    # last chunk comes after the next call, through :9002 (from :5002), began.
    lines = [
        "1.000000 IP 127.0.0.1.4001 > 127.0.0.1.9001: tcp 300",
        "1.000040 IP 127.0.0.1.5001 > 127.0.0.1.7000: tcp 350",
        "1.000400 IP 127.0.0.1.7000 > 127.0.0.1.5001: tcp 270",
        "1.000450 IP 127.0.0.1.9001 > 127.0.0.1.4001: tcp 290",
        "1.000600 IP 127.0.0.1.7000 > 127.0.0.1.5001: tcp 160",
        "1.000650 IP 127.0.0.1.9001 > 127.0.0.1.4001: tcp 160",
        "1.000700 IP 127.0.0.1.4002 > 127.0.0.1.9002: tcp 300",
        "1.000720 IP 127.0.0.1.7000 > 127.0.0.1.5001: tcp 5",
        "1.000730 IP 127.0.0.1.9001 > 127.0.0.1.4001: tcp 5",
        "1.000750 IP 127.0.0.1.5002 > 127.0.0.1.7000: tcp 350",
        "1.001100 IP 127.0.0.1.7000 > 127.0.0.1.5002: tcp 270",
        "1.001150 IP 127.0.0.1.9002 > 127.0.0.1.4002: tcp 290",
    ]
    streams = per_peer(parse_capture("\n".join(lines), {9001: "a", 9002: "b"}, 7000))
    [a_call] = split_calls(streams["a"])
    assert call_hops(a_call) == pytest.approx(
        {"request": 40, "upstream": 360, "head": 50, "end": 10, "total": 730, "pieces": 3}
    )
    [b_call] = split_calls(streams["b"])
    assert call_hops(b_call) == pytest.approx(
        {"request": 50, "upstream": 350, "head": 50, "end": 50, "total": 450, "pieces": 1}
    )
