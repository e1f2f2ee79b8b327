"""``plantstream serve all`` as several processes: web workers on one port and a processor,
under a supervisor that restarts a dead child and leaves no orphan however it is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import psycopg
import pytest

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    SERVER_SECRET,
    plantstream_server,
    readings_count,
    server_env,
    wait_until,
)

CHILDREN = {"ps-web-0", "ps-web-1", "ps-processor"}


@contextmanager
def stack(
    database_url: str, redis_url: str, **settings: str
) -> Iterator[tuple[str, psutil.Process]]:
    env = server_env(
        port=free_port(), database_url=database_url, redis_url=redis_url,
        **{"web_workers": "2", "detection": "false", **settings},
    )  # fmt: skip
    with plantstream_server("all", env=env, ready_path="/readyz") as (url, proc):
        yield url, psutil.Process(proc.pid)


def children(server: psutil.Process) -> dict[str, int]:
    found = {}
    for child in server.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            found[child.name()] = child.pid
    return {name: pid for name, pid in found.items() if name.startswith("ps-")}


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and 'outcome="accepted"' in line
    )


def test_workers_and_processor_run_apart_restart_and_stop_together(
    database_url: str, redis_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    with stack(database_url, redis_url) as (url, server):
        wait_until(lambda: set(children(server)) == CHILDREN, timeout=30, what="three children")
        now = datetime.now(UTC) - timedelta(minutes=1)
        for i in range(20):  # a new connection each: both workers take some
            reading = {"device": "press-1", "metric": "temperature", "value": 20.0 + i}
            reading["ts"] = (now + timedelta(seconds=i)).isoformat()
            answer = httpx.post(
                url + "/v1/readings",
                json={"facility": "plant-01", "readings": [reading]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202, answer.text
        line = f"m,device=press-2 temperature=1 {int(now.timestamp())}"
        written = httpx.post(
            url + "/api/v2/write?bucket=plant-01&precision=s",
            content=line,
            headers={"Authorization": f"Token {key}"},
        )
        assert written.status_code == 204, written.text
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_until(lambda: readings_count(conn) == 21, timeout=60, what="21 readings stored")
        # the counters of both workers, summed on whichever worker answers /metrics
        assert metric(url, "plantstream_ingest_readings_total") == 21

        first = children(server)
        psutil.Process(first["ps-web-0"]).kill()
        psutil.Process(first["ps-processor"]).kill()

        def restarted() -> bool:
            now = children(server)  # one snapshot: a child may die between two looks
            return (
                set(now) == CHILDREN
                and now["ps-web-0"] != first["ps-web-0"]
                and now["ps-processor"] != first["ps-processor"]
            )

        wait_until(restarted, timeout=30, what="the killed children started again")
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
        pids = list(children(server).values())
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


@pytest.mark.parametrize(
    "how", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGKILL]
)
def test_no_child_outlives_the_supervisor(
    database_url: str, redis_url: str, how: signal.Signals
) -> None:
    """Ctrl-C drains every child; a supervisor killed outright takes its children with it."""
    with stack(database_url, redis_url) as (url, server):
        wait_until(lambda: set(children(server)) == CHILDREN, timeout=30, what="three children")
        pids = list(children(server).values())
        started = time.monotonic()
        server.send_signal(how)
        server.wait(60)
        wait_until(
            lambda: not [pid for pid in pids if psutil.pid_exists(pid)],
            timeout=30,
            what="every child gone",
        )
        port = int(url.rsplit(":", 1)[1])
        assert time.monotonic() - started < 45
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_several_processors_share_the_shards_and_store_each_reading_once(
    database_url: str, redis_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    expected = {"ps-web-0", "ps-processor", "ps-processor-1"}
    with stack(database_url, redis_url, web_workers="1", processor_processes="2") as (url, srv):
        wait_until(lambda: set(children(srv)) == expected, timeout=30, what="three children")
        start = datetime.now(UTC) - timedelta(minutes=5)
        readings = [
            {
                "device": f"press-{d}",  # 16 devices: every one of the 4 shards gets some
                "metric": "temperature",
                "value": float(i),
                "ts": (start + timedelta(seconds=i)).isoformat(),
            }
            for d in range(16)
            for i in range(50)
        ]
        with psycopg.connect(database_url, autocommit=True) as conn:
            # both processors hold leases before anything is sent
            wait_until(
                lambda: lease_owners(conn) == 2, timeout=60, what="two processors with leases"
            )
            for first in range(0, len(readings), 100):
                answer = httpx.post(
                    url + "/v1/readings",
                    json={"facility": "plant-01", "readings": readings[first : first + 100]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert answer.status_code == 202, answer.text
            wait_until(lambda: readings_count(conn) == 800, timeout=60, what="800 stored")
            (merged,) = conn.execute("SELECT sum(count) FROM rollup_1m").fetchone() or (0,)
            assert merged == 800  # each reading merged into the rollups once
        srv.send_signal(signal.SIGTERM)
        assert srv.wait(60) == 0


def lease_owners(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(DISTINCT owner) FROM shard_leases WHERE expires_at > now()"
    ).fetchone()
    return int(row[0]) if row else 0


def test_serve_processor_runs_several_processors_under_one_supervisor(
    database_url: str, redis_url: str
) -> None:
    env = server_env(
        port=free_port(), database_url=database_url, redis_url=redis_url,
        processor_processes="2", detection="false",
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "plantstream", "serve", "processor"], env=env)
    try:
        server = psutil.Process(proc.pid)
        expected = {"ps-processor", "ps-processor-1"}
        wait_until(lambda: set(children(server)) == expected, timeout=60, what="two processors")
        with psycopg.connect(database_url, autocommit=True) as conn:
            wait_until(lambda: lease_owners(conn) == 2, timeout=60, what="leases in both")
        pids = list(children(server).values())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not [pid for pid in pids if psutil.pid_exists(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
