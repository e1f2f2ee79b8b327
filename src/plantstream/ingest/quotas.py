"""Per-facility quotas at ingest: sensors a facility may register, readings it may send a second.

Named after ThingsBoard's tenant profile (``maxDevices``, the transport's telemetry rate limit);
SECURITY.md ("Quotas") has the whole mapping. The processor enforces the sensor quota again,
so readings that slip past one ingest process's view are dead-lettered, never lost unseen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import redis
from psycopg_pool import ConnectionPool

from plantstream.errors import ErrorCode
from plantstream.ingest.admission import RateLimiter
from plantstream.ingest.backlog import BacklogGate
from plantstream.ingest.metrics import facility_label
from plantstream.model import Reading, Reject
from plantstream.settings import Settings
from plantstream.store.backlog import BacklogCounters
from plantstream.store.sensors import facility_sensors

# facility -> its registered (device, metric) pairs, or None when they cannot be read now
SensorsOf = Callable[[str], set[tuple[str, str]] | None]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Known:
    sensors: set[tuple[str, str]]
    loaded_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class SensorQuota:
    """Refuses readings for sensors a facility has not registered once it holds ``limit``.

    Each facility's registered sensors are read from PostgreSQL when it is first seen and
    again (at most every ``refresh_seconds``) when a batch names sensors not known here, plus
    every sensor this process let through since. Readings of known sensors always pass.
    While PostgreSQL cannot be read, the view stays as it was (the processor still holds the
    quota), so ingest keeps accepting without the database.
    """

    def __init__(
        self,
        *,
        limit: int,
        sensors_of: SensorsOf,
        refresh_seconds: float,
        new_per_second: float | None = None,
    ) -> None:
        self.limit = limit
        # registering a sensor costs the processor and detection far more than a reading of
        # a known one (bench/soak.py --noisy-neighbour): new sensors are paced, ten seconds'
        # worth at once
        self.new_rate = (
            RateLimiter(new_per_second, burst=10 * new_per_second) if new_per_second else None
        )
        self.sensors_of = sensors_of
        self.refresh_seconds = refresh_seconds
        self._facilities: dict[str, _Known] = {}
        self._lock = threading.Lock()

    def admit(
        self, facility: str, readings: list[Reading], indexes: list[int]
    ) -> tuple[list[Reading], list[Reject]]:
        """The readings that may go on, and a reject (by the batch index in ``indexes``) for
        each one of a new sensor that does not fit: ``quota_sensors`` past the facility's
        quota, ``quota_new_sensors_rate`` past its new sensors/s (send those again shortly).
        The new sensors that fit count as registered from now on."""
        known = self._known(facility)
        with known.lock:
            unknown = {(r.device, r.metric) for r in readings} - known.sensors
            if unknown and time.monotonic() - known.loaded_at > self.refresh_seconds:
                known.sensors |= self.sensors_of(facility) or set()
                known.loaded_at = time.monotonic()
                unknown -= known.sensors
            if not unknown:
                return readings, []
            room = max(0, self.limit - len(known.sensors))
            candidates = sorted(unknown)[:room]
            granted = (
                self.new_rate.take_up_to(facility, len(candidates))
                if self.new_rate is not None
                else len(candidates)
            )
            fitting = set(candidates[:granted])
            known.sensors |= fitting
        too_fast = set(candidates[granted:])
        if len(fitting) == len(unknown):
            return readings, []
        kept, rejects = [], []
        full = (
            f"facility {facility!r} has reached its quota of {self.limit} sensors; "
            "readings of its registered sensors are still accepted"
        )
        fast = (
            f"facility {facility!r} registers new sensors faster than its quota of "
            f"{self.new_rate.rate if self.new_rate else 0:g}/s; send these readings again shortly"
        )
        for reading, index in zip(readings, indexes, strict=True):
            sensor = (reading.device, reading.metric)
            if sensor in fitting or sensor not in unknown:
                kept.append(reading)
            elif sensor in too_fast:
                rejects.append(Reject(index, ErrorCode.QUOTA_NEW_SENSORS_RATE, fast))
            else:
                rejects.append(Reject(index, ErrorCode.QUOTA_SENSORS, full))
        return kept, rejects

    def _known(self, facility: str) -> _Known:
        with self._lock:
            known = self._facilities.get(facility)
            if known is not None:
                return known
        loaded = _Known(self.sensors_of(facility) or set(), time.monotonic())
        with self._lock:
            return self._facilities.setdefault(facility, loaded)


@dataclass(frozen=True, slots=True)
class IngestQuotas:
    """The quotas the ingest service applies; ``None`` is no quota (the default)."""

    sensors: SensorQuota | None = None
    readings: RateLimiter | None = None  # per facility; one token per reading
    backlog: BacklogGate | None = None  # per facility; readings not yet stored

    @classmethod
    def from_settings(
        cls, settings: Settings, *, pool: ConnectionPool, redis_client: redis.Redis | None = None
    ) -> IngestQuotas:
        """Every quota ``settings`` names, reading registered sensors through ``pool`` and the
        backlog counters through ``redis_client`` (no backlog quota without one).

        Also bounds the facility labels of this process's metrics as ``settings`` say.
        """
        facility_label.limit = settings.metrics_max_facilities

        def sensors_of(facility: str) -> set[tuple[str, str]] | None:
            try:
                with pool.connection(timeout=2) as conn:
                    return facility_sensors(conn, facility=facility)
            except psycopg.Error as exc:
                log.warning("sensor quota: cannot read %r's sensors (%s)", facility, exc)
                return None

        rate = settings.quota_readings_per_second
        return cls(
            sensors=SensorQuota(
                limit=settings.quota_max_sensors_per_facility,
                sensors_of=sensors_of,
                refresh_seconds=settings.quota_sensor_refresh_seconds,
                new_per_second=settings.quota_new_sensors_per_second,
            ),
            # a burst always holds one whole batch, or a full batch could never pass
            readings=RateLimiter(rate, burst=max(2 * rate, settings.max_batch_readings)),
            backlog=backlog_gate(settings, redis_client) if redis_client is not None else None,
        )


def backlog_counters(settings: Settings, client: redis.Redis) -> BacklogCounters:
    """The backlog counters as ``settings`` say: ten windows over the horizon."""
    return BacklogCounters(
        client, window_seconds=settings.quota_backlog_horizon_seconds / 10, horizon_windows=10
    )


def backlog_gate(settings: Settings, client: redis.Redis) -> BacklogGate | None:
    """The backlog quota of ``settings``; None when it is off (``quota_backlog_readings=0``)."""
    if not settings.quota_backlog_readings:
        return None
    return BacklogGate(backlog_counters(settings, client), limit=settings.quota_backlog_readings)
