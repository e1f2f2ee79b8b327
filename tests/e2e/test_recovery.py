"""Recovery drill: the whole stack (API + processor, PostgreSQL, Redis) killed with SIGKILL and
restarted on the same data directory loses nothing it answered 202 for, and stores it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from plantstream.local import EmbeddedServices
from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.store.schema import migrate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "drill-server-secret"


def start_stack(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PLANTSTREAM_DATA_DIR": str(data_dir),
        "PLANTSTREAM_PORT": str(port),
        "PLANTSTREAM_SERVER_SECRET": SECRET,
        "PLANTSTREAM_LOG_LEVEL": "WARNING",
        "PLANTSTREAM_DETECTION": "false",
    }
    proc = subprocess.Popen([sys.executable, "-m", "plantstream", "serve", "all"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, "serve all exited"
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the stack did not become ready")


def kill_everything(services: EmbeddedServices, stack: subprocess.Popen[bytes]) -> None:
    """As a power cut would: nothing gets to flush or say goodbye."""
    stack.send_signal(signal.SIGKILL)
    stack.wait(10)
    redis_pid = int((services.redis.pidfile).read_text())
    postmaster = int((services.postgres.pgdata / "postmaster.pid").read_text().split()[0])
    for pid in (redis_pid, postmaster):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while services.redis.is_running() or services.postgres.is_running():
        assert time.monotonic() < deadline, "servers did not die"
        time.sleep(0.1)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    EmbeddedServices(path).stop()


def post(port: int, key: str, start: datetime, seconds: int) -> set[tuple[str, str]]:
    """Readings for ``seconds`` of two machines; returns those answered 202 (device, ts)."""
    accepted: set[tuple[str, str]] = set()
    with httpx.Client(timeout=10) as client:
        for s in range(seconds):
            ts = (start + timedelta(seconds=s)).isoformat()
            readings = [
                {"device": device, "metric": "pressure", "ts": ts, "value": 5.0 + s % 7}
                for device in ("press-1", "press-2")
            ]
            try:
                answer = client.post(
                    f"http://127.0.0.1:{port}/v1/readings",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"facility": "plant-01", "readings": readings},
                )
            except httpx.HTTPError:
                continue  # not answered: not promised
            if answer.status_code == 202:
                accepted |= {(r["device"], ts) for r in readings}
    return accepted


def stored(database_url: str) -> set[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            "SELECT s.device, r.ts FROM readings r JOIN sensors s ON s.id = r.sensor_id"
        ).fetchall()
    return {(device, ts.isoformat()) for device, ts in rows}


def test_killing_everything_loses_nothing_that_was_accepted(data_dir: Path) -> None:
    services = EmbeddedServices(data_dir)
    database_url, _ = services.start()
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    port = free_port()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)

    stack = start_stack(data_dir, port)
    accepted = post(port, key, start, 300)
    kill_everything(services, stack)  # some of it is still only in the stream

    database_url, _ = services.start()
    stack = start_stack(data_dir, port)
    accepted |= post(port, key, start + timedelta(seconds=300), 200)
    deadline = time.monotonic() + 90
    while stored(database_url) != accepted and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.terminate()
    assert stack.wait(30) == 0
    assert len(accepted) == 1000
    assert stored(database_url) == accepted
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM readings").fetchone()  # type: ignore[misc]
        (rollup,) = conn.execute("SELECT sum(count) FROM rollup_1m").fetchone()  # type: ignore[misc]
    assert count == rollup == 1000
