"""The detection engine: the processor's batch hook that turns stored readings into alerts.

Per batch: readings -> time buckets per sensor -> detectors (state loaded from Redis, or
rebuilt from PostgreSQL rollups when Redis lost it) -> alert transitions in PostgreSQL ->
state back to Redis -> events to the feed and the webhook. Silence is found by a sweep over
each facility's sensors against the facility's data clock, by one processor at a time.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import psycopg
import redis

from plantstream.detect import alerts
from plantstream.detect.alerts import AlertEvent
from plantstream.detect.buckets import Bucket, make_buckets
from plantstream.detect.config import DetectionConfig, SensorLimits, current_config, limits_for
from plantstream.detect.detectors import (
    Finding,
    SensorState,
    allowed_gap_us,
    evaluate,
    overdue_at,
)
from plantstream.model import to_epoch_us
from plantstream.processor.rows import Columns
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)

_SEP = "\x1f"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SensorState)
# KEYS[1] = clock; ARGV[1] = ts: the facility's data clock only moves forward
_ADVANCE = """
local current = redis.call('GET', KEYS[1]) or '-1'
if tonumber(ARGV[1]) > tonumber(current) then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return current
"""


def state_key(facility: str) -> str:
    return f"ps:detect:{facility}"


def missing_key(facility: str) -> str:
    return f"ps:missing:{facility}"


def clock_key(facility: str) -> str:
    return f"ps:clock:{facility}"


class DetectionEngine:
    """A ``BatchHook``: call it with each batch of newly stored rows."""

    def __init__(
        self,
        *,
        database_url: str,
        redis_client: redis.Redis,
        notify: Callable[[list[AlertEvent]], None] | None = None,
        config_refresh_s: float = 10.0,
        connect: Callable[[str], psycopg.Connection] | None = None,
    ) -> None:
        self.database_url = database_url
        self.redis = redis_client
        self.notify = notify
        self.config_refresh_s = config_refresh_s
        self._connect = connect or (lambda url: psycopg.connect(url, autocommit=True))
        self._conn: psycopg.Connection | None = None
        self._config: tuple[int, DetectionConfig] = (0, DetectionConfig())
        self._config_at = -1e9
        self._limits: dict[tuple[str, str, str], SensorLimits] = {}
        self._advance = redis_client.register_script(_ADVANCE)
        self._swept: dict[str, float] = {}
        self._device_metrics: dict[tuple[str, str], set[str]] = {}
        self.events: list[AlertEvent] = []  # the last batch's, for callers that look

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(self.database_url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @property
    def config(self) -> DetectionConfig:
        if time.monotonic() - self._config_at > self.config_refresh_s:
            version, config = current_config(self.conn)
            if version != self._config[0]:
                log.info("detection settings version %d in force", version)
                self._limits.clear()
            self._config = (version, config)
            self._config_at = time.monotonic()
        return self._config[1]

    def limits(self, facility: str, device: str, metric: str) -> SensorLimits:
        key = (facility, device, metric)
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = limits_for(self.config, facility, device, metric)
        return found

    # -- the hook ---------------------------------------------------------------------

    def __call__(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        config = self.config
        tuning = config.tuning
        buckets = make_buckets(
            rows.sensor_id,
            rows.ts_us,
            rows.value,
            rows.received_us,
            bucket_us=int(tuning.bucket_seconds * 1e6),
        )
        by_sensor: dict[int, list[Bucket]] = defaultdict(list)
        for bucket in buckets:
            by_sensor[bucket.sensor_id].append(bucket)
        states = self._load_states(
            {sid: keys[sid] for sid in by_sensor},
            before={sid: b[0].start_us for sid, b in by_sensor.items()},
        )
        events: list[AlertEvent] = []
        clocks: dict[str, int] = {}
        device_clocks: dict[tuple[str, str], int] = {}
        present: set[SensorKey] = set()
        with self.conn.transaction():
            missing = self._missing_flags({keys[sid] for sid in by_sensor})
            for sensor_id, sensor_buckets in by_sensor.items():
                facility, device, metric = keys[sensor_id]
                state = states[sensor_id]
                if (facility, device, metric) in missing:
                    events += self._resolve(
                        facility, device, metric, state, "dropout", sensor_buckets[0].first_ts_us
                    )
                for incoming in sensor_buckets:
                    # bucket by bucket: a silence inside a large (backlog) batch is judged with
                    # what the detectors knew at that moment
                    if (facility, device, metric) not in missing:
                        events += self._gap(facility, device, metric, state, incoming)
                    for bucket in self._complete(state, [incoming]):
                        findings = evaluate(
                            state,
                            bucket,
                            metric=metric,
                            limits=self.limits(facility, device, metric),
                            tuning=tuning,
                        )
                        events += self._transitions(
                            facility, device, metric, sensor_id, state, findings, bucket
                        )
                last = sensor_buckets[-1]
                # true time: a gateway clock running ahead must not drag the facility's along
                true_last = last.last_ts_us - max(0, last.max_ahead_us)
                clocks[facility] = max(clocks.get(facility, -1), true_last)
                device_clocks[(facility, device)] = max(
                    device_clocks.get((facility, device), -1), true_last
                )
                self._device_metrics.setdefault((facility, device), set()).add(metric)
                present.add((facility, device, metric))
        self._save_states(states, keys)
        if missing:
            with self.redis.pipeline(transaction=False) as pipe:
                for facility, device, metric in missing:
                    pipe.hdel(missing_key(facility), f"{device}{_SEP}{metric}")
                pipe.execute()
        events += self._silent_metrics(device_clocks, present)
        for facility, ts in clocks.items():
            now = int(self._advance(keys=[clock_key(facility)], args=[ts]))
            events += self.sweep_missing(facility, now_us=now)
        self._emit(events)

    def _gap(
        self, facility: str, device: str, metric: str, state: SensorState, bucket: Bucket
    ) -> list[AlertEvent]:
        """A silence before ``bucket`` (seen when a backlog arrives in one batch) is a dropout,
        opened when it became overdue and resolved when the readings came back."""
        tuning = self.config.tuning
        # in true time: a device clock jumping ahead is not a silence
        seen = state.seen_us - state.ahead_us
        first = bucket.first_ts_us - max(0, bucket.max_ahead_us)
        if (
            state.n < tuning.warmup_buckets
            or state.seen_us < 0
            or first - seen <= allowed_gap_us(state, tuning)
            or "missing" in self.limits(facility, device, metric).disabled
            or "clock_skew" in state.active
        ):
            return []
        due = seen + allowed_gap_us(state, tuning)
        events = self._open_dropout(
            facility, device, metric, at_us=due, silent_s=(first - seen) / 1e6
        )
        return events + self._resolve(
            facility, device, metric, state, "dropout", bucket.first_ts_us
        )

    def _complete(self, state: SensorState, buckets: list[Bucket]) -> list[Bucket]:
        """Buckets now complete, in order; the newest stays open for more readings."""
        done: list[Bucket] = []
        for bucket in buckets:
            state.seen_us = max(state.seen_us, bucket.last_ts_us)
            state.ahead_us = max(0, bucket.max_ahead_us)
            if bucket.start_us <= state.last_bucket_us:
                continue  # already judged: a replay, or data too late to matter here
            current = state.open_bucket
            if current is None or bucket.start_us > current.start_us:
                if current is not None:
                    done.append(current)
                state.open_bucket = bucket
            elif bucket.start_us == current.start_us and bucket.first_ts_us > current.last_ts_us:
                state.open_bucket = current.merge(bucket)
        return done

    def _transitions(
        self,
        facility: str,
        device: str,
        metric: str,
        sensor_id: int,
        state: SensorState,
        findings: list[Finding],
        bucket: Bucket,
    ) -> list[AlertEvent]:
        events = []
        found: dict[str, Finding] = {}
        for finding in findings:
            # several detectors may see one fault: the first (most direct) one names it
            found.setdefault(finding.kind, finding)
        # in true time: a clock that runs ahead must not date the alert in the future
        at = bucket.last_ts_us - max(0, bucket.max_ahead_us)
        for kind, finding in found.items():
            entry = state.active.get(kind)
            if entry is None:
                events += self._open(
                    facility,
                    device,
                    metric,
                    sensor_id=sensor_id,
                    kind=kind,
                    severity=finding.severity,
                    message=finding.message,
                    at_us=at,
                    details={
                        "detector": finding.detector,
                        "value": finding.value,
                        "bucket_start": bucket.start_us,
                    },
                )
                state.active[kind] = [finding.detector, finding.severity, 0, at]
            else:
                entry[2] = 0
                if finding.severity == "critical" != entry[1] or at - _as_int(entry[3]) > 30e6:
                    alerts.touch_alert(
                        self.conn,
                        facility=facility,
                        device=device,
                        metric=metric,
                        kind=kind,
                        at_us=at,
                        severity=finding.severity,
                    )
                    entry[1], entry[3] = max(entry[1], finding.severity, key=_rank), at
        clear = self.config.tuning.clear_buckets
        for kind in [k for k in state.active if k not in found and k != "dropout"]:
            entry = state.active[kind]
            entry[2] = _as_int(entry[2]) + 1
            if _as_int(entry[2]) >= clear:
                events += self._resolve(facility, device, metric, state, kind, at)
        return events

    def _resolve(
        self, facility: str, device: str, metric: str, state: SensorState, kind: str, at: int
    ) -> list[AlertEvent]:
        state.active.pop(kind, None)
        alert_id = alerts.resolve_alert(
            self.conn, facility=facility, device=device, metric=metric, kind=kind, at_us=at
        )
        if alert_id is None:
            return []
        return [
            AlertEvent(
                "resolved",
                alert_id,
                facility,
                device,
                metric,
                kind,
                "info",
                f"{kind} on {device} {metric} is over",
                at,
                {},
            )
        ]

    # -- silence ----------------------------------------------------------------------

    def _silent_metrics(
        self, device_clocks: dict[tuple[str, str], int], present: set[SensorKey]
    ) -> list[AlertEvent]:
        """Metrics of the batch's devices that sent nothing while the device's others did.

        A device's metrics travel together (one partition key), so the device's own clock
        judges them, whatever other shards are doing.
        """
        by_facility: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for (facility, device), clock in device_clocks.items():
            for metric in self._device_metrics.get((facility, device), ()):
                if (facility, device, metric) not in present:
                    by_facility[facility].append((f"{device}{_SEP}{metric}", clock))
        events: list[AlertEvent] = []
        for facility, candidates in by_facility.items():
            packed: list[bytes | None] = self.redis.hmget(  # type: ignore[assignment]
                state_key(facility), [name for name, _ in candidates]
            )
            flagged = self.redis.hmget(missing_key(facility), [name for name, _ in candidates])
            due = [
                (name, _decoder.decode(value), clock)
                for (name, clock), value, flag in zip(candidates, packed, flagged, strict=True)
                if value is not None and not flag
            ]
            events += self._open_dropouts(facility, due)
        return events

    def _open_dropouts(
        self, facility: str, candidates: list[tuple[str, SensorState, int]]
    ) -> list[AlertEvent]:
        """Open ``dropout`` alerts for the candidates overdue at their clock."""
        tuning = self.config.tuning
        events: list[AlertEvent] = []
        newly: dict[str | bytes, str | bytes] = {}
        with self.conn.transaction():
            for name, state, clock in candidates:
                due = overdue_at(state, now_us=clock, tuning=tuning)
                # a skewed clock explains the gap: its readings repeat times already stored
                if due is None or "clock_skew" in state.active:
                    continue
                device, _, metric = name.partition(_SEP)
                if "missing" in self.limits(facility, device, metric).disabled:
                    continue
                events += self._open_dropout(
                    facility, device, metric, at_us=due, silent_s=(clock - state.seen_us) / 1e6
                )
                newly[name] = "1"
        if newly:
            self.redis.hset(missing_key(facility), mapping=newly)  # type: ignore[arg-type]
        return events

    def _open_dropout(
        self, facility: str, device: str, metric: str, *, at_us: int, silent_s: float
    ) -> list[AlertEvent]:
        return self._open(
            facility,
            device,
            metric,
            sensor_id=None,
            kind="dropout",
            severity="warning",
            message=f"no {metric} from {device} for {silent_s:.0f} s",
            at_us=at_us,
            details={"detector": "missing", "silent_s": silent_s},
        )

    def _open(
        self,
        facility: str,
        device: str,
        metric: str,
        *,
        sensor_id: int | None,
        kind: str,
        severity: str,
        message: str,
        at_us: int,
        details: dict[str, Any],
    ) -> list[AlertEvent]:
        """Open the alert of this sensor and kind; its event if it is new (not a replay)."""
        alert_id, new = alerts.open_alert(
            self.conn,
            facility=facility,
            device=device,
            metric=metric,
            sensor_id=sensor_id,
            kind=kind,
            severity=severity,
            message=message,
            at_us=at_us,
            details=details,
        )
        if not new:
            return []
        return [
            AlertEvent(
                "opened",
                alert_id,
                facility,
                device,
                metric,
                kind,
                severity,
                message,
                at_us,
                details,
            )
        ]

    def sweep_missing(self, facility: str, *, now_us: int) -> list[AlertEvent]:
        """Open ``dropout`` alerts for whole devices of the facility that went quiet.

        Only while the data is live (a backlog's shards run at different paces, so every
        device would look silent to the others); at most every ``bucket_seconds`` of wall
        time, and in one processor at a time.
        """
        tuning = self.config.tuning
        silence_us = tuning.device_silence_seconds * 1e6
        if time.time() * 1e6 - now_us > silence_us:
            return []
        if time.monotonic() - self._swept.get(facility, -1e9) < tuning.bucket_seconds:
            return []
        self._swept[facility] = time.monotonic()
        if not self.redis.set(
            f"ps:sweep:{facility}", "1", nx=True, px=int(tuning.bucket_seconds * 1000)
        ):
            return []  # another processor is sweeping this facility
        raw: dict[bytes, bytes] = self.redis.hgetall(state_key(facility))  # type: ignore[assignment]
        flagged: dict[bytes, bytes] = self.redis.hgetall(missing_key(facility))  # type: ignore[assignment]
        states = {
            key.decode(): _decoder.decode(packed)
            for key, packed in raw.items()
            if key not in flagged
        }
        device_clock: dict[str, int] = {}
        for name, state in states.items():
            device = name.partition(_SEP)[0]
            true_last = state.seen_us - state.ahead_us  # a skewed clock must not lead
            device_clock[device] = max(device_clock.get(device, -1), true_last)
        quiet = {device for device, clock in device_clock.items() if now_us - clock > silence_us}
        return self._open_dropouts(
            facility,
            [
                (name, state, now_us)
                for name, state in states.items()
                if name.partition(_SEP)[0] in quiet
            ],
        )

    def _missing_flags(self, sensors: set[SensorKey]) -> set[SensorKey]:
        by_facility: dict[str, list[SensorKey]] = defaultdict(list)
        for key in sensors:
            by_facility[key[0]].append(key)
        flagged: set[SensorKey] = set()
        for facility, keys in by_facility.items():
            values = self.redis.hmget(missing_key(facility), [f"{d}{_SEP}{m}" for _, d, m in keys])
            flagged |= {key for key, value in zip(keys, values, strict=True) if value}
        return flagged

    # -- state ------------------------------------------------------------------------

    def _load_states(
        self, sensors: Mapping[int, SensorKey], *, before: Mapping[int, int]
    ) -> dict[int, SensorState]:
        ids = list(sensors)
        with self.redis.pipeline(transaction=False) as pipe:
            for sensor_id in ids:
                facility, device, metric = sensors[sensor_id]
                pipe.hget(state_key(facility), f"{device}{_SEP}{metric}")
            packed = pipe.execute()
        states: dict[int, SensorState] = {}
        lost = []
        for sensor_id, value in zip(ids, packed, strict=True):
            if value is None:
                lost.append(sensor_id)
            else:
                states[sensor_id] = _decoder.decode(value)
        if lost:
            states.update(self._rebuild(lost, sensors, before))
        return states

    def _rebuild(
        self, ids: list[int], sensors: Mapping[int, SensorKey], before: Mapping[int, int]
    ) -> dict[int, SensorState]:
        """States for sensors Redis does not know: learned again from the hour of 1-minute
        rollups before this batch (the batch itself is already in them: it must not teach its
        own faults), with the alerts still open in PostgreSQL."""
        tuning = self.config.tuning
        open_alerts = {
            sensor_id: alerts.unresolved_kinds(self.conn, *sensors[sensor_id]) for sensor_id in ids
        }
        cutoff = {  # nor may the time of a fault still open teach the baseline
            sensor_id: min(
                [before[sensor_id]]
                + [to_epoch_us(opened) for _, _, opened in open_alerts[sensor_id]]
            )
            for sensor_id in ids
        }
        rows = self.conn.execute(
            """
            WITH cut AS (
                SELECT * FROM unnest(%s::int[], %s::bigint[]) AS c (sensor_id, before_us)
            ), recent AS (
                SELECT r.sensor_id, r.bucket, r.count, r.sum, r.sum_sq, r.last_ts,
                       max(r.bucket) OVER (PARTITION BY r.sensor_id) AS newest
                FROM rollup_1m r JOIN cut USING (sensor_id)
                WHERE r.bucket + interval '1 minute'
                      <= to_timestamp(cut.before_us / 1e6::double precision)
            )
            SELECT sensor_id, count(*), sum(sum) / sum(count),
                   coalesce(var_pop(sum / count), 0),
                   avg(greatest(sum_sq / count - (sum / count) ^ 2, 0)),
                   (extract(epoch FROM max(last_ts)) * 1e6)::bigint,
                   sum(count)
            FROM recent WHERE bucket > newest - interval '1 hour'
            GROUP BY sensor_id
            """,
            (ids, [cutoff[i] for i in ids]),
        ).fetchall()
        states = {sensor_id: SensorState() for sensor_id in ids}
        for sensor_id, minutes, mean, var_means, var_raw, last_ts, count in rows:
            state = states[sensor_id]
            state.n = min(int(minutes) * 6, tuning.warmup_buckets * 2)
            state.base = state.fast = float(mean)
            state.base_var = float(var_means)
            state.raw_var = float(var_raw or 0.0)
            state.last_ts_us = int(last_ts)  # seen_us stays unknown: no gap across a rebuild
            if int(count) > 1 and int(minutes) > 0:
                state.interval_us = 60e6 * int(minutes) / int(count)
        for sensor_id, unresolved in open_alerts.items():
            for kind, severity, _ in unresolved:
                states[sensor_id].active[kind] = [kind, severity, 0, 0]
        return states

    def _save_states(self, states: dict[int, SensorState], keys: Mapping[int, SensorKey]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for sensor_id, state in states.items():
                facility, device, metric = keys[sensor_id]
                pipe.hset(state_key(facility), f"{device}{_SEP}{metric}", _encoder.encode(state))
            pipe.execute()

    def _emit(self, events: list[AlertEvent]) -> None:
        self.events = events
        if not events:
            return
        alerts.publish(self.redis, events)
        if self.notify is not None:
            self.notify(events)


def _as_int(value: object) -> int:
    return int(value) if isinstance(value, int | float | str) else 0


def _rank(severity: object) -> int:
    return {"info": 0, "warning": 1, "critical": 2}.get(str(severity), 0)


__all__ = ["DetectionEngine"]
