"""The one web server configuration (connection limits, keep-alive, proxy headers) and its runs.

``serve`` roles run it in the main thread; the demo runs it in a thread beside its work. The
connection limits (``runtime.limits``) are enforced by uvicorn's httptools protocol with a guard
in it (``runtime.guarded_http``); SECURITY.md, "Connection limits", says why this server.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from plantstream.runtime.guarded_http import guarded_protocol
from plantstream.runtime.limits import ConnectionGuard, ConnectionLimits
from plantstream.settings import Settings


def server_config(
    app: FastAPI, settings: Settings, *, log_level: str | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` on ``settings.host:settings.port``.

    Each call makes a new connection guard: one per server.
    """
    guard = ConnectionGuard(ConnectionLimits.from_settings(settings))
    http = guarded_protocol(guard) if settings.connection_guard else "httptools"
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=(log_level or settings.log_level).lower(),
        access_log=False,
        http=http,
        ws="none",  # no WebSocket routes; an upgrade would also leave the guard's books
        # the cap the guard enforces (uvicorn's own check, which would answer every request
        # 503 at the cap, health probes too, is switched off in the guarded protocol)
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def settle_heap() -> None:
    """Freeze what a server process built before serving out of the cyclic collector's sight.

    The modules, the app and its state live as long as the process; left in the collector's
    generations, every full collection walks them all (170,000 objects in ``serve ingest``),
    and the big batches of ingest trigger one every few hundred requests: about 6% of the
    CPU per request (bench/results/redesign_ab.json). Garbage is collected first, so only
    live objects are frozen. Only for a process that serves until it exits.
    """
    gc.collect()
    gc.freeze()


def serve_web(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (uvicorn's own handlers, then ours see the signal)."""
    server = uvicorn.Server(server_config(app, settings))
    settle_heap()
    server.run()


@contextlib.contextmanager
def web_server_thread(
    app: FastAPI, settings: Settings, *, log_level: str | None = None, start_timeout: float = 30
) -> Iterator[uvicorn.Server]:
    """Serve ``app`` on a thread while the block runs; stops it (gracefully) on leaving."""
    server = uvicorn.Server(server_config(app, settings, log_level=log_level))
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the web server did not start on port {settings.port}")
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=15)
