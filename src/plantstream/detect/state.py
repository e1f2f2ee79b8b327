"""What detection remembers about one sensor, typed: its baselines and its open alerts.

Small and serialisable (msgpack) so it lives in Redis and follows a shard to another
processor; lost, it is rebuilt from the rollups and the alerts still open in PostgreSQL.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum

import msgspec
import psycopg

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import Tuning
from plantstream.model import to_epoch_us
from plantstream.store import alerts as alert_store
from plantstream.store.detection_state import DetectionStateStore, rollup_baselines
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class ActiveAlert(msgspec.Struct, array_like=True):
    """An alert this sensor has open. Packed as a 4-item array, as the untyped list it
    replaces was, so states written before still load."""

    detector: str  # which detector opened it (the kind itself after a rebuild)
    severity: Severity
    quiet: int = 0  # normal buckets in a row since it was last seen
    touched_us: int = 0  # when PostgreSQL last heard that it goes on


class SensorState(msgspec.Struct, kw_only=True):
    """What the detectors remember about one sensor."""

    last_bucket_us: int = -1
    n: int = 0  # buckets seen while healthy
    base: float = 0.0  # slow EWMA of bucket medians
    base_var: float = 0.0  # EW variance of medians around it
    raw_var: float = 0.0  # EW of within-bucket variance (reading-level noise)
    fast: float = 0.0
    rising: int = 0
    prev_median: float = math.nan
    prev_us: int = -1
    flat: int = 0
    interval_us: float = 0.0  # EW of the usual gap between readings
    last_ts_us: int = -1
    ahead_us: int = 0  # how far its clock ran ahead of arrival, last time
    seen_us: int = -1  # the newest reading seen, complete bucket or not
    active: dict[str, ActiveAlert] = {}  # open alerts by kind
    open_bucket: Bucket | None = None
    per_bucket: int = 0  # readings per bucket, from the sensor's own rate (0: not known yet)
    cusum_hi: float = 0.0  # one-sided CUSUMs of the bucket z-score: slow drifts
    cusum_lo: float = 0.0
    warm: list[float] = []  # bucket medians while warming up: a robust first baseline
    # the last readings of the last bucket: the left side of a spike at this bucket's start,
    # and a run at that bucket's end, judged once this bucket says if it came back
    tail: tuple[float, ...] = ()
    # the daily cycle (docs/detection.md, Seasonality): per hour of day (UTC, from the
    # readings' timestamps), an EWMA of the hour's mean healthy bucket median's deviation
    # from the baseline; ``cycle_on`` once it has been seen long enough and explains enough of the
    # spread, and only then is it taken off before the z-score and drift sums
    cycle: list[float] = []  # CYCLE_SLOTS values once learning starts
    cycle_hits: list[int] = []  # hours learned per slot (capped)
    cycle_first_us: int = -1  # start of the first hour the cycle learned from
    cycle_var_raw: float = 0.0  # EW variance of the hours' mean deviations from the baseline
    cycle_var_res: float = 0.0  # EW variance of what the cycle (learned before) leaves of them
    cycle_hour: int = -1  # the hour (since the epoch) whose healthy buckets are being summed
    cycle_acc: float = 0.0  # their deviations' sum
    cycle_acc_n: int = 0  # and count
    cycle_on: bool = False


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SensorState)


def decode(packed: bytes) -> SensorState | None:
    """The state packed in Redis; None if it cannot be read (then it is learned again)."""
    try:
        return _decoder.decode(packed)
    except msgspec.DecodeError:
        log.warning("an unreadable detection state is dropped and rebuilt")
        return None


class SensorStates:
    """Sensor states in the state store, rebuilt from PostgreSQL where Redis has none."""

    def __init__(self, store: DetectionStateStore) -> None:
        self.store = store

    def load(
        self,
        sensors: Mapping[int, SensorKey],
        *,
        before: Mapping[int, int],
        conn: psycopg.Connection,
        tuning: Tuning,
    ) -> dict[int, SensorState]:
        """States of these sensors; ``before`` is each one's first bucket in this batch."""
        ids = list(sensors)
        packed = self.store.get_states([sensors[i] for i in ids])
        return self._decode(ids, packed, sensors, before=before, conn=conn, tuning=tuning)

    def load_flagged(
        self,
        sensors: Mapping[int, SensorKey],
        *,
        before: Mapping[int, int],
        conn: psycopg.Connection,
        tuning: Tuning,
    ) -> tuple[dict[int, SensorState], set[SensorKey]]:
        """``load``, and which of the sensors have a dropout flagged: one Redis round trip."""
        ids = list(sensors)
        packed, flagged = self.store.get_states_flagged([sensors[i] for i in ids])
        return self._decode(ids, packed, sensors, before=before, conn=conn, tuning=tuning), flagged

    def _decode(
        self,
        ids: list[int],
        packed_states: list[bytes | None],
        sensors: Mapping[int, SensorKey],
        *,
        before: Mapping[int, int],
        conn: psycopg.Connection,
        tuning: Tuning,
    ) -> dict[int, SensorState]:
        states: dict[int, SensorState] = {}
        lost = []
        for sensor_id, packed in zip(ids, packed_states, strict=True):
            state = None if packed is None else decode(packed)
            if state is None:
                lost.append(sensor_id)
            else:
                states[sensor_id] = state
        if lost:
            states.update(rebuild(lost, sensors, before, conn=conn, tuning=tuning))
        return states

    def save(
        self,
        states: Mapping[int, SensorState],
        keys: Mapping[int, SensorKey],
        *,
        unflag: Iterable[SensorKey] = (),
        clocks: Mapping[str, int] | None = None,
    ) -> dict[str, int]:
        """Store the states, drop the ``unflag`` dropout flags and move the facilities'
        ``clocks``, in one round trip; the clocks as they now stand."""
        return self.store.put_states(
            ((keys[sid], _encoder.encode(state)) for sid, state in states.items()),
            unflag=unflag,
            clocks=clocks,
        )


def rebuild(
    ids: Iterable[int],
    sensors: Mapping[int, SensorKey],
    before: Mapping[int, int],
    *,
    conn: psycopg.Connection,
    tuning: Tuning,
) -> dict[int, SensorState]:
    """States for sensors Redis does not know: learned again from the hour of 1-minute
    rollups before this batch (the batch itself is already in them: it must not teach its
    own faults), with the alerts still open in PostgreSQL."""
    ids = list(ids)
    still_open = alert_store.unresolved_kinds_of(conn=conn, sensors=[sensors[i] for i in ids])
    open_alerts: dict[int, list[tuple[str, str, datetime]]] = {
        sensor_id: still_open.get(sensors[sensor_id], []) for sensor_id in ids
    }
    cutoffs = {  # nor may the time of a fault still open teach the baseline
        sensor_id: min(
            [before[sensor_id]] + [to_epoch_us(opened) for _, _, opened in open_alerts[sensor_id]]
        )
        for sensor_id in ids
    }
    states = {sensor_id: SensorState() for sensor_id in ids}
    for sensor_id, minutes, mean, var_means, var_raw, last_ts, count in rollup_baselines(
        conn=conn, cutoffs=cutoffs
    ):
        state = states[sensor_id]
        state.n = min(minutes * 6, tuning.warmup_buckets * 2)
        state.base = state.fast = mean
        state.base_var = var_means
        state.raw_var = var_raw
        state.last_ts_us = last_ts  # seen_us stays unknown: no gap across a rebuild
        if count > 1 and minutes > 0:
            state.interval_us = 60e6 * minutes / count
    for sensor_id, unresolved in open_alerts.items():
        for kind, severity, _ in unresolved:
            states[sensor_id].active[kind] = ActiveAlert(kind, Severity(severity))
    return states


__all__ = ["ActiveAlert", "SensorState", "SensorStates", "Severity", "decode", "rebuild"]
