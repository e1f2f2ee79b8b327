"""Replay labeled recordings through the real detection pipeline, in accelerated event time.

Each recording becomes sensors of one scratch facility (a device per value column, named
``recording:column``), its rows go to the detection sink in batches ordered as the processor
hands them over (sorted by sensor and time, event time moving forward batch by batch), and
the alerts the engine opens in PostgreSQL are read back as alarms. The training rows are
given to the engine as history (learned from, never alerted on), as imported history or
rollups would be. The scratch facility's alerts, sensors and Redis state are removed after.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.detect.config import DetectionConfig
from plantstream.detect.engine import DetectionEngine
from plantstream.detect.evaluate.dataset import LabeledSeries
from plantstream.detect.evaluate.scoring import Alarm
from plantstream.detect.machines import Machine, MachineDetection
from plantstream.detect.multivariate import bucket_medians, fit
from plantstream.model import METRICS
from plantstream.processor.rows import Columns
from plantstream.processor.sinks.detection import DetectionSink
from plantstream.store import alerts as alert_store
from plantstream.store.detection_state import DetectionStateStore
from plantstream.store.sensors import SensorKey, SensorRegistry

# a column's metric from its name (the metric decides little: the cause names, and that a
# counter may stay flat); anything else is judged as a generic signal
_GUESSES = (
    ("thermo", "temperature"),
    ("temp", "temperature"),
    ("press", "pressure"),
    ("vib", "vibration_rms"),
    ("accel", "vibration_rms"),
    ("current", "current"),
    ("flow", "flow_rate"),
    ("rpm", "spindle_speed"),
    ("speed", "spindle_speed"),
    ("humid", "humidity"),
    ("count", "production_count"),
)
GENERIC = "power"


def guess_metric(*names: str) -> str:
    for name in names:
        low = name.lower()
        for word, metric in _GUESSES:
            if word in low:
                return metric
    return GENERIC


@dataclass(frozen=True)
class ReplayResult:
    alarms: dict[str, list[Alarm]]  # by recording name
    readings: int
    config: DetectionConfig


def _device(name: str, column: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"{name}:{column}")[:64]


class Replay:
    """Replays recordings through a ``DetectionEngine`` on these servers."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_client: redis.Redis | RedisCluster,
        config: DetectionConfig | None = None,
        batch_rows: int = 600,
        metric: str | None = None,
        multivariate: bool = False,
        per_bucket: int = 10,
    ) -> None:
        """``multivariate``: each recording is also one machine, its columns judged together
        by a model trained on its training rows (``per_bucket`` rows a bucket)."""
        if metric is not None and metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}")
        self.database_url = database_url
        self.redis = redis_client
        self.config = config
        self.batch_rows = max(1, batch_rows)
        self.metric = metric
        self.multivariate = multivariate
        self.per_bucket = max(1, per_bucket)
        self.facility = f"evaluate-{uuid.uuid4().hex[:10]}"

    def run(self, recordings: Sequence[LabeledSeries]) -> ReplayResult:
        with self._scratch() as conn:
            machines = MachineDetection([]) if self.multivariate else None
            engine = DetectionEngine(
                database_url=self.database_url,
                redis_client=self.redis,
                config=self.config,
                machines=machines,
            )
            config = engine.refresh_config()
            sink = DetectionSink(engine)
            registry = SensorRegistry()
            readings = 0
            by_device: dict[str, str] = {}
            for series in recordings:
                keys = [
                    (self.facility, _device(series.name, c), self._metric(series, c))
                    for c in series.columns
                ]
                for (_, device, _), _c in zip(keys, series.columns, strict=True):
                    by_device[device] = series.name
                ids = registry.resolve(conn, keys)
                if machines is not None and len(keys) > 1:
                    normal = bucket_medians(series.values[: series.train_rows], self.per_bucket)
                    model = fit(series.columns, normal)
                    machines.add(Machine(tuple(keys), model, self.per_bucket))
                order = sorted(range(len(keys)), key=lambda j: ids[keys[j]])
                key_map = {ids[k]: k for k in keys}
                for a, b, history in self._batches(series):
                    cols = _columns(series, a, b, [ids[keys[j]] for j in order], order)
                    readings += len(cols)
                    if history:
                        engine.learn_history(cols, key_map)
                    else:
                        sink.write(cols, key_map)
            engine.close()
            alarms: dict[str, list[Alarm]] = {s.name: [] for s in recordings}
            for device, kind, opened, resolved in alert_store.alert_spans(
                conn=conn, facility=self.facility
            ):
                alarms[by_device[device]].append(Alarm(opened, resolved, kind))
        return ReplayResult(alarms, readings, config)

    def _metric(self, series: LabeledSeries, column: str) -> str:
        return self.metric or guess_metric(column, series.name)

    def _batches(self, series: LabeledSeries) -> Iterator[tuple[int, int, bool]]:
        n, train = len(series.ts_us), series.train_rows
        if train:
            for a in range(0, train, self.batch_rows):
                yield a, min(a + self.batch_rows, train), True
        for a in range(train, n, self.batch_rows):
            yield a, min(a + self.batch_rows, n), False

    @contextmanager
    def _scratch(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            try:
                yield conn
            finally:
                alert_store.delete_facility(conn=conn, facility=self.facility)
                DetectionStateStore(self.redis).forget(self.facility)


def _columns(
    series: LabeledSeries, a: int, b: int, sensor_ids: list[int], order: list[int]
) -> Columns:
    """Rows ``a:b`` of the recording as the processor's columns, sorted by (sensor, time)."""
    width = b - a
    ts = series.ts_us[a:b]
    m = len(order)
    return Columns(
        np.repeat(np.array(sensor_ids, dtype=np.int32), width),
        np.tile(ts, m),
        np.concatenate([series.values[a:b, j] for j in order]),
        np.zeros(width * m, np.int16),
        np.zeros(width * m, np.int32),
        np.tile(ts, m),
    )


__all__ = ["GENERIC", "Replay", "ReplayResult", "SensorKey", "guess_metric"]
