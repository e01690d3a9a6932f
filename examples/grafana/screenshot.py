"""The dashboard's panels drawn from a real run, for docs/images/dashboard.png.

Runs the demo petstore upstream and a gateway in front of it (metrics on the
admin listener, a second service whose upstream is down), Prometheus (Debian's
`prometheus`) scraping the gateway every second, and a mixed load for
`--seconds`: valid and invalid requests, misses, upstream errors, MCP tool
calls on the generated endpoint. Then it draws runmcp-fast.json's panels (its
queries, titles and units, read from the file) on a Prometheus console page
(Prometheus's own templating and graphs) in headless Chromium (Debian's
`chromium`) and saves the picture. Grafana itself is in no registry this
project can use.

By hand, not in CI:

    .venv/bin/python examples/grafana/screenshot.py [--seconds 90] [-o docs/images/dashboard.png]

Installs prometheus, chromium and imagemagick with apt-get when missing (as root).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def ensure(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        print(f"installing {package} (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package], check=True)
        found = shutil.which(binary)
    if found is None:
        raise SystemExit(f"{binary} is missing")
    return found


def request(port: int, method: str, path: str, body: bytes | None = None) -> int:
    data = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
    )
    try:
        with urllib.request.urlopen(data, timeout=10) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def load(port: int, seconds: float, stop: threading.Event) -> None:
    """A mix: pets listed and shown, bad ids (400), misses (404), MCP tool calls."""
    rng = random.Random(7)
    call = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "listPets", "arguments": {"limit": 2}}}
    ).encode()  # fmt: skip
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        roll = rng.random()
        if roll < 0.55:
            request(port, "GET", "/v1/pets")
        elif roll < 0.8:
            request(port, "GET", f"/v1/pets/{rng.randint(1, 3)}")
        elif roll < 0.88:
            request(port, "GET", "/v1/pets/not-a-number")
        elif roll < 0.91:
            request(port, "GET", "/v1/nowhere")
        elif roll < 0.94:
            request(port, "GET", "/legacy/report")
        else:
            request(port, "POST", "/v1/mcp", call)


_UNITS = {"reqps": "/s", "s": "s", "percentunit": "", "short": ""}
_FORMATTERS = {
    "s": "PromConsole.NumberFormatter.humanizeNoSmallPrefix",
    "percentunit": "PromConsole.NumberFormatter.humanizeNoSmallPrefix",
}


def console(panels: list[dict[str, object]], seconds: int) -> str:
    """A Prometheus console template drawing the dashboard's panels, two per row."""
    cells = []
    for i, panel in enumerate(panels):
        targets = panel["targets"]
        assert isinstance(targets, list)
        exprs = [t["expr"] for t in targets]
        names = [t["legendFormat"].replace("{{", "[[").replace("}}", "]]") for t in targets]
        unit = panel["fieldConfig"]["defaults"]["unit"]  # type: ignore[index]
        formatter = _FORMATTERS.get(unit, "PromConsole.NumberFormatter.humanize")
        cells.append(
            f'<td><h5>{panel["title"]}</h5><div id="g{i}"></div><script>'
            f'new PromConsole.Graph({{node: document.querySelector("#g{i}"), '
            f"expr: {json.dumps(exprs)}, name: {json.dumps(names)}, "
            f'width: 600, height: 200, duration: {seconds}, yUnits: "{_UNITS.get(unit, "")}", '
            f"yAxisFormatter: {formatter}, yHoverFormatter: {formatter}}});</script></td>"
        )
    rows = "".join(f"<tr>{''.join(cells[i : i + 2])}</tr>" for i in range(0, len(cells), 2))
    return (
        '<!doctype html><html lang="en"><head>{{ template "prom_console_head" }}'
        "<style>body{padding:16px;background:#fff} td{vertical-align:top;padding:6px 14px}"
        " h5{margin:4px 0}</style></head><body><h3>runmcp-fast</h3>"
        f"<table>{rows}</table></body></html>"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs/images/dashboard.png")
    parser.add_argument(
        "--limits", action="store_true", help="also a limit-count on listPets (its panel too)"
    )
    args = parser.parse_args()
    prometheus = ensure("prometheus", "prometheus")
    chromium = ensure("chromium", "chromium")
    panels = json.loads((HERE / "runmcp-fast.json").read_text())["panels"]
    upstream_port, gateway_port, admin_port, prom_port = (free_port() for _ in range(4))
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="runmcp-dashboard-") as tmp:
        scratch = Path(tmp)
        config = {
            "listeners": [{"address": f"127.0.0.1:{gateway_port}"}],
            "admin": {"address": f"127.0.0.1:{admin_port}"},
            "services": [
                {
                    "name": "petstore",
                    "upstream": f"http://127.0.0.1:{upstream_port}/v1",
                    "openapi": str(REPO / "examples/petstore.yaml"),
                    "strip_prefix": "/v1",
                },
                # An upstream that is down: its 502s are the error ratio's 5xx.
                {
                    "name": "legacy",
                    "upstream": f"http://127.0.0.1:{free_port()}",
                    "prefix": "/legacy",
                },
            ],
        }
        (scratch / "consoles").mkdir()
        (scratch / "libraries").mkdir()
        library = Path("/usr/share/doc/prometheus/examples/console_libraries/prom.lib")
        shutil.copy(library, scratch / "libraries" / "prom.lib")
        shown = [p for p in panels if p["title"] != "Rate-limit rejections" or args.limits]
        (scratch / "consoles" / "runmcp.html").write_text(console(shown, int(args.seconds) + 15))
        (scratch / "gateway.yaml").write_text(json.dumps(config))
        (scratch / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: runmcp-fast\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{admin_port}']}}]\n"
        )
        try:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "runmcp_fast.demo", "--listen", f"127.0.0.1:{upstream_port}"]
            ))  # fmt: skip
            wait_port(upstream_port)
            runmcp = Path(sys.executable).with_name("runmcp-fast")
            procs.append(
                subprocess.Popen([str(runmcp), "serve", "-c", str(scratch / "gateway.yaml")])
            )
            wait_port(admin_port)
            procs.append(subprocess.Popen(
                [prometheus, f"--config.file={scratch / 'prometheus.yml'}",
                 f"--storage.tsdb.path={scratch / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                 f"--web.console.templates={scratch / 'consoles'}",
                 f"--web.console.libraries={scratch / 'libraries'}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
            wait_port(prom_port)
            stop = threading.Event()
            workers = [
                threading.Thread(target=load, args=(gateway_port, args.seconds, stop))
                for _ in range(4)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            time.sleep(3)  # the last scrapes (1 s apart) are in
            url = f"http://127.0.0.1:{prom_port}/consoles/runmcp.html"
            args.output.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={scratch / 'chromium'}", "--hide-scrollbars",
                 "--virtual-time-budget=20000", "--window-size=1320,1480",
                 f"--screenshot={args.output}", url],
                check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            print(f"wrote {args.output}")
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
