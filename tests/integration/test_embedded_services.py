"""The embedded PostgreSQL and Redis start from pip-installed binaries, persist, and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from plantstream.local import EmbeddedServices

pytestmark = [pytest.mark.integration]


def test_start_reuse_persist_and_stop(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path / "data")
    database_url, redis_url = services.start()
    try:
        assert database_url.startswith("postgresql://postgres:")
        assert "127.0.0.1" in database_url
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        client = redis.Redis.from_url(redis_url)
        client.xadd("kept-stream", {"v": "1"})
        client.close()

        assert services.start() == (database_url, redis_url)  # reused, not restarted
        assert [s.running for s in services.status()] == [True, True]
        assert all("***" in (s.url or "") for s in services.status())

        assert services.stop() == ["redis", "postgres"]
        assert [s.running for s in services.status()] == [False, False]
        assert services.stop() == []

        database_url, redis_url = services.start()
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [(7,)]
        client = redis.Redis.from_url(redis_url)
        assert client.xlen("kept-stream") == 1  # the append-only file brought it back
        client.close()
    finally:
        services.stop()


def test_servers_need_the_generated_password(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path / "data")
    database_url, redis_url = services.start()
    try:
        wrong = database_url.replace("postgres:", "postgres:x", 1)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(wrong).close()
        port = redis_url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=int(port)).ping()
        assert oct((tmp_path / "data" / "redis" / "redis.conf").stat().st_mode)[-3:] == "600"
    finally:
        services.stop()


def test_services_cli_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "PLANTSTREAM_DATA_DIR": str(tmp_path / "cli")}
    cli = [sys.executable, "-m", "plantstream", "services"]
    try:
        started = subprocess.run(
            [*cli, "start"], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        assert "postgres" in started.stdout
        assert "***" in started.stdout
        status = subprocess.run(
            [*cli, "status"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert status.returncode == 0
        assert status.stdout.count("running") == 2
    finally:
        stopped = subprocess.run(
            [*cli, "stop"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
    assert "redis" in stopped.stdout
    assert "postgres" in stopped.stdout
    after = subprocess.run(
        [*cli, "status"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert after.returncode == 1
