"""The watchdog of ``plantstream serve``: an embedded server that died is named, waited for
until its disk has room, and restarted with its data; one stopped on purpose stays stopped."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import redis
from fixtures.faults import wait_until

from plantstream.local import EmbeddedRedis
from plantstream.local.watchdog import Watchdog

pytestmark = [pytest.mark.integration]


def test_a_dead_server_is_restarted_once_there_is_room_and_a_stopped_one_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    free = {"bytes": 0}
    watchdog = Watchdog({"Redis": (server, url)}, disk_free=lambda _: free["bytes"])
    client = redis.Redis.from_url(url)
    try:
        client.set("kept", "1")
        watchdog.check()
        assert caplog.text == ""  # running: nothing to say

        os.kill(int(server.pidfile.read_text()), signal.SIGKILL)
        wait_until(lambda: not server.alive(), timeout=10, what="Redis to die")
        watchdog.check()
        assert not server.alive()  # no room yet: left down, and the log says why
        assert "embedded Redis stopped unexpectedly" in caplog.text
        assert "0 B free in" in caplog.text
        assert "embedded Redis restarts once 16.0 MiB are free" in caplog.text

        free["bytes"] = 1 << 30
        watchdog.check()
        assert server.is_running()
        assert client.get("kept") == b"1"  # the same server, its data back from its log
        assert "embedded Redis restarted" in caplog.text

        caplog.clear()
        server.stop()  # as ``plantstream services stop`` does
        watchdog.check()
        assert not server.alive()
        assert caplog.text == ""
    finally:
        client.close()
        server.stop()
