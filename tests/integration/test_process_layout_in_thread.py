"""The process layout run from a thread of another process, as the demo runs it: it serves on
one port, its children lead process groups of their own (a terminal's Ctrl-C reaches only the
demo), and leaving stops every child; a taken port fails at once and says which."""

from __future__ import annotations

import os
import socket

import httpx
import psutil
import pytest
from pydantic import SecretStr

from plantstream.local.ports import free_port
from plantstream.runtime.layout import Layout, layout_in_thread
from plantstream.settings import Settings
from plantstream.testing import SERVER_SECRET, wait_until


def _settings(database_url: str, redis_url: str, port: int) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=port,
        database_url=SecretStr(database_url),
        redis_url=SecretStr(redis_url),
        server_secret=SecretStr(SERVER_SECRET),
        detection=False,
        log_level="WARNING",
    )


def _children() -> dict[str, psutil.Process]:
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            name = child.name()
        except psutil.NoSuchProcess:
            continue
        if name.startswith("ps-"):
            found[name] = child
    return found


def test_the_layout_serves_from_a_thread_in_groups_of_its_own_and_stops_whole(
    database_url: str, redis_url: str
) -> None:
    settings = _settings(database_url, redis_url, free_port())
    layout = Layout(surfaces=("ingest", "query"), web_workers=1, processors=1)
    with layout_in_thread(settings, layout):
        url = f"http://127.0.0.1:{settings.port}"
        wait_until(
            lambda: set(_children()) == {"ps-web-0", "ps-processor"},
            timeout=30,
            what="a web worker and a processor",
        )
        # the socket listens before the children accept: this waits in its backlog
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        children = _children()
        for child in children.values():
            wait_until(
                lambda c=child: os.getpgid(c.pid) == c.pid,
                timeout=10,
                what=f"{child.name()} leading a process group",
            )
        assert os.getpgid(os.getpid()) not in {os.getpgid(c.pid) for c in children.values()}
    assert not [c for c in children.values() if c.is_running() and c.status() != "zombie"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=5)


def test_a_taken_port_fails_at_once_and_names_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(host="127.0.0.1", port=port, server_secret=SecretStr(SERVER_SECRET))
        layout = Layout(surfaces=("ingest",), web_workers=1, processors=0)
        refused = pytest.raises(RuntimeError, match=f"port {port}")
        with refused, layout_in_thread(settings, layout, start_timeout=30):
            pass  # pragma: no cover - never reached
