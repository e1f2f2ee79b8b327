"""The alert lifecycle, one way through it: a fault opens an alert, goes on (touching it) and
resolves it; PostgreSQL first, then the sensor's typed state, then one event per change."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from redis.cluster import RedisCluster

from plantstream.detect.buckets import Bucket
from plantstream.detect.registry import Finding
from plantstream.detect.state import ActiveAlert, SensorState, Severity
from plantstream.model import from_epoch_us
from plantstream.store import alerts as store
from plantstream.store.alerts import feed_key
from plantstream.store.sensors import SensorKey

TOUCH_EVERY_US = 30_000_000  # how often an alert that goes on moves its ``last_seen_at``


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert opened or resolved, as pushed to the feed and the webhook."""

    event: str  # opened | resolved
    alert_id: int
    facility: str
    device: str
    metric: str
    kind: str
    severity: str
    message: str
    at_us: int
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "id": self.alert_id,
            "facility": self.facility,
            "device": self.device,
            "metric": self.metric,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "at": from_epoch_us(self.at_us).isoformat().replace("+00:00", "Z"),
            "details": self.details,
        }


class AlertLifecycle:
    """Opens, touches and resolves alerts over the connection ``connection()`` gives."""

    def __init__(self, connection: Callable[[], psycopg.Connection]) -> None:
        self._connection = connection

    def transaction(self) -> AbstractContextManager[psycopg.Transaction]:
        """One PostgreSQL transaction around several changes."""
        return self._connection().transaction()

    def open(
        self,
        sensor: SensorKey,
        *,
        sensor_id: int | None,
        kind: str,
        severity: Severity,
        message: str,
        at_us: int,
        details: dict[str, Any],
    ) -> list[AlertEvent]:
        """Open the alert of this sensor and kind; its event if it is new (not a replay)."""
        facility, device, metric = sensor
        alert_id, new = store.open_alert(
            conn=self._connection(),
            facility=facility,
            device=device,
            metric=metric,
            sensor_id=sensor_id,
            kind=kind,
            severity=severity.value,
            message=message,
            at_us=at_us,
            details=details,
        )
        if not new:
            return []
        event = AlertEvent(
            "opened", alert_id, *sensor, kind, severity.value, message, at_us, details
        )
        return [event]

    def resolve(
        self, sensor: SensorKey, state: SensorState, kind: str, at_us: int
    ) -> list[AlertEvent]:
        """Resolve the sensor's alert of this kind (if one is open); its event."""
        state.active.pop(kind, None)
        facility, device, metric = sensor
        alert_id = store.resolve_alert(
            conn=self._connection(),
            facility=facility,
            device=device,
            metric=metric,
            kind=kind,
            at_us=at_us,
        )
        if alert_id is None:
            return []
        message = f"{kind} on {device} {metric} is over"
        return [AlertEvent("resolved", alert_id, *sensor, kind, "info", message, at_us, {})]

    def apply(
        self,
        sensor: SensorKey,
        sensor_id: int,
        state: SensorState,
        findings: list[Finding],
        bucket: Bucket,
        *,
        clear_buckets: int,
    ) -> list[AlertEvent]:
        """Move the sensor's alerts on by one judged bucket: open what is new, touch what
        goes on, resolve what stayed normal ``clear_buckets`` buckets in a row."""
        if not findings and not state.active:  # the usual bucket: nothing to move on
            return []
        events: list[AlertEvent] = []
        found: dict[str, Finding] = {}
        for finding in findings:
            # several detectors may see one fault: the first (most direct) one names it
            found.setdefault(finding.kind, finding)
        # in true time: a clock that runs ahead must not date the alert in the future
        at = bucket.last_ts_us - max(0, bucket.max_ahead_us)
        for kind, finding in found.items():
            active = state.active.get(kind)
            if active is None:
                events += self.open(
                    sensor,
                    sensor_id=sensor_id,
                    kind=kind,
                    severity=finding.severity,
                    message=finding.message,
                    at_us=at,
                    details={
                        "detector": finding.detector,
                        "value": finding.value,
                        "bucket_start": bucket.start_us,
                        # the evidence: the window judged, and what the verdict rests on
                        "window": {
                            "from_us": bucket.first_ts_us,
                            "to_us": bucket.last_ts_us,
                            "readings": bucket.count,
                            "median": bucket.median,
                            "min": bucket.min,
                            "max": bucket.max,
                        },
                        **finding.evidence,
                    },
                )
                state.active[kind] = ActiveAlert(finding.detector, finding.severity, 0, at)
                continue
            active.quiet = 0
            escalates = (
                finding.severity is Severity.CRITICAL and active.severity is not Severity.CRITICAL
            )
            if escalates or at - active.touched_us > TOUCH_EVERY_US:
                facility, device, metric = sensor
                store.touch_alert(
                    conn=self._connection(),
                    facility=facility,
                    device=device,
                    metric=metric,
                    kind=kind,
                    at_us=at,
                    severity=finding.severity.value,
                )
                active.severity = max(active.severity, finding.severity, key=_rank)
                active.touched_us = at
        # a dropout ends when readings come back, not with normal buckets
        for kind in [k for k in state.active if k not in found and k != "dropout"]:
            active = state.active[kind]
            active.quiet += 1
            if active.quiet >= clear_buckets:
                if active.detector == "cusum":
                    state.cusum_hi = state.cusum_lo = 0.0  # the drift is over: sums start anew
                events += self.resolve(sensor, state, kind, at)
        return events


def _rank(severity: Severity) -> int:
    return severity.rank


def publish(client: redis.Redis | RedisCluster, events: list[AlertEvent]) -> None:
    """Push events to each facility's alert feed (a capped Redis stream)."""
    store.publish(client=client, events=((e.facility, e.as_dict()) for e in events))


__all__ = ["AlertEvent", "AlertLifecycle", "feed_key", "publish"]
