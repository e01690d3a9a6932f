"""Change one service through the admin API every `--interval` seconds, for `--seconds`.

Each change is `PUT /admin/services/{name}` with the service's spec alternating
between two files: the gateway rebuilds its whole route table each time. A PUT
is sent at the next interval tick after the previous one was answered (the
admin API answers once the new snapshot is swapped in), so when a build takes
longer than the interval the changes run back to back. Prints one JSON object:
every change's start, end and status (perf_counter times).

    python bench/reload/swapper.py --admin 127.0.0.1:28183 --token T --name svc0001 \
        --spec v1.json --spec v2.json --upstream http://127.0.0.1:28181 --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", required=True, help="HOST:PORT of the admin listener")
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", required=True, help="the service to change")
    parser.add_argument("--spec", action="append", required=True, help="twice: the versions")
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--delay", type=float, default=0.0, help="wait this long first")
    args = parser.parse_args()
    host, _, port = args.admin.rpartition(":")
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    bodies = [
        json.dumps(
            {"upstream": args.upstream, "openapi": spec, "base_path": f"/{args.name}"}
        ).encode()
        for spec in args.spec
    ]
    changes = []
    time.sleep(args.delay)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    start = time.perf_counter()
    end = start + args.seconds
    tick = start
    index = 0
    while tick < end:
        now = time.perf_counter()
        if now < tick:
            time.sleep(tick - now)
        began = time.perf_counter()
        try:
            conn.request("PUT", f"/admin/services/{args.name}", bodies[index % 2], headers)
            answer = conn.getresponse()
            body = answer.read()
            status = answer.status
        except OSError as exc:
            status, body = 0, str(exc).encode()
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
        finished = time.perf_counter()
        change: dict[str, object] = {"start": began, "end": finished, "status": status}
        if status not in (200, 201):
            change["answer"] = body[:500].decode(errors="replace")
        changes.append(change)
        index += 1
        tick = max(tick + args.interval, finished)
    conn.close()
    json.dump({"changes": changes}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
