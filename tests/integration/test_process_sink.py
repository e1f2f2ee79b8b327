"""The process sink: a hook evaluated in a child process, fed in commit order, bounded, and
nothing handed over lost when a batch fails or the child is killed; closing leaves no process.

The hooks (``fixtures/sink_hooks.py``) record what the child evaluated in the test's Redis.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from fixtures.pipeline import drain
from fixtures.sink_hooks import (
    KEYS,
    Recording,
    Unbuildable,
    evaluated,
    expected,
    numbered_batch,
)
from test_detection import alerts_of, oven, send

from plantstream.errors import SinkProcessError
from plantstream.local import Endpoints
from plantstream.local.process import pid_alive
from plantstream.model import now_us
from plantstream.processor import ProcessSink
from plantstream.processor.sinks import SinkManager
from plantstream.runtime import Runtime
from plantstream.settings import load_settings
from plantstream.testing import wait_until

TIMEOUT_S = 60.0
MakeSink = Callable[..., ProcessSink]


@pytest.fixture
def key() -> str:
    return f"hook-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_sink(redis_url: str, key: str) -> Iterator[MakeSink]:
    """A process sink with a recording hook; every one closed after the test, its child
    checked gone."""
    made: list[ProcessSink] = []

    def make(
        *,
        fail_at: tuple[int, ...] = (),
        gated: bool = False,
        fail_always: tuple[int, ...] = (),
        **options: object,
    ) -> ProcessSink:
        hook = Recording(redis_url, key, fail_at, gated, fail_always)
        sink = ProcessSink(hook, **options)  # type: ignore[arg-type]
        made.append(sink)
        return sink

    yield make
    for sink in made:
        pid = sink.pid
        sink.close(timeout=5)
        if pid is not None:
            wait_until(lambda p=pid: not pid_alive(p), timeout=TIMEOUT_S, what="the child gone")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def release(client: redis.Redis, key: str, upto: int) -> None:
    client.set(f"{key}:released", upto)


def test_batches_are_evaluated_in_commit_order_each_key_sent_once(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    sink = make_sink()
    sink.catch_up(db, None)  # as the manager does first: the child starts
    sensors = {n: 1 + n % 3 for n in range(1, 31)}
    for n in range(1, 31):
        sink.write(numbered_batch(n, sensor=sensors[n]), KEYS)
    assert sink.flush(TIMEOUT_S)
    assert evaluated(redis_client, key) == expected(list(range(1, 31)), sensors)
    assert sink.evaluated == 30
    assert sink.cpu_s > 0
    assert psutil.Process(sink.pid).name() == "ps-detect"


@pytest.mark.parametrize(
    ("bound", "room"),
    [({"max_batches": 3}, 3), ({"max_batches": 100, "max_readings": 25}, 2)],
    ids=["batches", "readings"],
)
def test_a_full_bound_blocks_the_write_until_the_child_acknowledges(
    make_sink: MakeSink,
    db: psycopg.Connection,
    redis_client: redis.Redis,
    key: str,
    bound: dict[str, int],
    room: int,
) -> None:
    sink = make_sink(gated=True, **bound)
    sink.catch_up(db, None)
    for n in range(1, room + 1):  # 10 readings each
        sink.write(numbered_batch(n), KEYS)
    assert sink.in_flight == (room, 10 * room)
    done = threading.Event()

    def write_one_more() -> None:
        sink.write(numbered_batch(room + 1), KEYS)
        done.set()

    writer = threading.Thread(target=write_one_more, daemon=True)
    writer.start()
    wait_until(lambda: sink.waiting, timeout=TIMEOUT_S, what="the write to block")
    assert not done.is_set()
    assert sink.in_flight == (room, 10 * room)  # nothing beyond the bound was sent
    release(redis_client, key, 1)  # the child evaluates batch 1: room for one more
    assert done.wait(TIMEOUT_S)
    writer.join(TIMEOUT_S)
    assert sink.in_flight[0] <= room
    release(redis_client, key, room + 1)
    assert sink.flush(TIMEOUT_S)
    assert evaluated(redis_client, key) == expected(list(range(1, room + 2)))


def test_a_failed_batch_and_those_after_it_are_replayed_in_order_before_the_missed(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    clock = Clock()
    manager = SinkManager(clock=clock)
    sink = make_sink(fail_at=(3, 7))
    manager.register(sink)
    manager.catch_up(db)
    for n in range(1, 6):
        manager.committed(numbered_batch(n), KEYS)
    with pytest.raises(SinkProcessError, match="batch 3 refused"):
        sink.flush(TIMEOUT_S)
    assert manager.behind() == []  # the manager learns it at the next write
    manager.committed(numbered_batch(6), KEYS)
    assert manager.behind() == ["detection"]
    manager.committed(numbered_batch(7), KEYS)  # kept by the manager: the sink is behind
    clock.now += 60
    manager.catch_up(db)  # 3, 4, 5 (handed over) then 6, 7 (missed); 7 fails in the child
    assert manager.behind() == ["detection"]  # a catch-up returns once all of it evaluated
    manager.committed(numbered_batch(8), KEYS)
    clock.now += 60
    manager.catch_up(db)  # the manager's 6, 7, 8 again: only 8 is new, 7 is replayed
    assert manager.behind() == []
    assert sink.flush(TIMEOUT_S)
    # each batch once, in order: the failed ones and those the child had skipped after them
    assert evaluated(redis_client, key) == expected(list(range(1, 9)))
    assert sink.restarts == 0  # a failed batch needs no new child


def test_a_batch_that_always_fails_is_given_up_once_the_manager_lost_count(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    """Found in review: a batch that failed every time was replayed by every catch-up for
    good, even once the manager had lost count (missed None), so detection never came back.
    As in this process, the unknown is given up: the readings not evaluated stay so, the
    state comes from the store, and the next batches are evaluated."""
    clock = Clock()
    manager = SinkManager(clock=clock, max_missed_rows=25)  # three batches of 10: lost count
    sink = make_sink(fail_always=(2,))
    manager.register(sink)
    manager.catch_up(db)
    for n in (1, 2, 3):
        manager.committed(numbered_batch(n), KEYS)
    with pytest.raises(SinkProcessError, match="batch 2 refused"):
        sink.flush(TIMEOUT_S)
    clock.now += 60
    manager.catch_up(db)  # the manager still knows what it missed (nothing): 2 fails again
    assert manager.behind() == ["detection"]
    for n in range(4, 8):
        manager.committed(numbered_batch(n), KEYS)
    clock.now += 600
    manager.catch_up(db)  # missed None: 2 and 3 are given up, the sink is up to date
    assert manager.behind() == []
    manager.committed(numbered_batch(8), KEYS)
    assert sink.flush(TIMEOUT_S)
    assert evaluated(redis_client, key) == expected([1, 8])
    assert sink.restarts == 0


def test_a_catch_up_that_fails_half_way_takes_each_missed_batch_once(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    """One batch in flight at most: the catch-up sends 2, waits for room, sees it fail."""
    clock = Clock()
    manager = SinkManager(clock=clock)
    sink = make_sink(fail_at=(1, 2), max_batches=1)
    manager.register(sink)
    manager.catch_up(db)
    manager.committed(numbered_batch(1), KEYS)
    with pytest.raises(SinkProcessError, match="batch 1 refused"):
        sink.flush(TIMEOUT_S)
    for n in (2, 3, 4):
        manager.committed(numbered_batch(n), KEYS)  # 2 raises; 3 and 4 are kept
    clock.now += 60
    manager.catch_up(db)  # 1 and 2 again: 1 evaluated, 2 fails while 3 waits for room
    assert manager.behind() == ["detection"]
    manager.committed(numbered_batch(5), KEYS)
    clock.now += 600
    manager.catch_up(db)  # the manager passes 2, 3, 4, 5 again: 3, 4 already handed over
    assert manager.behind() == []
    assert sink.flush(TIMEOUT_S)
    assert evaluated(redis_client, key) == expected([1, 2, 3, 4, 5])


def test_a_killed_child_is_started_again_and_replays_what_it_had_not_acknowledged(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    clock = Clock()
    manager = SinkManager(clock=clock)
    sink = make_sink(gated=True)
    manager.register(sink)
    manager.catch_up(db)
    release(redis_client, key, 2)
    for n in (1, 2):
        manager.committed(numbered_batch(n, sensor=n), KEYS)
    assert sink.flush(TIMEOUT_S)
    manager.committed(numbered_batch(3, sensor=1), KEYS)
    manager.committed(numbered_batch(4, sensor=3), KEYS)
    wait_until(lambda: redis_client.llen(f"{key}:started") == 3, timeout=TIMEOUT_S, what="batch 3")
    first = sink.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # batch 3 mid-evaluation, 4 in its inbox
    # reaped: every thread of it gone, so its pipe is closed (a zombie leader may still
    # have threads exiting, the batch written meanwhile would be replayed all the same)
    wait_until(lambda: not psutil.pid_exists(first), timeout=TIMEOUT_S, what="the child reaped")
    manager.committed(numbered_batch(5, sensor=2), KEYS)
    assert manager.behind() == ["detection"]
    release(redis_client, key, 5)
    clock.now += 60
    manager.catch_up(db)
    assert sink.pid not in (None, first)
    assert sink.flush(TIMEOUT_S)
    # the new child was sent the keys again (sensor 1 and 3 first seen by the dead one)
    assert evaluated(redis_client, key) == expected([1, 2, 3, 4, 5], {2: 2, 4: 3, 5: 2})
    assert sink.restarts == 1


def test_a_child_that_cannot_build_its_hook_fails_the_catch_up(db: psycopg.Connection) -> None:
    clock = Clock()
    manager = SinkManager(clock=clock)
    sink = ProcessSink(Unbuildable())
    manager.register(sink)
    try:
        with pytest.raises(SinkProcessError, match="could not start: RuntimeError: no hook"):
            sink.catch_up(db, None)
        manager.catch_up(db)  # the manager backs off: a child per try, not per batch
        assert manager.behind() == ["detection"]
        manager.committed(numbered_batch(1), KEYS)  # kept for later, never handed over
        assert sink.in_flight == (0, 0)
    finally:
        pid = sink.pid
        sink.close()
    if pid is not None:
        wait_until(lambda: not pid_alive(pid), timeout=TIMEOUT_S, what="the child gone")


def test_a_child_that_dies_after_the_last_batch_is_noticed_without_another_write(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    manager = SinkManager()
    sink = make_sink(gated=True)
    manager.register(sink)
    manager.catch_up(db)
    manager.committed(numbered_batch(1), KEYS)  # held in the child, then it is killed
    wait_until(lambda: redis_client.llen(f"{key}:started"), timeout=TIMEOUT_S, what="batch 1")
    first = sink.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not psutil.pid_exists(first), timeout=TIMEOUT_S, what="reaped")
    release(redis_client, key, 1)
    manager.catch_up(db)  # an idle step: no write, yet the sink is found behind
    assert manager.behind() == ["detection"]
    wait_until(
        lambda: manager.catch_up(db) or not manager.behind(), timeout=TIMEOUT_S, what="caught up"
    )
    assert sink.flush(TIMEOUT_S)
    assert evaluated(redis_client, key) == expected([1])


def test_close_drains_then_leaves_no_process(
    make_sink: MakeSink, db: psycopg.Connection, redis_client: redis.Redis, key: str
) -> None:
    sink = make_sink()
    sink.catch_up(db, None)
    for n in range(1, 6):
        sink.write(numbered_batch(n), KEYS)
    pid = sink.pid
    assert pid is not None
    sink.close()
    assert evaluated(redis_client, key) == expected([1, 2, 3, 4, 5])  # drained first
    wait_until(lambda: not pid_alive(pid), timeout=TIMEOUT_S, what="the child gone")
    sink.close()  # idempotent
    with pytest.raises(SinkProcessError, match="closed"):
        sink.write(numbered_batch(6), KEYS)
    with pytest.raises(SinkProcessError, match="closed"):
        sink.catch_up(db, None)  # a closed sink starts no child again


def test_the_runtime_runs_detection_in_a_child_on_the_servers_it_started(
    database_url: str, redis_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The servers as embedded ones (the settings name none): the child connects to the
    parent's, finds the fault, and is gone once the runtime closes."""
    settings = load_settings(
        database_url=None,
        redis_url=None,
        data_dir=tmp_path,
        stream_name="detproc",
        log_level="WARNING",
    )
    assert settings.database_url is None
    assert settings.detection_process  # the default
    endpoints = Endpoints(database_url, redis_url, None, embedded_servers=("postgres", "redis"))
    runtime = Runtime(settings, endpoints=endpoints)
    try:
        processor = runtime.processor
        (sink,) = [s for s in processor.sinks.sinks if isinstance(s, ProcessSink)]
        stream = runtime.stream()
        send(stream, oven(now_us() - 3600 * 1_000_000, 23 * 60, ramp_from=600, ramp_to=1200))
        stream.close()
        drain(processor)
        assert processor.sinks.flush(TIMEOUT_S)
        assert alerts_of(db) == [("overheating", "temperature", "resolved")]
        pid = sink.pid
        assert pid is not None
        child = psutil.Process(pid)
        assert child.name() == "ps-detect"
        assert not any(database_url in part for part in child.cmdline())
    finally:
        runtime.close()
    wait_until(lambda: not pid_alive(pid), timeout=TIMEOUT_S, what="the child gone")


def test_detection_in_the_child_survives_its_kill_mid_stream(
    database_url: str, redis_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    """The processor goes on while its detection child is SIGKILLed half-way through a
    fault; the next child replays what was not acknowledged: the one alert, opened and
    resolved, as without the kill."""
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        stream_name="detkill",
        log_level="WARNING",
        processor_batch_records=20,
    )
    runtime = Runtime(settings)
    try:
        processor = runtime.processor
        (sink,) = [s for s in processor.sinks.sinks if isinstance(s, ProcessSink)]
        stream = runtime.stream()
        send(stream, oven(now_us() - 3600 * 1_000_000, 23 * 60, ramp_from=600, ramp_to=1200))
        stream.close()
        processor.rebalance()
        wait_until(lambda: processor.step() and sink.evaluated >= 5, timeout=TIMEOUT_S, what="5")
        first = sink.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(first), timeout=TIMEOUT_S, what="reaped")
        drain(processor)  # committing goes on: the sink falls behind, then catches up

        def caught_up() -> bool:
            processor.step()
            return not processor.sinks.behind() and processor.sinks.flush(TIMEOUT_S)

        wait_until(caught_up, timeout=TIMEOUT_S, what="detection caught up")
        assert sink.restarts == 1
        assert alerts_of(db) == [("overheating", "temperature", "resolved")]
    finally:
        runtime.close()
