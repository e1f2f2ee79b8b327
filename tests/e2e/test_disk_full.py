"""Disk-full drill: the whole stack's data directory on a small filesystem that fills up.

While the disk is full, ingest refuses with a coded error (never a 202 it cannot keep), the
processor says PostgreSQL is out of space and waits, and nothing stored is damaged. Once space
is freed the same stack, not restarted, stores every reading it accepted exactly once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fixtures.faults import wait_until

from plantstream.local import EmbeddedServices
from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.store.schema import migrate

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "drill-server-secret"
DISK_MIB = 128  # the servers' files take ~45 MiB of it
STEPS = 1250  # timestamps per batch, for each of 4 devices: 5,000 readings, the most allowed
DEVICES = ("press-1", "press-2", "press-3", "press-4")
MARGIN = 64 * 1024  # room left beyond one batch in Redis' log: far less than PostgreSQL needs

Reading = tuple[str, datetime]  # (device, ts): how a reading is identified


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A size-limited tmpfs of its own, unmounted at the end (after its servers stop)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the disk-full drill mounts a size-limited tmpfs: it needs root and mount")
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        try:
            EmbeddedServices(path / "data").stop()
        finally:
            unmounted = subprocess.run(["umount", str(path)], capture_output=True, check=False)
            if unmounted.returncode != 0:
                subprocess.run(["umount", "--lazy", str(path)], check=False)
                raise AssertionError(f"{path} was busy at unmount: {unmounted.stderr!r}")


class Stack:
    """``plantstream serve all`` on the small disk, its log written elsewhere."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "PLANTSTREAM_DATA_DIR": str(data_dir),
            "PLANTSTREAM_PORT": str(self.port),
            "PLANTSTREAM_SERVER_SECRET": SECRET,
            "PLANTSTREAM_LOG_LEVEL": "WARNING",
            "PLANTSTREAM_DETECTION": "false",
            # a drill of the disk: the gateway fills it as fast as it can, past a facility's
            # readings quota and its backlog bound (tests/integration/test_quotas.py and
            # test_backlog_admission.py drill those): batches of 25,000 wait in the stream here
            "PLANTSTREAM_QUOTA_READINGS_PER_SECOND": "1e9",
            "PLANTSTREAM_QUOTA_BACKLOG_READINGS": "0",
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "plantstream", "serve", "all"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: self.ready().status_code == 200, timeout=60, what="the stack")
        except BaseException:
            self.process.kill()
            self.process.wait(30)
            raise

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> httpx.Response:
        assert self.alive(), f"serve all exited: {self.log()[-2000:]}"
        try:
            return httpx.get(f"{self.url}/readyz", timeout=10)
        except httpx.HTTPError:
            return httpx.Response(599)

    def errors(self, kind: str | None = None) -> float:
        """The processor's ``plantstream_processor_errors_total`` of ``kind`` (or of all)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        label = re.escape(kind) if kind else '[^"]+'
        found = re.findall(
            rf'^plantstream_processor_errors_total\{{kind="{label}"\}} (\S+)$', text, re.M
        )
        return sum(float(value) for value in found)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.alive():
            self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def cleanup(small_disk: Path) -> Iterator[contextlib.ExitStack]:
    """What the test starts is stopped here, before the servers stop and the disk goes."""
    with contextlib.ExitStack() as stack:
        yield stack


class Gateway:
    """Posts batches of 5,000 readings with ever later timestamps; books what got a 202."""

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self.steps = 0
        self.accepted: set[Reading] = set()
        self.refusals: list[tuple[int, str]] = []  # (status, error code)

    def post(self) -> int:
        stamps = [self.start + timedelta(milliseconds=10 * (self.steps + i)) for i in range(STEPS)]
        self.steps += STEPS
        readings = [
            {"device": d, "metric": "pressure", "ts": ts.isoformat(), "value": i % 97 / 4}
            for i, ts in enumerate(stamps)
            for d in DEVICES
        ]
        answer = self.client.post(
            "/v1/readings", json={"facility": "plant-01", "readings": readings}
        )  # not answered at all would fail the drill: a full disk must not hang requests
        if answer.status_code == 202:
            assert answer.json() == {"accepted": len(readings), "rejected": []}
            self.accepted |= {(d, ts) for ts in stamps for d in DEVICES}
        else:
            error = answer.json()["error"]
            assert error["message"], answer.text
            self.refusals.append((answer.status_code, error["code"]))
        return answer.status_code


def stored(database_url: str) -> list[Reading]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT s.device, r.ts FROM readings r JOIN sensors s ON s.id = r.sensor_id"
        ).fetchall()
    return [(device, ts) for device, ts in rows]


def stored_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else -1


def fingerprint(database_url: str, until: datetime) -> tuple[int, str]:
    """Count and digest of every stored reading up to ``until``, values and quality included."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), md5(string_agg(format('%%s|%%s|%%s|%%s', sensor_id, ts, value, "
            "quality), ',' ORDER BY sensor_id, ts)) FROM readings WHERE ts <= %s",
            (until,),
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def check_consistency(database_url: str) -> None:
    """Every table reads back whole; amcheck finds every heap page and b-tree sound."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
        ]
        assert "readings" not in tables  # partitioned: its rows live in daily partitions
        for table in tables:
            conn.execute(f"SELECT count(*) FROM {table}")  # every page read back
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        damaged = conn.execute(
            "SELECT c.oid::regclass::text, v.blkno, v.msg FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace, LATERAL verify_heapam(c.oid) v "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchall()
        assert damaged == []
        indexes = [
            name
            for (name,) in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam "
                "WHERE n.nspname = 'public' AND c.relkind = 'i' AND a.amname = 'btree'"
            )
        ]
        assert any(name.startswith("readings_") for name in indexes)
        for index in indexes:  # with heapallindexed: every heap row has its index entry
            conn.execute("SELECT bt_index_parent_check(%s::regclass, true)", (index,))
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM readings), (SELECT sum(count) FROM rollup_1m), "
            "(SELECT sum(count) FROM rollup_1h)"
        ).fetchone()
    assert counts is not None
    assert counts[0] == counts[1] == counts[2]  # rollups count exactly the raw rows


def fill(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def test_a_full_disk_refuses_clearly_keeps_what_it_accepted_and_recovers(
    small_disk: Path, cleanup: contextlib.ExitStack, tmp_path: Path
) -> None:
    data_dir = small_disk / "data"
    database_url, _ = EmbeddedServices(data_dir).start()
    migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        key, _ = create_key(
            conn, server_secret=SECRET.encode(), role=Role.INGEST, facility="plant-01"
        )
    stack = Stack(data_dir, tmp_path / "stack.log")
    cleanup.callback(stack.stop)
    gateway = Gateway(stack.url, key)
    cleanup.callback(gateway.client.close)

    def caught_up() -> bool:
        return stored_count(database_url) == len(gateway.accepted)

    # normal operation, and what one batch costs Redis' append-only log
    aof = data_dir / "redis" / "appendonly.aof"
    for _ in range(4):
        assert gateway.post() == 202
    wait_until(caught_up, timeout=30, what="the baseline to be stored")
    before = aof.stat().st_size
    assert gateway.post() == 202
    batch_bytes = aof.stat().st_size - before
    wait_until(caught_up, timeout=30, what="the baseline to be stored")
    baseline_until = max(ts for _, ts in gateway.accepted)
    baseline = fingerprint(database_url, baseline_until)
    assert baseline[0] == 25_000

    # the disk fills: room for a batch in the stream, none for PostgreSQL to store it
    ballast = small_disk / "ballast"
    fill(ballast, shutil.disk_usage(small_disk).free - batch_bytes - MARGIN)
    full_at = time.monotonic()
    for _ in range(3):
        assert gateway.post() == 202, gateway.refusals  # accepted into the stream
        wait_until(
            lambda: caught_up() or stack.errors("disk_full") > 0,
            timeout=30,
            what="the processor to store the batch or report the full disk",
        )
        if stack.errors("disk_full"):
            break
    assert stack.errors("disk_full") > 0, "PostgreSQL never ran out of space"
    assert stored_count(database_url) < len(gateway.accepted)  # some wait in the stream
    wait_until(lambda: gateway.post() != 202, timeout=30, what="ingest to refuse")
    for _ in range(3):  # and it keeps refusing, answering at once
        assert gateway.post() != 202
    assert set(gateway.refusals) == {(503, "stream_unavailable")}
    readiness = stack.ready()
    assert readiness.status_code == 503
    assert readiness.json()["status"] == "unavailable"
    assert shutil.disk_usage(small_disk).free < 1024 * 1024
    # what the operator reads: the cause, stated by the processor and about Redis
    log = stack.log()
    assert "PostgreSQL is out of disk space: could not extend file" in log
    assert "No space left on device" in log
    wait_until(
        lambda: "embedded Redis restarts once" in stack.log(),
        timeout=30,
        what="the log to say Redis waits for space",
    )
    assert re.search(r"embedded Redis stopped unexpectedly; .* \d+ B free in ", stack.log())
    # it rides the full disk out: retrying ever more slowly, not restarting or spinning
    wait_until(lambda: stack.errors() >= 6, timeout=30, what="the processor to retry")
    assert stack.errors() <= 6 + time.monotonic() - full_at
    assert stack.alive()
    assert fingerprint(database_url, baseline_until) == baseline

    # space is freed: the same stack recovers by itself and stores everything it accepted
    ballast.unlink()
    wait_until(lambda: stack.ready().status_code == 200, timeout=60, what="readiness again")
    wait_until(lambda: gateway.post() == 202, timeout=30, what="ingest to accept again")
    for _ in range(2):
        assert gateway.post() == 202
    wait_until(caught_up, timeout=60, what="every accepted reading to be stored")
    rows = stored(database_url)
    assert len(rows) == len(set(rows)) == len(gateway.accepted)  # each exactly once
    assert set(rows) == gateway.accepted
    assert "embedded Redis restarted" in stack.log()
    assert set(gateway.refusals) == {(503, "stream_unavailable")}
    assert stack.stop() == 0  # the one stack of the whole drill, never restarted

    assert fingerprint(database_url, baseline_until) == baseline
    check_consistency(database_url)
