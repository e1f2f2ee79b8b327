"""The detection engine, the processor's batch hook: stored readings -> buckets -> registered
detectors -> the alert lifecycle, state in the state store, dropouts by ``dropout.py``'s rule."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt
import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.detect.alerts import AlertEvent, AlertLifecycle, publish
from plantstream.detect.buckets import Bucket, sensor_slices
from plantstream.detect.config import (
    DetectionConfig,
    SensorLimits,
    Tuning,
    current_config,
    limits_for,
)
from plantstream.detect.detectors import DETECTORS, evaluate, learn
from plantstream.detect.dropout import KIND as DROPOUT
from plantstream.detect.dropout import Dropouts, shortest_silence_us
from plantstream.detect.feed import cut_batch, feed
from plantstream.detect.machines import MachineDetection
from plantstream.detect.registry import Registry
from plantstream.detect.state import SensorState, SensorStates
from plantstream.store.detection_state import DetectionStateStore, state_key
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)


class StoredRows(Protocol):
    """Newly stored readings column-wise, sorted by (sensor, time): the processor's
    ``Columns`` (detection needs no more of it)."""

    @property
    def sensor_id(self) -> npt.NDArray[np.int32]: ...
    @property
    def ts_us(self) -> npt.NDArray[np.int64]: ...
    @property
    def value(self) -> npt.NDArray[np.float64]: ...
    @property
    def received_us(self) -> npt.NDArray[np.int64]: ...


class DetectionEngine:
    """A ``BatchHook``: call it with each batch of newly stored rows."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_client: redis.Redis | RedisCluster,
        notify: Callable[[list[AlertEvent]], None] | None = None,
        config_refresh_s: float = 10.0,
        connect: Callable[[str], psycopg.Connection] | None = None,
        detectors: Registry = DETECTORS,
        config: DetectionConfig | None = None,
        machines: MachineDetection | None = None,
    ) -> None:
        """``config``: settings fixed for this engine's life (an evaluation); by default the
        versioned settings in PostgreSQL, read again every ``config_refresh_s``.
        ``machines``: machines whose signals are also judged together (multivariate)."""
        self.database_url = database_url
        self.redis = redis_client
        self.notify = notify
        self.config_refresh_s = config_refresh_s
        self.detectors = detectors
        self.machines = machines
        self._connect = connect or (lambda url: psycopg.connect(url, autocommit=True))
        self._conn: psycopg.Connection | None = None
        self.version = 0
        self.config = config or DetectionConfig()  # in force; ``refresh_config`` moves it
        self._fixed = config is not None
        self._config_at = -1e9
        self._limits: dict[SensorKey, SensorLimits] = {}
        self._tunings: dict[SensorKey, Tuning] = {}
        self.store = DetectionStateStore(redis_client)
        self.states = SensorStates(self.store)
        # a batch's alert changes share one transaction, begun by the first of them: most
        # batches change no alert and cost PostgreSQL nothing (no BEGIN, no COMMIT)
        self._batch: ExitStack | None = None
        self.lifecycle = AlertLifecycle(self._alert_connection)
        self.dropouts = Dropouts(self.lifecycle, self.store, self.limits)
        self._device_metrics: dict[tuple[str, str], set[str]] = {}
        self.events: list[AlertEvent] = []  # the last batch's, for callers that look

    def connection(self) -> psycopg.Connection:
        """The engine's PostgreSQL connection, opened again if it was closed."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(self.database_url)
        return self._conn

    def _alert_connection(self) -> psycopg.Connection:
        conn = self.connection()
        if self._batch is not None:  # the batch's first alert change: its transaction begins
            batch, self._batch = self._batch, None
            batch.enter_context(conn.transaction())
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def refresh_config(self, *, force: bool = False) -> DetectionConfig:
        """The settings in force, read again from PostgreSQL once ``config_refresh_s`` old."""
        if self._fixed:
            return self.config
        if force or time.monotonic() - self._config_at > self.config_refresh_s:
            version, config = current_config(self.connection())
            if version != self.version:
                log.info("detection settings version %d in force", version)
                self._limits.clear()
                self._tunings.clear()
            self.version, self.config = version, config
            self._config_at = time.monotonic()
        return self.config

    def limits(self, facility: str, device: str, metric: str) -> SensorLimits:
        key = (facility, device, metric)
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = limits_for(self.config, facility, device, metric)
        return found

    def tuning(self, sensor: SensorKey) -> Tuning:
        """The global tuning with the sensor's rules' overrides (per signal or machine type)."""
        overrides = self.limits(*sensor).tuning
        if not overrides:
            return self.config.tuning
        found = self._tunings.get(sensor)
        if found is None:
            found = self._tunings[sensor] = self.config.tuning.model_copy(update=overrides)
        return found

    # -- the hook ---------------------------------------------------------------------

    def __call__(self, rows: StoredRows, keys: Mapping[int, SensorKey]) -> None:
        tuning = self.refresh_config().tuning
        bucket_us = int(tuning.bucket_seconds * 1e6)
        slices = sensor_slices(rows.sensor_id)
        states, flagged = self.states.load_flagged(
            {sid: keys[sid] for sid, _, _ in slices},
            before={sid: int(rows.ts_us[a]) for sid, a, _ in slices},
            conn=self.connection(),
            tuning=tuning,
        )
        cuts = cut_batch(
            states,
            slices,
            rows.ts_us,
            rows.value,
            rows.received_us,
            bucket_us=bucket_us,
            min_readings=tuning.bucket_min_readings,
        )
        silence_us = shortest_silence_us(tuning)
        events: list[AlertEvent] = []
        clocks: dict[str, int] = {}
        device_clocks: dict[tuple[str, str], int] = {}
        present: set[SensorKey] = set()
        with ExitStack() as batch:
            self._batch = batch
            try:
                for sensor_id, a, b in slices:
                    sensor = keys[sensor_id]
                    facility, device, metric = sensor
                    state = states[sensor_id]
                    # a dropout open for this sensor (flagged, or known to PostgreSQL when the
                    # state was rebuilt) ends as its readings come back
                    back = sensor in flagged or DROPOUT in state.active
                    if back:
                        events += self.dropouts.returned(sensor, state, int(rows.ts_us[a]))
                    # a silence inside a large (backlog) batch is judged as it happened
                    gap = partial(self._gap, events, sensor, state, tuning)

                    limits = self.limits(*sensor)
                    sensor_tuning = self.tuning(sensor)
                    for bucket in feed(
                        state,
                        sensor_id,
                        rows.ts_us[a:b],
                        rows.value[a:b],
                        rows.received_us[a:b],
                        bucket_us=bucket_us,
                        min_readings=tuning.bucket_min_readings,
                        before_part=None if back else gap,
                        silence_us=silence_us,
                        full=cuts.get(sensor_id),
                    ):
                        findings = evaluate(
                            state,
                            bucket,
                            metric=metric,
                            limits=limits,
                            tuning=sensor_tuning,
                            registry=self.detectors,
                        )
                        events += self.lifecycle.apply(
                            sensor,
                            sensor_id,
                            state,
                            findings,
                            bucket,
                            clear_buckets=tuning.clear_buckets,
                        )
                    # true time: a gateway clock running ahead must not drag the facility's along
                    true_last = state.seen_us - state.ahead_us
                    clocks[facility] = max(clocks.get(facility, -1), true_last)
                    device_clocks[(facility, device)] = max(
                        device_clocks.get((facility, device), -1), true_last
                    )
                    self._device_metrics.setdefault((facility, device), set()).add(metric)
                    present.add(sensor)
                if self.machines is not None:
                    events += self.machines((rows.ts_us, rows.value), slices, keys, self.lifecycle)
            finally:
                self._batch = None
        # states, flags and clocks in one round trip (the flags after the states they guard)
        now = self.states.save(states, keys, unflag=flagged, clocks=clocks)
        events += self.dropouts.quiet_metrics(device_clocks, self._device_metrics, present, tuning)
        for facility, clock in now.items():
            events += self.sweep_missing(facility, now_us=clock)
        self._emit(events)

    def _gap(
        self,
        events: list[AlertEvent],
        sensor: SensorKey,
        state: SensorState,
        tuning: Tuning,
        part: Bucket,
    ) -> None:
        events.extend(self.dropouts.gap(sensor, state, part, tuning))

    def _load(
        self,
        rows: StoredRows,
        slices: list[tuple[int, int, int]],
        keys: Mapping[int, SensorKey],
        tuning: Tuning,
    ) -> dict[int, SensorState]:
        return self.states.load(
            {sid: keys[sid] for sid, _, _ in slices},
            before={sid: int(rows.ts_us[a]) for sid, a, _ in slices},
            conn=self.connection(),
            tuning=tuning,
        )

    def learn_history(self, rows: StoredRows, keys: Mapping[int, SensorKey]) -> None:
        """Learn baselines from history (imported, or an evaluation's training rows): every
        complete bucket teaches as healthy data, nothing alerts. Sorted as for a batch."""
        tuning = self.refresh_config().tuning
        slices = sensor_slices(rows.sensor_id)
        states = self._load(rows, slices, keys, tuning)
        cuts = cut_batch(
            states,
            slices,
            rows.ts_us,
            rows.value,
            rows.received_us,
            bucket_us=int(tuning.bucket_seconds * 1e6),
            min_readings=tuning.bucket_min_readings,
        )
        for sensor_id, a, b in slices:
            state, sensor = states[sensor_id], keys[sensor_id]
            for bucket in feed(
                state,
                sensor_id,
                rows.ts_us[a:b],
                rows.value[a:b],
                rows.received_us[a:b],
                bucket_us=int(tuning.bucket_seconds * 1e6),
                min_readings=tuning.bucket_min_readings,
                full=cuts.get(sensor_id),
            ):
                sensor_tuning = self.tuning(sensor)
                self.detectors.judge(
                    state,
                    bucket,
                    metric=sensor[2],
                    limits=self.limits(*sensor),
                    tuning=sensor_tuning,
                )
                learn(state, bucket, sensor_tuning, healthy=True)
        self.states.save(states, keys)

    def sweep_missing(self, facility: str, *, now_us: int) -> list[AlertEvent]:
        """Open ``dropout`` alerts for whole devices of the facility quiet at ``now_us``."""
        return self.dropouts.sweep(facility, now_us=now_us, tuning=self.config.tuning)

    def _emit(self, events: list[AlertEvent]) -> None:
        self.events = events
        if not events:
            return
        publish(self.redis, events)
        if self.notify is not None:
            self.notify(events)


# ``state_key`` stays importable from here, where it was before the state store had it
__all__ = ["DetectionEngine", "StoredRows", "state_key"]
