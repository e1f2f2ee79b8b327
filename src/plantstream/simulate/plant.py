"""A deterministic plant: facilities -> lines -> machines with realistic signals and faults.

Signals have a daily cycle, noise, and per-machine offsets; production counters reset at
shift change (06:00, 14:00, 22:00 UTC). Everything derives from one seed.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from plantstream.simulate.faults import FAULT_METRICS, Fault, FaultKind

DAY = 86400.0
SHIFT_HOURS = (6, 14, 22)


@dataclass(frozen=True, slots=True)
class Signal:
    """How one metric of a machine type behaves when healthy."""

    metric: str
    unit: str
    base: float
    daily_amplitude: float
    noise: float
    low: float = -math.inf
    high: float = math.inf


MACHINE_TYPES: dict[str, tuple[Signal, ...]] = {
    "cnc": (
        Signal("temperature", "degC", 45.0, 3.0, 0.3, 0.0, 1200.0),
        Signal("vibration_rms", "mm/s", 2.2, 0.2, 0.08, 0.0, 500.0),
        Signal("spindle_speed", "rpm", 12000.0, 300.0, 40.0, 0.0, 60000.0),
        Signal("current", "A", 32.0, 2.0, 0.6),
        Signal("production_count", "count", 0.0, 0.0, 0.0),
    ),
    "press": (
        Signal("pressure", "bar", 180.0, 5.0, 1.2, 0.0, 1000.0),
        Signal("temperature", "degC", 55.0, 4.0, 0.4, 0.0, 1200.0),
        Signal("vibration_rms", "mm/s", 4.5, 0.3, 0.15, 0.0, 500.0),
        Signal("production_count", "count", 0.0, 0.0, 0.0),
    ),
    "pump": (
        Signal("pressure", "bar", 6.0, 0.3, 0.05, 0.0, 1000.0),
        Signal("flow_rate", "L/min", 420.0, 25.0, 4.0, 0.0, 1e6),
        Signal("vibration_rms", "mm/s", 3.1, 0.2, 0.1, 0.0, 500.0),
        Signal("temperature", "degC", 38.0, 3.5, 0.3, 0.0, 1200.0),
    ),
    "oven": (
        Signal("temperature", "degC", 220.0, 6.0, 0.8, 0.0, 1200.0),
        Signal("power", "kW", 85.0, 8.0, 1.5),
        Signal("humidity", "%RH", 12.0, 2.0, 0.4, 0.0, 100.0),
    ),
}


def stable_seed(*parts: object) -> int:
    """A seed from ``parts`` that is the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(slots=True)
class Machine:
    facility: str
    line: str
    device: str
    kind: str
    parts_per_second: float
    offsets: dict[str, float] = field(default_factory=dict)

    @property
    def signals(self) -> tuple[Signal, ...]:
        return MACHINE_TYPES[self.kind]


@dataclass(frozen=True, slots=True)
class SimReading:
    """What a machine emits at one instant, before it reaches the wire."""

    facility: str
    device: str
    metric: str
    ts: float  # epoch seconds, as the gateway's clock says
    value: float
    unit: str


class Plant:
    """The simulated facilities, their machines and the faults injected into them."""

    def __init__(
        self, *, seed: int = 7, facilities: int = 2, machines: int = 6, lines: int = 2
    ) -> None:
        self.seed = seed
        rng = random.Random(stable_seed(seed, "layout"))
        kinds = list(MACHINE_TYPES)
        self.machines: list[Machine] = []
        for f in range(1, facilities + 1):
            facility = f"plant-{f:02d}"
            for m in range(machines):
                kind = kinds[m % len(kinds)]
                line = f"line-{m % lines + 1}"
                machine = Machine(
                    facility,
                    line,
                    f"{line}-{kind}-{m + 1:02d}",
                    kind,
                    parts_per_second=rng.uniform(0.2, 1.5),
                )
                for signal in machine.signals:
                    machine.offsets[signal.metric] = rng.gauss(0.0, abs(signal.base) * 0.03)
                self.machines.append(machine)
        self.faults: list[Fault] = []
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._stuck: dict[Fault, float] = {}

    @property
    def facilities(self) -> list[str]:
        return sorted({m.facility for m in self.machines})

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    def schedule_faults(
        self, *, start: float, duration: float, count: int, kinds: tuple[FaultKind, ...] = ()
    ) -> list[Fault]:
        """Spread ``count`` faults over the run on distinct machines; return them."""
        rng = random.Random(stable_seed(self.seed, "faults", start, duration, count))
        kinds = kinds or tuple(FaultKind)
        candidates = list(self.machines)
        rng.shuffle(candidates)
        scheduled = []
        for index in range(count):
            kind = kinds[index % len(kinds)]
            machine = next(
                (
                    m
                    for m in candidates
                    if any(s.metric in FAULT_METRICS[kind] for s in m.signals)
                    and not any(
                        (f.facility, f.device) == (m.facility, m.device) for f in self.faults
                    )
                ),
                None,
            )
            if machine is None:
                break
            metric = next(s.metric for s in machine.signals if s.metric in FAULT_METRICS[kind])
            length = min(duration * 0.4, max(60.0, duration * rng.uniform(0.15, 0.3)))
            begin = start + rng.uniform(0.15, 0.95) * (duration - length)
            fault = Fault(kind, machine.facility, machine.device, metric, begin, begin + length)
            self.inject(fault)
            scheduled.append(fault)
        return scheduled

    def _rng(self, device: str, metric: str) -> random.Random:
        key = (device, metric)
        rng = self._rngs.get(key)
        if rng is None:
            rng = self._rngs[key] = random.Random(stable_seed(self.seed, device, metric))
        return rng

    def _healthy(self, machine: Machine, signal: Signal, t: float, rng: random.Random) -> float:
        if signal.metric == "production_count":
            return _production_count(machine, t)
        cycle = math.sin(2.0 * math.pi * ((t % DAY) / DAY - 0.25))
        value = signal.base + machine.offsets[signal.metric] + signal.daily_amplitude * cycle
        return value + rng.gauss(0.0, signal.noise)

    def sample(self, t: float) -> Iterator[SimReading]:
        """Every reading the plant emits at time ``t`` (epoch seconds)."""
        active = [f for f in self.faults if f.active(t)]
        for machine in self.machines:
            for signal in machine.signals:
                rng = self._rng(machine.device, signal.metric)
                value = self._healthy(machine, signal, t, rng)
                ts = t
                emit = True
                for fault in active:
                    if (fault.facility, fault.device, fault.metric) != (
                        machine.facility,
                        machine.device,
                        signal.metric,
                    ):
                        continue
                    value, ts, emit = self._apply(fault, signal, value, t, rng)
                if emit:
                    value = min(max(value, signal.low), signal.high)
                    yield SimReading(
                        machine.facility, machine.device, signal.metric, ts, value, signal.unit
                    )

    def _apply(
        self, fault: Fault, signal: Signal, value: float, t: float, rng: random.Random
    ) -> tuple[float, float, bool]:
        elapsed = t - fault.start
        scale = abs(signal.base) or 1.0
        match fault.kind:
            case FaultKind.OVERHEATING:
                # +0.5 % of base a second (+13 degC a minute on a 45 degC spindle), up to +60 %
                rise = min(0.005 * elapsed, 0.6)
                return value + scale * rise * fault.magnitude, t, True
            case FaultKind.BEARING_WEAR:
                # vibration grows ever faster as the bearing wears, up to four times its level
                growth = min(math.exp(elapsed / 180.0) - 1.0, 12.0)
                return value + scale * 0.25 * growth * fault.magnitude, t, True
            case FaultKind.STUCK_SENSOR:
                frozen = self._stuck.setdefault(fault, round(value, 3))
                return frozen, t, True
            case FaultKind.DROPOUT:
                return value, t, False
            case FaultKind.SPIKE:
                if rng.random() < 0.2:
                    return value + scale * rng.choice((-1.0, 1.0)) * 0.8 * fault.magnitude, t, True
                return value, t, True
            case FaultKind.CLOCK_SKEW:
                return value, t + 300.0 * fault.magnitude, True
        return value, t, True


def _production_count(machine: Machine, t: float) -> float:
    """Parts made since the last shift change: resets to zero at 06:00, 14:00, 22:00 UTC."""
    seconds_of_day = t % DAY
    shift_starts = [h * 3600.0 for h in SHIFT_HOURS]
    since = min((seconds_of_day - s) % DAY for s in shift_starts)
    return float(math.floor(since * machine.parts_per_second))
