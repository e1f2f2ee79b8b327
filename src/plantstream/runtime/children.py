"""What runs inside each child process of the multi-process layout: a web worker on the shared
socket, or a processor. Each child names itself (``ps-web-N``, ``ps-processor``) and dies
with its supervisor.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Sequence

import uvicorn

from plantstream.local.process import become
from plantstream.runtime.runtime import Runtime
from plantstream.runtime.signals import stop_on_signals
from plantstream.runtime.web import server_config, settle_heap
from plantstream.settings import Settings


def run_web_worker(
    name: str, supervisor: int, settings: Settings, sock: socket.socket, surfaces: Sequence[str]
) -> None:
    """Serve ``surfaces`` on the inherited listening ``sock`` until SIGTERM/SIGINT.

    Each worker has its own runtime (pool, stream producer, key cache) and its own server,
    hence its own connection guard: the limits of ``runtime.limits`` hold per worker.
    """
    become(name, supervisor, settings.log_level)
    # uvicorn re-raises the signal it stopped on once it has drained; with these handlers in
    # place that is a no-op, so the runtime below is still closed
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    runtime = Runtime(settings)
    try:
        app = runtime.app(surfaces)
        server = uvicorn.Server(server_config(app, settings))
        settle_heap()
        server.run(sockets=[sock])
    finally:
        runtime.close()


def run_processor(name: str, supervisor: int, settings: Settings) -> None:
    """The processor (with its post-commit sinks: Redis latest, detection) until SIGTERM."""
    become(name, supervisor, settings.log_level)
    stop = stop_on_signals()
    runtime = Runtime(settings)
    try:
        runtime.processor.run(stop)
    finally:
        runtime.close()
