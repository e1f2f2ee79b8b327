"""A machine's signals judged together by the real detection engine on PostgreSQL and
Redis: a correlation break opens one alert that names its signals and carries its evidence,
and it resolves when the machine is normal again."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import redis

from plantstream.detect.engine import DetectionEngine
from plantstream.detect.machines import Machine, MachineDetection
from plantstream.detect.multivariate import bucket_medians, fit
from plantstream.processor.rows import Columns
from plantstream.store.sensors import SensorRegistry

FACILITY = "plant-mv"
START_US = 1_700_000_000_000_000


def readings(n: int, rng: np.random.Generator, *, broken: bool = False) -> np.ndarray:
    load = rng.normal(0, 1, n)
    flow = 50 + 5 * load + rng.normal(0, 0.3, n)
    pressure = 3 + 0.5 * load + rng.normal(0, 0.03, n)
    if broken:  # a leak: flow up, pressure down, each inside its usual range
        flow, pressure = np.full(n, 56.0), np.full(n, 2.4)
    return np.column_stack([flow, pressure])


def test_a_correlation_break_opens_one_alert_naming_its_signals(
    database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    rng = np.random.default_rng(2)
    sensors = ((FACILITY, "pump-1", "flow_rate"), (FACILITY, "pump-1", "pressure"))
    ids = SensorRegistry().resolve(db, list(sensors))
    keys = {ids[s]: s for s in sensors}
    model = fit(("flow_rate", "pressure"), bucket_medians(readings(600, rng), 10))
    machines = MachineDetection([Machine(sensors, model, per_bucket=10)])
    engine = DetectionEngine(
        database_url=database_url, redis_client=redis_client, machines=machines
    )
    parts = [readings(300, rng), readings(60, rng, broken=True), readings(100, rng)]
    t = 0
    for part in parts:
        for a in range(0, len(part), 50):  # batches of 50 seconds, 1 Hz
            chunk = part[a : a + 50]
            ts = START_US + (t + np.arange(len(chunk), dtype=np.int64)) * 1_000_000
            t += len(chunk)
            cols = Columns(
                np.repeat(np.array([ids[s] for s in sensors], np.int32), len(chunk)),
                np.tile(ts, 2),
                np.concatenate([chunk[:, 0], chunk[:, 1]]),
                np.zeros(2 * len(chunk), np.int16),
                np.zeros(2 * len(chunk), np.int32),
                np.tile(ts, 2),
            )
            engine(cols, keys)
    engine.close()
    rows = db.execute(
        "SELECT detector, state, details, extract(epoch FROM opened_at) * 1e6, "
        "extract(epoch FROM resolved_at) * 1e6 FROM alerts WHERE facility = %s "
        "AND detector = 'correlation_break'",
        (FACILITY,),
    ).fetchall()
    assert len(rows) == 1
    _, state, details, opened, resolved = rows[0]
    details = details if isinstance(details, dict) else json.loads(details)
    assert state == "resolved"
    broken_from, broken_to = START_US + 300 * 1_000_000, START_US + 360 * 1_000_000
    assert broken_from <= opened <= broken_from + 20 * 1_000_000
    assert resolved >= broken_to
    assert {c["signal"] for c in details["contributing"]} == {"flow_rate", "pressure"}
    assert details["window"]["readings"] == 10
    assert details["statistic"] > details["threshold"]
