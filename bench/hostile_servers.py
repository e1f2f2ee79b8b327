"""The attacks of bench/hostile.py against candidate HTTP servers, each serving a trivial ASGI app
(one 200 JSON answer), to choose the server by measurement rather than by its documentation.

Candidates: uvicorn with httptools as configured before the connection limits, the same with
them (plantstream's ``server_config``), uvicorn with h11, granian and hypercorn with their
header/read timeouts set to ``--head-timeout``. granian and hypercorn are not dependencies of
plantstream: install them into a virtual environment of their own and pass its ``bin``
directory (``python -m venv /tmp/srv && /tmp/srv/bin/pip install granian==2.8.7
hypercorn==0.18.0 uvicorn==0.54.0``; ``--venv /tmp/srv/bin``). Writes
bench/results/hostile_servers.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
from hostile import RESULTS, held_connections, large_headers, probe_loop, still_open, summary

from plantstream.local.ports import free_port
from plantstream.testing import answers_ok, start_process, stop_process, write_result

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b'{"status": "ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

PLANTSTREAM_RUNNER = """
import sys, uvicorn
from app import app
from plantstream.runtime.web import server_config
from plantstream.settings import Settings
settings = Settings(port=int(sys.argv[1]), head_timeout_seconds=float(sys.argv[2]))
uvicorn.Server(server_config(app, settings, log_level="error")).run()
"""


def commands(
    venv: Path, port: int, head_timeout: float
) -> dict[str, tuple[list[str], dict[str, str]]]:
    here = [sys.executable, "runner.py", str(port), str(head_timeout)]
    return {
        "uvicorn_httptools_before": (here, {"PLANTSTREAM_CONNECTION_GUARD": "false"}),
        "uvicorn_httptools_guarded": (here, {"PLANTSTREAM_CONNECTION_GUARD": "true"}),
        "uvicorn_h11": (
            [
                *(str(venv / "uvicorn"), "app:app", "--port", str(port), "--http", "h11"),
                *("--limit-concurrency", "1000", "--timeout-keep-alive", "75"),
                *("--log-level", "error"),
            ],
            {},
        ),
        "granian": (
            [
                *(str(venv / "granian"), "--interface", "asgi", "--host", "127.0.0.1"),
                *("--port", str(port), "--http", "1", "--workers", "1"),
                *("--http1-header-read-timeout", str(int(head_timeout * 1000))),
                *("--log-level", "error", "app:app"),
            ],
            {},
        ),
        "hypercorn": (
            [
                *(str(venv / "hypercorn"), "--bind", f"127.0.0.1:{port}"),
                *("--read-timeout", str(int(head_timeout)), "--keep-alive", "75"),
                *("--log-level", "error", "app:app"),
            ],
            {},
        ),
    }


def peak_rss(pid: int, done: threading.Event, peak: list[int]) -> None:
    """The largest RSS of ``pid`` and its children (granian's workers) until ``done``."""
    root = psutil.Process(pid)
    while not done.wait(0.2):
        with contextlib.suppress(psutil.Error):
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in [root, *root.children(True)]))


def attack(url: str, port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    health = httpx.Client(
        timeout=10,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        headers={"Connection": "close"},
    )

    def get() -> int:
        return health.get(url + "/healthz").status_code

    out: dict[str, Any] = {}
    for name, first in (("idle", b""), ("partial", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-S: ")):
        with held_connections(port, args.connections, first) as socks:
            out[name] = summary(*probe_loop(args.hold, 0.05, get))
            out[name]["attack_connections_open_at_end"] = sum(still_open(s) for s in socks)
    done, peak = threading.Event(), [0]
    sampler = threading.Thread(target=peak_rss, args=(pid, done, peak))
    sampler.start()
    with large_headers(port, args.header_connections, args.header_mb) as outcomes:
        out["large_headers"] = summary(*probe_loop(args.hold, 0.05, get))
    done.set()
    sampler.join()
    out["large_headers"].update(attack_outcomes=dict(outcomes), peak_rss_mib=peak[0] >> 20)
    health.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--venv", type=Path, required=True, help="bin/ with granian, hypercorn")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=8)
    parser.add_argument("--head-timeout", type=float, default=5)
    parser.add_argument("--header-connections", type=int, default=4)
    parser.add_argument("--header-mb", type=int, default=50)
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as workdir:
        Path(workdir, "app.py").write_text(APP)
        Path(workdir, "runner.py").write_text(PLANTSTREAM_RUNNER)
        for name in commands(args.venv, 0, args.head_timeout):
            port = free_port()
            argv, extra = commands(args.venv, port, args.head_timeout)[name]
            url = f"http://127.0.0.1:{port}"
            proc = start_process(
                argv,
                ready=lambda url=url: answers_ok(url + "/healthz"),
                what=name,
                cwd=workdir,
                env={**os.environ, **extra},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                results[name] = attack(url, port, proc.pid, args)
            finally:
                stop_process(proc, timeout=20)
            print(name, json.dumps(results[name]), flush=True)
    path = write_result(
        "hostile_servers",
        {
            "note": "trivial ASGI app; 2 shared cores, busy while measured",
            "attack_connections": args.connections,
            "head_timeout_seconds": args.head_timeout,
            "hold_seconds": args.hold,
            "large_headers": f"{args.header_connections} x {args.header_mb} MB",
            **results,
        },
        RESULTS,
    )
    print(f"written to {path}")


if __name__ == "__main__":
    main()
