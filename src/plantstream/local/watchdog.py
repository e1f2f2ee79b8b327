"""Watches the embedded servers of a running stack: says why one stopped, brings it back.

A full disk stops them: Redis exits when its append-only file cannot grow (``appendfsync
always`` leaves it no other choice) and PostgreSQL shuts down when its WAL cannot. Without a
watchdog the stack would answer 503 until someone restarted it, even after space is freed.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from plantstream.errors import ServiceError
from plantstream.local.services import Endpoints

log = logging.getLogger(__name__)

MIN_FREE_BYTES = 16 * 1024 * 1024  # a WAL segment: PostgreSQL cannot start with less
_MAX_DELAY = 60.0
# in order of preference: PostgreSQL's worst levels, then Redis' warnings (marked " # ")
_ALARMING = ("PANIC:", "FATAL:", " # ")


class Server(Protocol):
    """What the watchdog needs of ``EmbeddedPostgres`` and ``EmbeddedRedis``."""

    home: Path
    logfile: Path
    stopped_marker: Path

    def alive(self) -> bool: ...

    def is_running(self) -> bool: ...

    def start(self) -> str: ...


@dataclass
class _Watch:
    name: str
    server: Server
    url: str
    down_since: float | None = None
    next_try: float = 0.0
    delay: float = 1.0
    waiting_for_space: bool = False


class Watchdog:
    """Restarts embedded servers that stopped without being asked to, once there is room.

    ``servers`` maps a display name to the server and the URL the stack connects to it by,
    so that one coming back at another address is reported rather than silently lost.
    """

    def __init__(
        self,
        servers: dict[str, tuple[Server, str]],
        *,
        min_free_bytes: int = MIN_FREE_BYTES,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        disk_free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free,
    ) -> None:
        self._watches = [_Watch(name, server, url) for name, (server, url) in servers.items()]
        self.min_free_bytes = min_free_bytes
        self.interval = interval
        self._clock = clock
        self._disk_free = disk_free

    def run(self, stop: threading.Event) -> None:
        """Check every ``interval`` seconds until ``stop`` is set; never raises."""
        while not stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watchdog must outlive whatever it trips over
                log.exception("embedded server watchdog failed a check")

    def check(self) -> None:
        """One look at every server: note a stop, restart it when there is room."""
        for watch in self._watches:
            self._check(watch)

    def _check(self, watch: _Watch) -> None:
        server = watch.server
        if server.alive() or server.is_running():
            watch.down_since = None
            return
        if server.stopped_marker.exists():
            return  # ``plantstream services stop``: the user's call, not ours to undo
        now = self._clock()
        free = self._disk_free(server.home)
        if watch.down_since is None:
            watch.down_since = now
            watch.next_try, watch.delay, watch.waiting_for_space = now, 1.0, False
            log.error(
                "embedded %s stopped unexpectedly; %s says: %s; %s free in %s",
                watch.name,
                server.logfile,
                last_words(server.logfile),
                _size(free),
                server.home,
            )
        if free < self.min_free_bytes:
            if not watch.waiting_for_space:
                log.error(
                    "embedded %s restarts once %s are free in %s (%s now)",
                    watch.name,
                    _size(self.min_free_bytes),
                    server.home,
                    _size(free),
                )
                watch.waiting_for_space = True
            return
        if now < watch.next_try:
            return
        try:
            url = server.start()
        except (ServiceError, OSError) as exc:
            watch.next_try = now + watch.delay
            log.error(
                "embedded %s did not restart (%s); trying again in %.0fs",
                watch.name,
                exc,
                watch.delay,
            )
            watch.delay = min(watch.delay * 2, _MAX_DELAY)
            return
        if url != watch.url:
            log.error(
                "embedded %s restarted at another address; restart plantstream to use it",
                watch.name,
            )
        else:
            log.warning(
                "embedded %s restarted, %.1fs after it stopped",
                watch.name,
                self._clock() - watch.down_since,
            )
        watch.down_since = None


def watch_embedded(endpoints: Endpoints, stop: threading.Event) -> threading.Thread | None:
    """Start a watchdog thread over the embedded servers ``endpoints`` use (if any)."""
    embedded = endpoints.embedded
    servers: dict[str, tuple[Server, str]] = {}
    if embedded is not None and "postgres" in endpoints.embedded_servers:
        servers["PostgreSQL"] = (embedded.postgres, endpoints.database_url)
    if embedded is not None and "redis" in endpoints.embedded_servers:
        servers["Redis"] = (embedded.redis, endpoints.redis_url)
    if not servers:
        return None
    thread = threading.Thread(
        target=Watchdog(servers).run, args=(stop,), name="watchdog", daemon=True
    )
    thread.start()
    return thread


def last_words(logfile: Path, *, tail_bytes: int = 8192) -> str:
    """The line of a server log that best says why it stopped.

    Its last PANIC, else its last FATAL, else its last Redis warning, else its last line.
    """
    try:
        with logfile.open("rb") as f:
            f.seek(max(0, logfile.stat().st_size - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for mark in _ALARMING:
        marked = [line for line in lines if mark in line]
        if marked:
            return marked[-1][:300]
    return lines[-1][:300] if lines else "(empty)"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
