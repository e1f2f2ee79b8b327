"""What runs inside each child process of the multi-process layout: a web worker on the shared
socket, or a processor. Each child names itself (``ps-web-N``, ``ps-processor``) and dies
with its supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

import uvicorn

from plantstream.runtime.runtime import Runtime
from plantstream.runtime.signals import stop_on_signals
from plantstream.runtime.web import server_config, settle_heap
from plantstream.settings import Settings

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
SUPERVISOR_POLL_S = 0.5


def become(name: str, supervisor: int, log_level: str) -> None:
    """Name this process ``name`` (what ``ps``, ``top`` and psutil show) and make it stop with
    the ``supervisor`` (a pid): one killed by SIGKILL must not leave children holding the port.

    A child's parent is the fork server, which lives as long as any child holds its pipe, so
    the child watches the supervisor itself and sends itself SIGTERM (a drain) once it is gone.
    Each child leads a process group of its own: Ctrl-C in a terminal signals the foreground
    group, and reaches the children only through the supervisor, which stops them in order
    (the demo lets the processor drain the stream first).
    """
    with contextlib.suppress(OSError):  # already a group leader (never, forked) or not allowed
        os.setpgid(0, 0)
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s",
    )
    threading.Thread(
        target=_watch, args=(supervisor,), name="supervisor-watch", daemon=True
    ).start()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the fork server gone: at once
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _watch(supervisor: int) -> None:
    while True:
        try:
            os.kill(supervisor, 0)
        except ProcessLookupError:
            logging.getLogger(__name__).warning("the supervisor is gone: stopping")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:  # pragma: no cover - alive, under another user (pid reused)
            pass
        time.sleep(SUPERVISOR_POLL_S)


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
