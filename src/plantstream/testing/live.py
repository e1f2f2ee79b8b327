"""An ASGI app served by uvicorn on a thread of the test process, for clients that need a socket.

Shares the app's state with the test (same pool, stream and keys), unlike ``plantstream_server``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from plantstream.testing.processes import answers_ok
from plantstream.testing.waiting import POLL_SECONDS


@contextmanager
def app_in_thread(
    app: Any, *, ready_path: str = "/healthz", timeout: float = 10.0, **config: Any
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; its base URL.

    Returns once ``ready_path`` answers 200; raises ``RuntimeError`` at once if the server
    thread dies while starting, or after ``timeout`` seconds. ``config`` goes to uvicorn.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound before the thread starts: no port race
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(max(1, int(timeout / POLL_SECONDS))):
            thread.join(POLL_SECONDS)
            if not thread.is_alive():
                raise RuntimeError("the server thread stopped while starting")
            if server.started and answers_ok(url + ready_path):
                break
        else:
            raise RuntimeError(f"the server did not answer at {url} within {timeout:.0f}s")
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
