"""Server processes for tests and benchmarks: spawn, poll until they answer, stop for sure.

``plantstream_server`` runs ``python -m plantstream serve ROLE`` the way ECS does, configured by
``PLANTSTREAM_*`` variables only; ``start_process`` is the same spawn-and-poll for any program.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from plantstream.testing.waiting import POLL_SECONDS

SERVER_SECRET = "test-and-bench-server-secret"  # noqa: S105  # pragma: allowlist secret


def answers_ok(url: str) -> bool:
    """True when ``GET url`` answers 200 (a refused or slow connection is not an error here)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_process(
    argv: Sequence[str],
    *,
    ready: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` and return once ``ready()`` is true.

    Raises ``RuntimeError`` (after killing the process) when it exits first or when ``timeout``
    seconds pass, so a server that cannot start fails its test at once, not at the deadline.
    """
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **popen)  # noqa: S603
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it answered")
        if time.monotonic() > deadline:
            stop_process(proc, timeout=5)
            raise RuntimeError(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(POLL_SECONDS)
    return proc


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> int:
    """SIGTERM (a server drains on it), then SIGKILL after ``timeout`` seconds; the exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def server_env(
    *,
    port: int,
    database_url: str | None = None,
    redis_url: str | None = None,
    server_secret: str = SERVER_SECRET,
    **settings: str,
) -> dict[str, str]:
    """This process's environment plus the ``PLANTSTREAM_*`` variables of one server.

    ``settings`` are further settings by their lower-case names (``detection="false"``).
    """
    env = {
        **os.environ,
        "PLANTSTREAM_PORT": str(port),
        "PLANTSTREAM_SERVER_SECRET": server_secret,
        "PLANTSTREAM_LOG_LEVEL": "WARNING",
        **{f"PLANTSTREAM_{name.upper()}": value for name, value in settings.items()},
    }
    if database_url:
        env["PLANTSTREAM_DATABASE_URL"] = database_url
    if redis_url:
        env["PLANTSTREAM_REDIS_URL"] = redis_url
    return env


@contextmanager
def plantstream_server(
    role: str,
    *,
    env: Mapping[str, str],
    ready_path: str = "/healthz",
    timeout: float = 60.0,
    **popen: Any,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``plantstream serve ROLE`` in its own process once ``ready_path`` answers 200: (url, proc).

    The port comes from ``env["PLANTSTREAM_PORT"]`` (see ``server_env``); the server is stopped
    (SIGTERM, then SIGKILL) when the block ends.
    """
    url = f"http://127.0.0.1:{env['PLANTSTREAM_PORT']}"
    proc = start_process(
        [sys.executable, "-m", "plantstream", "serve", role],
        ready=lambda: answers_ok(url + ready_path),
        what=f"plantstream serve {role}",
        timeout=timeout,
        env=dict(env),
        **popen,
    )
    try:
        yield url, proc
    finally:
        stop_process(proc)
