"""Rollups right for plant data, checked against a brute-force reference on real PostgreSQL:
a gauge's time-weighted average (value carried across bucket edges), min, max, first, last and
count, a counter's increase (resets and wraps) and a state's time in each state, per 1 m, 1 h
and 1 d bucket, exact when
the readings arrive in any order, in several batches, some of them twice, once the repair pass
has recomputed the buckets late data made dirty (and flagged ``pending`` until then)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fixtures.pipeline import drain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import ConnectionPool

from plantstream.history import HistoryStore
from plantstream.history.readings import store_history_batch
from plantstream.model import (
    DEFAULT_SIGNALS,
    FixedCatalog,
    ParsedBatch,
    Reading,
    SignalDef,
    SignalKind,
    ValueType,
    now_us,
    to_epoch_us,
)
from plantstream.processor import Processor
from plantstream.store import queries
from plantstream.store.rollup_repair import dirty_buckets, repair_rollups
from plantstream.stream import RedisStream, pack_readings

WRAP = 2**16
MODES = ("idle", "run", "fault")
CATALOG = FixedCatalog(
    {
        **DEFAULT_SIGNALS,
        "level": SignalDef("level", unit="m", low=-1e6, high=1e6),
        "parts": SignalDef(
            "parts", ValueType.INT64, SignalKind.COUNTER, unit="count", low=0, high=WRAP, wrap=WRAP
        ),
        "mode": SignalDef("mode", ValueType.STATE, SignalKind.STATE, states=MODES),
    }
)
WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
# readings around a day boundary three days back: every bucket is closed, every kind of edge met
_DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
BASE = _DAY - timedelta(minutes=90)
SPAN_S = 3 * 3600


def increase(before: float, after: float) -> float:
    if after >= before:
        return after - before
    return after - before + WRAP if before - after > WRAP / 2 else after


def _spans(inside: list[tuple[int, Any]], before: list[tuple[int, Any]], bucket: int, end: int):
    """Seconds each value holds inside the bucket (the value before it carried in)."""
    spans: dict[Any, float] = {}
    if before:
        spans[before[-1][1]] = inside[0][0] - bucket
    for (t, v), (t2, _) in zip(inside, [*inside[1:], (end, None)], strict=True):
        spans[v] = spans.get(v, 0.0) + (t2 - t)
    return spans


def reference(points: list[tuple[int, Any]], width: int, counter: bool) -> list[dict[str, Any]]:
    """Every bucket with readings (and, for a state, every bucket between two readings),
    computed from the whole series by brute force."""
    points = sorted(points)
    out: list[dict[str, Any]] = []
    for bucket in sorted({t - t % width for t, _ in points}):
        inside = [(t, v) for t, v in points if bucket <= t < bucket + width]
        before = [(t, v) for t, v in points if t < bucket]
        end = bucket + width
        spans = _spans(inside, before, bucket, end)
        bucket_out: dict[str, Any] = {"ts": bucket, "count": len(inside)}
        if isinstance(inside[0][1], str):
            bucket_out["states"] = {k: v for k, v in spans.items() if v > 0}
            out.append(bucket_out)
            continue
        held = sum(spans.values())  # the bucket's length, or from the first reading ever
        grown = 0.0
        previous = before[-1][1] if before else None
        for _, v in inside:
            if previous is not None:
                grown += increase(previous, v)
            previous = v
        values = [v for _, v in inside]
        bucket_out.update(
            {
                "min": min(values),
                "max": max(values),
                "first": values[0],
                "last": values[-1],
                "twa": sum(v * s for v, s in spans.items()) / held,
                "increase": grown if counter else None,
            }
        )
        out.append(bucket_out)
    if points and isinstance(points[0][1], str):
        # a state's bucket without a reading between two readings: all of it in the state held
        with_readings = {o["ts"] for o in out}
        for bucket in range(min(with_readings), max(with_readings), width):
            if bucket not in with_readings:
                held = [v for t, v in points if t < bucket][-1]
                out.append({"ts": bucket, "count": 0, "states": {held: float(width)}})
        out.sort(key=lambda o: o["ts"])
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


series_of = st.lists(
    st.tuples(st.integers(0, SPAN_S - 1), st.integers(0, WRAP - 1)),
    min_size=1,
    max_size=30,
    unique_by=lambda p: p[0],
)


def test_rollups_equal_a_brute_force_reference(
    stream: RedisStream,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    processor = make_processor(database_url, stream, None, catalog=CATALOG)

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        gauge=series_of,
        counter=series_of,
        modes=series_of,
        cuts=st.lists(st.integers(0, 80), max_size=4),
        order=st.randoms(use_true_random=False),
        again=st.booleans(),
    )
    def check(
        gauge: list[tuple[int, int]],
        counter: list[tuple[int, int]],
        modes: list[tuple[int, int]],
        cuts: list[int],
        order: Any,
        again: bool,
    ) -> None:
        db.execute(
            "TRUNCATE readings, rollup_1m, rollup_1h, rollup_1d, reading_conflicts, "
            "processor_counters"
        )
        base_us = int(BASE.timestamp()) * 1_000_000
        readings = (
            [
                Reading("m1", "level", base_us + t * 1_000_000, float(v) / 7 - 4000.0)
                for t, v in gauge
            ]
            + [
                Reading("m1", "parts", base_us + t * 1_000_000, v, 0, ValueType.INT64)
                for t, v in counter
            ]
            + [
                Reading("m1", "mode", base_us + t * 1_000_000, MODES[v % 3], 0, ValueType.STATE)
                for t, v in modes
            ]
        )
        order.shuffle(readings)  # late data: any order, in batches
        bounds = sorted({0, len(readings), *(c % (len(readings) + 1) for c in cuts)})
        batches = [readings[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        if again:
            batches.append(batches[0])  # a producer retry: stored once, counted once
        for batch in batches:
            stream.put(pack_readings("plant-01", now_us(), batch))
            drain(processor)
        assert dirty_buckets(db) == (0, 0, 0)  # drained: the repair ran
        assert_equals_reference(db, gauge, counter, modes)

    check()


def assert_equals_reference(
    db: psycopg.Connection,
    gauge: list[tuple[int, int]],
    counter: list[tuple[int, int]],
    modes: list[tuple[int, int]],
) -> None:
    """Every 1m / 1h / 1d point of the three signals equals the brute-force reference."""
    for metric, points, is_counter in (
        ("level", [(t, float(v) / 7 - 4000.0) for t, v in gauge], False),
        ("parts", [(t, float(v)) for t, v in counter], True),
        ("mode", [(t, MODES[v % 3]) for t, v in modes], False),
    ):
        for step, width in WIDTHS.items():
            got = queries.series(
                db,
                facility="plant-01",
                device="m1",
                metric=metric,
                start=BASE - timedelta(days=1),
                end=BASE + timedelta(days=2),
                step=step,
            )
            base_s = int(BASE.timestamp())
            want = reference([(base_s + t, v) for t, v in points], width, is_counter)
            assert [int(p["ts"].timestamp()) for p in got] == [w["ts"] for w in want], step
            for p, w in zip(got, want, strict=True):
                assert p["count"] == w["count"], (step, metric)
                assert p["pending"] is None, (step, metric, p)  # repaired: exact
                if metric == "mode":  # time in each state
                    assert p["states"].keys() == w["states"].keys(), (step, p, w)
                    assert all(_close(p["states"][k], w["states"][k]) for k in w["states"])
                    continue
                assert (p["min"], p["max"]) == (w["min"], w["max"])
                assert (p["first"], p["last"]) == (w["first"], w["last"]), (step, metric)
                assert _close(p["twa"], w["twa"]), (step, metric, p, w)
                assert _close(p["increase"], w["increase"]), (step, metric, p, w)
                assert p["states"] is None


def test_heavy_late_data_is_flagged_then_repaired_once_per_bucket(
    stream: RedisStream,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> None:
    """Forty late batches over the same minutes around a day's edge, one batch per commit:
    the commits only mark buckets dirty, a dirty bucket answers ``pending`` without a
    time-weighted average, and bounded repair passes make every bucket exact, each bucket
    recomputed once however many batches touched it."""
    db.execute(
        "TRUNCATE readings, rollup_1m, rollup_1h, rollup_1d, reading_conflicts, processor_counters"
    )
    # the busy-time repair is off (a pass only when idle): the late batches pile up first
    processor = make_processor(
        database_url, stream, None, catalog=CATALOG, batch_records=1, repair_every=3600.0
    )
    processor.step()  # the start-up pass (nothing dirty yet)
    day_edge = 5400  # seconds after BASE: midnight, so 1 m, 1 h and 1 d buckets all meet late data
    stamps = list(range(day_edge - 150, day_edge + 150, 3))
    gauge = [(t, (t * 7919) % 5000) for t in stamps]
    counter = [(t, (t * 13) % WRAP) for t in stamps]  # wraps and drops: resets
    modes = [(t, t // 7) for t in stamps]
    base_us = int(BASE.timestamp()) * 1_000_000
    readings = [
        r
        for t, v in zip(stamps, range(len(stamps)), strict=True)
        for r in (
            Reading("m1", "level", base_us + t * 1_000_000, float(gauge[v][1]) / 7 - 4000.0),
            Reading("m1", "parts", base_us + t * 1_000_000, counter[v][1], 0, ValueType.INT64),
            Reading(
                "m1", "mode", base_us + t * 1_000_000, MODES[modes[v][1] % 3], 0, ValueType.STATE
            ),
        )
    ]
    # every 40th reading per batch: each batch interleaves between the ones stored before
    batches = [readings[i::40] for i in range(40)]
    for batch in batches:
        stream.put(pack_readings("plant-01", now_us(), batch))
    for _ in range(200):  # one batch per shard and step (a step may find a prefetch stale)
        if processor.processed == len(readings):
            break
        processor.step()
    assert processor.processed == len(readings)
    dirty = dirty_buckets(db)
    assert min(dirty) > 0, dirty  # late data overlapped buckets of every width
    pending = queries.series(
        db,
        facility="plant-01",
        device="m1",
        metric="level",
        start=BASE,
        end=BASE + timedelta(days=1),
        step="1m",
    )
    flagged = [p for p in pending if p.get("pending")]
    assert flagged
    assert all(p["twa"] is None for p in flagged)  # flagged, never wrong
    passes, repaired = 0, [0, 0, 0]
    while dirty_buckets(db) != (0, 0, 0):
        done = repair_rollups(db, limit=2)
        assert all(n <= 2 for n in done.repaired)  # every pass bounded
        repaired = [a + b for a, b in zip(repaired, done.repaired, strict=True)]
        passes += 1
        assert passes <= 200, "the repair does not converge"
    assert tuple(repaired) == dirty  # each dirty bucket recomputed exactly once
    assert_equals_reference(db, gauge, counter, modes)


def test_a_state_held_through_buckets_without_readings_is_told_in_each_of_them(
    db: psycopg.Connection, database_url: str
) -> None:
    """run at 10:00:30, idle at 13:30: the hourly buckets 11:00 and 12:00 have no reading,
    yet the machine ran all through them; every bucket tells its seconds."""
    pool = ConnectionPool(
        database_url, min_size=1, max_size=1, kwargs={"autocommit": True}, open=True
    )
    day = _DAY - timedelta(days=1)
    at = [day + timedelta(hours=10, seconds=30), day + timedelta(hours=13, minutes=30)]
    try:
        store = HistoryStore(catalog=CATALOG, retention_days=30)
        readings = [
            Reading("m1", "mode", to_epoch_us(t), v, 0, ValueType.STATE)
            for t, v in zip(at, ("run", "idle"), strict=True)
        ]
        store_history_batch(pool, store, ParsedBatch("plant-01", readings, []))
    finally:
        pool.close()

    def hourly(start: datetime, end: datetime) -> list[tuple[int, int, Any]]:
        points = queries.series(
            db, facility="plant-01", device="m1", metric="mode", start=start, end=end, step="1h"
        )
        return [(p["ts"].hour, p["count"], p["states"]) for p in points]

    assert hourly(day, day + timedelta(hours=14)) == [
        (10, 1, {"run": 3570.0}),
        (11, 0, {"run": 3600.0}),
        (12, 0, {"run": 3600.0}),
        (13, 1, {"run": 1800.0, "idle": 1800.0}),
    ]
    # from inside the gap: the state carried in from before the range
    assert hourly(day + timedelta(hours=11, minutes=20), day + timedelta(hours=14))[0] == (
        12,
        0,
        {"run": 3600.0},
    )
