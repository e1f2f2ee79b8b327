"""The engine's multivariate step: each watched machine's signals of a batch aligned on
their timestamps, cut into buckets and judged together (``multivariate.py``); alerts go
through the same lifecycle as every other, naming the signals that contribute most."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from plantstream.detect.alerts import AlertEvent, AlertLifecycle
from plantstream.detect.multivariate import (
    KIND,
    FloatArray,
    IntArray,
    MachineModel,
    MachineWatch,
    MultivariateTuning,
    bucket_medians,
)
from plantstream.detect.state import SensorState, Severity
from plantstream.store.sensors import SensorKey


@dataclass(slots=True)
class Machine:
    """A machine watched as a whole: its sensors (in the model's signal order), its model
    trained on a normal period, and how many aligned readings make one bucket."""

    sensors: tuple[SensorKey, ...]
    model: MachineModel
    per_bucket: int = 10
    watch: MachineWatch = field(init=False)
    pending_ts: list[int] = field(default_factory=list)  # a bucket not full yet
    pending: list[list[float]] = field(default_factory=list)
    alert_sensor: SensorKey | None = None  # the sensor the open alert is filed under
    name: tuple[str, str] | None = None  # (facility, machine) of a stored model
    last_us: int = 0  # the last reading judged (a removed model's alert resolves there)

    def __post_init__(self) -> None:
        if len(self.sensors) != len(self.model.signals):
            raise ValueError("a machine's sensors and its model's signals must match")
        self.per_bucket = max(1, self.per_bucket)
        self.watch = MachineWatch(self.model, MultivariateTuning())


class MachineDetection:
    """Multivariate watches of machines, run by the engine after the per-sensor detectors.
    The watches live in this process; ``machine_models.StoredMachines`` keeps them in step
    with the models stored in PostgreSQL."""

    def __init__(self, machines: Sequence[Machine]) -> None:
        self.machines: list[Machine] = []
        self._by_sensor: dict[SensorKey, Machine] = {}
        for machine in machines:
            self.add(machine)

    def add(self, machine: Machine) -> None:
        """Watch one more machine (its sensors must not be another's)."""
        taken = [s for s in machine.sensors if s in self._by_sensor]
        if taken:
            raise ValueError(f"sensor {taken[0]} belongs to another machine already")
        self.machines.append(machine)
        self._by_sensor.update(dict.fromkeys(machine.sensors, machine))

    def remove(self, name: tuple[str, str]) -> Machine | None:
        """Stop watching the machine called ``name``; it, or None if none is."""
        found = next((m for m in self.machines if m.name == name), None)
        if found is not None:
            self.machines.remove(found)
            for sensor in found.sensors:
                del self._by_sensor[sensor]
        return found

    def __call__(
        self,
        columns: tuple[IntArray, FloatArray],
        slices: Sequence[tuple[int, int, int]],
        keys: Mapping[int, SensorKey],
        lifecycle: AlertLifecycle,
    ) -> list[AlertEvent]:
        """Events of every watched machine for one batch (``columns``: ts_us, value)."""
        ts_us, value = columns
        parts: dict[SensorKey, tuple[int, int]] = {}
        for sensor_id, a, b in slices:
            sensor = keys[sensor_id]
            if sensor in self._by_sensor:
                parts[sensor] = (a, b)
        events: list[AlertEvent] = []
        for machine in self.machines:
            if not all(s in parts for s in machine.sensors):
                continue  # a machine is judged on batches that carry all of its signals
            times = [ts_us[slice(*parts[s])] for s in machine.sensors]
            common = times[0]
            for t in times[1:]:
                common = np.intersect1d(common, t, assume_unique=True)
            if not len(common):
                continue
            matrix = np.column_stack(
                [
                    value[slice(*parts[s])][np.searchsorted(t, common)]
                    for s, t in zip(machine.sensors, times, strict=True)
                ]
            )
            events += self._judge(machine, common.astype(np.int64), matrix, lifecycle)
        return events

    def _judge(
        self,
        machine: Machine,
        ts: IntArray,
        matrix: FloatArray,
        lifecycle: AlertLifecycle,
    ) -> list[AlertEvent]:
        if machine.pending:
            ts = np.concatenate([np.array(machine.pending_ts, np.int64), ts])
            matrix = np.vstack([np.array(machine.pending), matrix])
        k = machine.per_bucket
        full = (len(ts) // k) * k
        machine.pending_ts = ts[full:].tolist()
        machine.pending = matrix[full:].tolist()
        if not full:
            return []
        machine.last_us = int(ts[full - 1])
        first = machine.watch.seen
        medians = bucket_medians(matrix[:full], k)
        events: list[AlertEvent] = []
        for event, number, finding in machine.watch.judge(medians):
            i = number - first
            start, end = int(ts[i * k]), int(ts[i * k + k - 1])
            if event == "opened" and finding is not None:
                top = finding.contributing[0][0] if finding.contributing else None
                sensor = machine.sensors[machine.model.signals.index(top)] if top else None
                machine.alert_sensor = sensor or machine.sensors[0]
                named = ", ".join(f"{s} {w:.0%}" for s, w in finding.contributing)
                events += lifecycle.open(
                    machine.alert_sensor,
                    sensor_id=None,
                    kind=KIND,
                    severity=Severity.WARNING,
                    message=f"signals off together (T^2 {finding.t2:.3g}, Q {finding.q:.3g}): "
                    f"{named}",
                    at_us=end,
                    details={
                        "window": {"from_us": start, "to_us": end, "readings": k},
                        **finding.evidence(machine.model),
                    },
                )
            elif event == "resolved" and machine.alert_sensor is not None:
                events += lifecycle.resolve(machine.alert_sensor, SensorState(), KIND, end)
                machine.alert_sensor = None
        return events


__all__ = ["Machine", "MachineDetection"]
