"""Dropouts, one rule: a sensor silent past its usual gaps many times over has a ``dropout``
alert from the moment it became overdue until its readings come back."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from plantstream.detect.alerts import AlertEvent, AlertLifecycle
from plantstream.detect.buckets import Bucket
from plantstream.detect.config import SensorLimits, Tuning
from plantstream.detect.state import SensorState, Severity, decode
from plantstream.store.detection_state import DetectionStateStore, field, split_field
from plantstream.store.sensors import SensorKey

KIND = "dropout"
DETECTOR = "missing"  # the switch that turns dropouts off in a rule's ``disabled``


def allowed_gap_us(state: SensorState, tuning: Tuning) -> int:
    """The longest silence that is still normal for this sensor."""
    return int(max(state.interval_us * tuning.missing_intervals, tuning.missing_min_seconds * 1e6))


def shortest_silence_us(tuning: Tuning) -> int:
    """No silence this long or shorter is a dropout, whatever the sensor's usual gap (the
    engine skips the rule for the many readings that follow shorter gaps)."""
    return int(tuning.missing_min_seconds * 1e6)


def overdue_at(
    state: SensorState, *, now_us: int, tuning: Tuning, heard_us: int | None = None
) -> int | None:
    """When the sensor became overdue, if it is overdue at ``now_us``; else None.

    ``heard_us`` is when it was last heard (default ``seen_us``, its newest reading's own
    time); a sensor still warming up, or never heard, is never overdue.
    """
    if state.seen_us < 0 or state.n < tuning.warmup_buckets:
        return None
    due = (state.seen_us if heard_us is None else heard_us) + allowed_gap_us(state, tuning)
    return due if now_us > due else None


@dataclass(frozen=True, slots=True)
class Silence:
    due_us: int  # when the silence became a dropout
    silent_s: float  # how long it had lasted when noticed


def silence(
    state: SensorState,
    limits: SensorLimits,
    *,
    now_us: int,
    tuning: Tuning,
    heard_us: int | None = None,
) -> Silence | None:
    """The dropout rule: this sensor's silence up to ``now_us``, if it is a dropout."""
    # a skewed clock explains the gap: its readings repeat times already stored
    if DETECTOR in limits.disabled or "clock_skew" in state.active:
        return None
    due = overdue_at(state, now_us=now_us, tuning=tuning, heard_us=heard_us)
    if due is None:
        return None
    heard = state.seen_us if heard_us is None else heard_us
    return Silence(due, (now_us - heard) / 1e6)


class Dropouts:
    """Opens and resolves dropout alerts; flags in the state store mark the open ones of
    sensors whose state another processor may own.

    Silence makes no buckets, so the rule is applied from three vantage points that differ
    only in which sensors they look at and whose clock says "now": a gap inside a batch (a
    backlog: ``gap``), a device's metric quiet while its others report (``quiet_metrics``),
    and whole devices quiet on the facility's clock (``sweep``).
    """

    def __init__(
        self,
        lifecycle: AlertLifecycle,
        store: DetectionStateStore,
        limits: Callable[[str, str, str], SensorLimits],
    ) -> None:
        self.lifecycle = lifecycle
        self.store = store
        self.limits = limits
        self._swept: dict[str, float] = {}  # when this process last swept each facility

    def gap(
        self, sensor: SensorKey, state: SensorState, bucket: Bucket, tuning: Tuning
    ) -> list[AlertEvent]:
        """A silence just before ``bucket`` (a backlog arrived in one batch): the dropout is
        opened when it became overdue and resolved as the readings came back."""
        # in true time: a device clock jumping ahead is not a silence
        found = silence(
            state,
            self.limits(*sensor),
            now_us=bucket.first_ts_us - max(0, bucket.max_ahead_us),
            heard_us=state.seen_us - state.ahead_us,
            tuning=tuning,
        )
        if found is None:
            return []
        events = self._open(sensor, found)
        return events + self.lifecycle.resolve(sensor, state, KIND, bucket.first_ts_us)

    def returned(self, sensor: SensorKey, state: SensorState, at_us: int) -> list[AlertEvent]:
        """The sensor is heard again: its open dropout is over."""
        return self.lifecycle.resolve(sensor, state, KIND, at_us)

    def quiet_metrics(
        self,
        device_clocks: Mapping[tuple[str, str], int],
        known: Mapping[tuple[str, str], set[str]],
        present: set[SensorKey],
        tuning: Tuning,
    ) -> list[AlertEvent]:
        """Metrics of the batch's devices that sent nothing while the device's others did.

        A device's metrics travel together (one partition key), so the device's own clock
        judges them, whatever other shards are doing. ``known``: each device's metrics.
        """
        by_facility: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for (facility, device), clock in device_clocks.items():
            for metric in known.get((facility, device), ()):
                if (facility, device, metric) not in present:
                    by_facility[facility].append((field(device, metric), clock))
        events: list[AlertEvent] = []
        for facility, candidates in by_facility.items():
            peeked = self.store.peek(facility, [name for name, _ in candidates])
            due = []
            for (name, clock), (packed, flag) in zip(candidates, peeked, strict=True):
                state = None if packed is None or flag else decode(packed)
                if state is not None:
                    due.append((name, state, clock))
            events += self.overdue(facility, due, tuning)
        return events

    def sweep(self, facility: str, *, now_us: int, tuning: Tuning) -> list[AlertEvent]:
        """Dropouts for whole devices of the facility quiet at its data clock ``now_us``.

        Only while the data is live (a backlog's shards run at different paces, so every
        device would look silent to the others); at most every ``bucket_seconds`` of wall
        time, and in one processor at a time.
        """
        silence_us = tuning.device_silence_seconds * 1e6
        if time.time() * 1e6 - now_us > silence_us:
            return []
        if time.monotonic() - self._swept.get(facility, -1e9) < tuning.bucket_seconds:
            return []
        self._swept[facility] = time.monotonic()
        packed = self.store.claim_sweep(facility, hold_ms=int(tuning.bucket_seconds * 1000))
        if packed is None:
            return []  # another processor is sweeping this facility
        states = {name: s for name, value in packed.items() if (s := decode(value)) is not None}
        device_clock: dict[str, int] = {}
        for name, state in states.items():
            device = split_field(name)[0]
            true_last = state.seen_us - state.ahead_us  # a skewed clock must not lead
            device_clock[device] = max(device_clock.get(device, -1), true_last)
        quiet = {device for device, clock in device_clock.items() if now_us - clock > silence_us}
        candidates = [
            (name, state, now_us) for name, state in states.items() if split_field(name)[0] in quiet
        ]
        return self.overdue(facility, candidates, tuning)

    def overdue(
        self, facility: str, candidates: Iterable[tuple[str, SensorState, int]], tuning: Tuning
    ) -> list[AlertEvent]:
        """Open dropouts for the (field, state, clock) candidates silent at their clock, and
        flag them so their own processor resolves them when they return."""
        events: list[AlertEvent] = []
        newly: list[str] = []
        with self.lifecycle.transaction():
            for name, state, clock in candidates:
                device, metric = split_field(name)
                sensor = (facility, device, metric)
                found = silence(state, self.limits(*sensor), now_us=clock, tuning=tuning)
                if found is not None:
                    events += self._open(sensor, found)
                    newly.append(name)
        # flagged once the alerts are committed: a flag must not point at no alert
        self.store.flag(facility, newly)
        return events

    def _open(self, sensor: SensorKey, found: Silence) -> list[AlertEvent]:
        _, device, metric = sensor
        return self.lifecycle.open(
            sensor,
            sensor_id=None,
            kind=KIND,
            severity=Severity.WARNING,
            message=f"no {metric} from {device} for {found.silent_s:.0f} s",
            at_us=found.due_us,
            details={"detector": DETECTOR, "silent_s": found.silent_s},
        )


__all__ = [
    "DETECTOR",
    "KIND",
    "Dropouts",
    "Silence",
    "allowed_gap_us",
    "overdue_at",
    "shortest_silence_us",
    "silence",
]
