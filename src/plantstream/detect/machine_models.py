"""Machine models as a feature: trained from a machine's stored readings of a normal period,
kept in PostgreSQL (JSON arrays, versioned with who and when), and watched by the processor's
detection engine, which picks changes up within ``refresh_s``.

Training reads **raw readings**, not the 1-minute rollups: the engine judges bucket medians
of raw readings aligned on their timestamps (``machines.py``), and a model must be trained on
the same statistic it judges (a 1-minute mean varies less than a 10-reading median, so limits
learned from rollups would be too tight and raise false alarms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from plantstream.detect.alerts import AlertEvent, AlertLifecycle
from plantstream.detect.buckets import per_bucket as bucket_size
from plantstream.detect.machines import Machine, MachineDetection
from plantstream.detect.multivariate import (
    KIND,
    MAX_SIGNALS,
    FloatArray,
    IntArray,
    MachineModel,
    MultivariateTuning,
    bucket_medians,
    fit,
)
from plantstream.detect.state import SensorState
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import check_id
from plantstream.store import machine_models as store
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)

MAX_PERIOD = timedelta(days=7)  # a normal period longer than this is refused
MAX_READINGS = 2_000_000  # readings (all signals together) one training reads at most
MAX_MODELS_PER_FACILITY = 200  # models in force per facility (the engine holds them all)
READ_TIMEOUT_MS = 60_000  # reading a normal period's readings takes at most this long
MAX_SENSORS_READ = 1_000  # a machine's sensors looked at (the sensor quota is far lower)
HISTORY_LIMIT = 20  # versions a machine's answer lists
NUMERIC = ("double", "int64")


def _refuse(code: ErrorCode, message: str) -> InvalidInputError:
    return InvalidInputError(code, message)


# -- the model as JSON ------------------------------------------------------------------


def to_json(model: MachineModel) -> dict[str, Any]:
    """The model's parameters as plain JSON numbers (never a pickle)."""
    return {
        "signals": list(model.signals),
        "center": model.center.tolist(),
        "scale": model.scale.tolist(),
        "components": model.components.tolist(),
        "variances": model.variances.tolist(),
        "t2_limit": model.t2_limit,
        "q_limit": model.q_limit,
    }


def from_json(data: Mapping[str, Any]) -> MachineModel:
    """The model of ``to_json``'s answer; ``ValueError`` if its shapes do not fit together."""
    signals = tuple(str(s) for s in data["signals"])
    p = len(signals)
    center = np.asarray(data["center"], dtype=np.float64)
    scale = np.asarray(data["scale"], dtype=np.float64)
    components = np.asarray(data["components"], dtype=np.float64)
    variances = np.asarray(data["variances"], dtype=np.float64)
    if (
        center.shape != (p,)
        or scale.shape != (p,)
        or components.ndim != 2
        or components.shape[1] != p
        or variances.shape != (len(components),)
    ):
        raise ValueError("a stored machine model's arrays do not fit its signals")
    return MachineModel(
        signals,
        center,
        scale,
        components,
        variances,
        t2_limit=float(data["t2_limit"]),
        q_limit=float(data["q_limit"]),
    )


# -- training ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trained:
    version: int
    model: MachineModel
    per_bucket: int
    readings: int
    buckets: int


def _signals(
    conn: psycopg.Connection, facility: str, machine: str, named: Sequence[str] | None
) -> list[store.MachineSensor]:
    sensors = store.machine_sensors(
        conn=conn, facility=facility, machine=machine, limit=MAX_SENSORS_READ
    )
    if not sensors:
        raise _refuse(
            ErrorCode.UNKNOWN_MACHINE,
            f"facility {facility} has no machine {machine!r} with readings",
        )
    if named is None:  # every numeric gauge; a counter's climb is not a normal state
        chosen = [s for s in sensors if s.value_type in NUMERIC and s.kind == "gauge"]
    else:
        if len(set(named)) != len(named):
            raise _refuse(ErrorCode.INVALID_REQUEST, "signals: a signal is named twice")
        by_metric = {s.metric: s for s in sensors}
        missing = [m for m in named if m not in by_metric]
        if missing:
            raise _refuse(
                ErrorCode.UNKNOWN_METRIC,
                f"machine {machine} has no signal {missing[0]!r} (it has "
                f"{', '.join(sorted(by_metric)[:10])})",
            )
        chosen = [by_metric[m] for m in named]
        text = [s.metric for s in chosen if s.value_type not in NUMERIC]
        if text:
            raise _refuse(ErrorCode.INVALID_REQUEST, f"signal {text[0]!r} is not numeric")
    if len(chosen) < 2:
        raise _refuse(
            ErrorCode.INSUFFICIENT_DATA,
            f"a machine model judges 2 or more numeric signals together; {machine} has "
            f"{len(chosen)}",
        )
    if len(chosen) > MAX_SIGNALS:
        raise _refuse(
            ErrorCode.INVALID_REQUEST,
            f"a machine model takes at most {MAX_SIGNALS} signals ({machine} has "
            f"{len(chosen)}): name them in 'signals'",
        )
    return chosen


def aligned(
    rows: Sequence[tuple[int, int, float]], sensor_ids: Sequence[int]
) -> tuple[IntArray, FloatArray]:
    """(timestamps every sensor has a reading at, n x p values in ``sensor_ids`` order), as
    the engine aligns a batch."""
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    ts = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    value = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    parts = [(ts[ids == sid], value[ids == sid]) for sid in sensor_ids]
    common = parts[0][0]
    for t, _ in parts[1:]:
        common = np.intersect1d(common, t, assume_unique=True)
    matrix = np.column_stack([v[np.searchsorted(t, common)] for t, v in parts])
    return common.astype(np.int64), np.asarray(matrix, dtype=np.float64).reshape(len(common), -1)


def train(
    conn: psycopg.Connection,
    *,
    facility: str,
    machine: str,
    start: datetime,
    end: datetime,
    signals: Sequence[str] | None,
    author: str,
    bucket_seconds: float,
    min_readings: int,
    tuning: MultivariateTuning | None = None,
) -> Trained:
    """Fit the machine's model on its readings in [start, end) and record it as the new
    version; every refusal is an ``InvalidInputError`` with its code."""
    check_id(facility, "facility")
    check_id(machine, "machine")
    if end <= start:
        raise _refuse(ErrorCode.INVALID_PERIOD, "the normal period must end after it starts")
    if end - start > MAX_PERIOD:
        raise _refuse(
            ErrorCode.INVALID_PERIOD, f"a normal period is at most {MAX_PERIOD.days} days long"
        )
    tuning = tuning or MultivariateTuning()
    chosen = _signals(conn, facility, machine, signals)
    _check_quota(conn, facility, machine)
    ids = [s.id for s in chosen]
    try:
        with conn.transaction():  # the timeout holds for this read only
            conn.execute(
                "SELECT set_config('statement_timeout', %s, true)", (str(READ_TIMEOUT_MS),)
            )
            rows = store.period_readings(
                conn=conn, sensor_ids=ids, start=start, end=end, limit=MAX_READINGS + 1
            )
    except psycopg.errors.QueryCanceled:
        raise _refuse(
            ErrorCode.TOO_MUCH_DATA,
            f"reading the period's readings took more than {READ_TIMEOUT_MS // 1000} s: "
            "name a shorter one",
        ) from None
    if len(rows) > MAX_READINGS:
        raise _refuse(
            ErrorCode.TOO_MUCH_DATA,
            f"the period holds more than {MAX_READINGS:,} readings of these signals: "
            "name a shorter one",
        )
    ts, matrix = aligned(rows, ids) if rows else (np.zeros(0, np.int64), np.zeros((0, len(ids))))
    gaps = np.diff(ts)
    gap_us = float(np.median(gaps)) if len(gaps) else 1e6
    k = bucket_size(max(gap_us, 1.0), int(bucket_seconds * 1e6), min_readings)
    medians = bucket_medians(matrix, k) if len(ts) else np.zeros((0, len(ids)))
    need = max(tuning.min_rows, 2 * len(ids))
    if len(medians) < need:
        raise _refuse(
            ErrorCode.INSUFFICIENT_DATA,
            f"the period has {len(ts)} times at which all {len(ids)} signals have a reading: "
            f"{len(medians)} buckets of {k}, at least {need} are needed "
            f"({need * k} aligned readings)",
        )
    names = [s.metric for s in chosen]
    model = fit(names, medians, tuning)
    with conn.transaction():
        # the quota again, under the writers' lock: two trainings of new machines at once
        # must not both pass it (the check above only spares a doomed read)
        store.lock_writes(conn)
        _check_quota(conn, facility, machine)
        version = store.insert(
            conn=conn,
            facility=facility,
            machine=machine,
            model=to_json(model),
            author=author,
            per_bucket=k,
            trained_from=start,
            trained_to=end,
            readings=len(rows),
            buckets=len(medians),
        )
    return Trained(version, model, k, len(rows), len(medians))


def _check_quota(conn: psycopg.Connection, facility: str, machine: str) -> None:
    """``quota_machine_models`` if a new machine would pass the facility's bound."""
    existing = store.in_force(conn=conn, facility=facility, machine=machine, limit=1)
    if not existing and store.count_in_force(conn=conn, facility=facility) >= (
        MAX_MODELS_PER_FACILITY
    ):
        raise _refuse(
            ErrorCode.QUOTA_MACHINE_MODELS,
            f"facility {facility} has {MAX_MODELS_PER_FACILITY} machine models already",
        )


def remove(conn: psycopg.Connection, *, facility: str, machine: str, author: str) -> int:
    """Take the machine's model out of force (recorded as a version); ``not_found`` if none."""
    check_id(facility, "facility")
    check_id(machine, "machine")
    with conn.transaction():
        if not store.in_force(conn=conn, facility=facility, machine=machine, limit=1):
            raise _refuse(ErrorCode.NOT_FOUND, f"machine {machine} of {facility} has no model")
        return store.insert(
            conn=conn, facility=facility, machine=machine, model=None, author=author
        )


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a person reads of a stored model: signals, components, limits, period, who."""
    model = row["model"]
    return {
        "facility": row["facility"],
        "machine": row["machine"],
        "version": row["version"],
        "signals": model["signals"],
        "components": len(model["components"]),
        "t2_limit": model["t2_limit"],
        "q_limit": model["q_limit"],
        "per_bucket": row["per_bucket"],
        "trained_from": row["trained_from"],
        "trained_to": row["trained_to"],
        "readings": row["readings"],
        "buckets": row["buckets"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }


# -- the processor's watches ------------------------------------------------------------


class StoredMachines(MachineDetection):
    """The machines with a model in PostgreSQL, watched by the engine: every model in force at
    the first batch, then every ``refresh_s`` one cheap check (the table's newest id) and, when
    it moved, the newest rows of the machines that changed (bounded by ``max_changes``).

    A replaced or removed model's open alert resolves at the machine's last judged reading; a
    new model's watch starts fresh (watches live in this process, not in Redis).
    """

    def __init__(
        self,
        connection: Callable[[], psycopg.Connection],
        *,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_changes: int = 1_000,
    ) -> None:
        super().__init__([])
        self._connection = connection
        self.refresh_s = refresh_s
        self.clock = clock
        self.max_changes = max_changes
        self._seen_id = 0
        self._checked_at: float | None = None
        self.versions: dict[tuple[str, str], int] = {}  # (facility, machine) -> version

    def refresh(self, lifecycle: AlertLifecycle, *, force: bool = False) -> list[AlertEvent]:
        """Apply the models' changes if ``refresh_s`` passed; events of alerts it resolved."""
        now = self.clock()
        if not force and self._checked_at is not None and now - self._checked_at < self.refresh_s:
            return []
        self._checked_at = now
        conn = self._connection()
        if store.newest_id(conn=conn) <= self._seen_id:
            return []
        events: list[AlertEvent] = []
        for row in store.changed_since(conn=conn, after_id=self._seen_id, limit=self.max_changes):
            events += self._apply(row, lifecycle)
            self._seen_id = max(self._seen_id, int(row["id"]))
        return events

    def _apply(self, row: Mapping[str, Any], lifecycle: AlertLifecycle) -> list[AlertEvent]:
        facility, machine = row["facility"], row["machine"]
        name = (facility, machine)
        events = self._drop(name, lifecycle)
        if row["model"] is None:
            log.info("machine model of %s/%s removed", facility, machine)
            return events
        try:
            model = from_json(row["model"])
        except (KeyError, TypeError, ValueError):
            log.exception("machine model %s/%s v%s unreadable", facility, machine, row["version"])
            return events
        sensors: tuple[SensorKey, ...] = tuple((facility, machine, s) for s in model.signals)
        self.add(Machine(sensors, model, per_bucket=int(row["per_bucket"] or 10), name=name))
        self.versions[name] = int(row["version"])
        log.info("machine model of %s/%s v%d in force", facility, machine, row["version"])
        return events

    def _drop(self, name: tuple[str, str], lifecycle: AlertLifecycle) -> list[AlertEvent]:
        self.versions.pop(name, None)
        gone = self.remove(name)
        if gone is None or gone.alert_sensor is None:
            return []
        return lifecycle.resolve(gone.alert_sensor, SensorState(), KIND, gone.last_us)

    def __call__(
        self,
        columns: tuple[IntArray, FloatArray],
        slices: Sequence[tuple[int, int, int]],
        keys: Mapping[int, SensorKey],
        lifecycle: AlertLifecycle,
    ) -> list[AlertEvent]:
        events = self.refresh(lifecycle)
        if not self.machines:  # no model in force: the batch costs nothing more
            return events
        return events + super().__call__(columns, slices, keys, lifecycle)


__all__ = [
    "MAX_MODELS_PER_FACILITY",
    "MAX_PERIOD",
    "MAX_READINGS",
    "StoredMachines",
    "Trained",
    "from_json",
    "remove",
    "summary",
    "to_json",
    "train",
]
