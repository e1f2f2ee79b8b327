"""``plantstream simulate`` against a server that pushes back: failed connections and 429s
are retried, and the run exits 0 once every batch was finally accepted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fixtures.api import Api

from plantstream.api.state import RateLimiter
from plantstream.testing import answers_ok, wait_until


@contextmanager
def flaky_then_rate_limited(api: Api) -> Iterator[str]:
    """A port whose first connection is dropped unanswered; then the app, rate-limited."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    servers: list[uvicorn.Server] = []
    api.state.limiter = RateLimiter(2.0)  # a burst of 4, then 2 requests a second

    def run() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.close()  # a reset, as from a gateway or a restarting server
        listener.close()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        server = uvicorn.Server(uvicorn.Config(api.client.app, log_level="warning"))
        servers.append(server)
        server.run(sockets=[sock])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        wait_until(lambda: bool(servers), timeout=10, what="the server to start")
        servers[0].should_exit = True
        thread.join(10)


def test_simulate_exits_0_when_every_batch_was_finally_accepted(
    api: Api, database_url: str
) -> None:
    key = api.make_key("ingest", "plant-01")
    with flaky_then_rate_limited(api) as url:
        ran = subprocess.run(
            [
                *(sys.executable, "-m", "plantstream", "simulate", "--url", url, "--key", key),
                *("--rate", "200", "--duration", "3", "--machines", "2", "--faults", "0"),
            ],
            env={**os.environ, "PLANTSTREAM_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert answers_ok(url + "/healthz")
    stats = json.loads(ran.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert stats["failed_batches"] == 0
    assert stats["errors"] == {}
    assert stats["accepted"] > 0
    assert stats["sent"] == stats["accepted"] + stats["rejected"]
    # it did meet a dropped connection and push-back on the way, and retried both
    assert "http_429" in stats["transient"]
    assert set(stats["transient"]) - {"http_429"}, stats["transient"]
    assert stats["retries"] >= sum(stats["transient"].values())
