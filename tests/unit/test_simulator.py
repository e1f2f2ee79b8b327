"""The plant simulator is deterministic, realistic enough, and its faults show."""

from __future__ import annotations

import statistics

from plantstream.model import METRICS
from plantstream.simulate import Fault, FaultKind, Plant

START = 1_780_000_000.0  # a fixed instant keeps the daily cycle comparable between runs


def run(plant: Plant, seconds: int, step: float = 1.0):  # type: ignore[no-untyped-def]
    return [r for s in range(seconds) for r in plant.sample(START + s * step)]


def test_same_seed_same_readings_other_seed_other_readings() -> None:
    first = run(Plant(seed=3), 30)
    again = run(Plant(seed=3), 30)
    other = run(Plant(seed=4), 30)
    assert first == again
    assert [r.value for r in first] != [r.value for r in other]


def test_layout_has_facilities_lines_and_machine_types() -> None:
    plant = Plant(seed=1, facilities=3, machines=8, lines=2)
    assert plant.facilities == ["plant-01", "plant-02", "plant-03"]
    assert len(plant.machines) == 24
    assert {m.kind for m in plant.machines} == {"cnc", "press", "pump", "oven"}
    assert {m.line for m in plant.machines} == {"line-1", "line-2"}


def test_healthy_signals_are_valid_and_noisy() -> None:
    readings = run(Plant(seed=5, facilities=1, machines=4), 120)
    for r in readings:
        spec = METRICS[r.metric]
        assert r.unit == spec.unit
        assert spec.low <= r.value <= spec.high
    temps = [r.value for r in readings if r.device.endswith("cnc-01") and r.metric == "temperature"]
    assert statistics.pstdev(temps) > 0.05


def test_daily_cycle_moves_the_baseline() -> None:
    plant = Plant(seed=5, facilities=1, machines=4)
    device = plant.machines[3].device  # the oven has the widest daily swing

    def mean_at(t0: float) -> float:
        values = [
            r.value
            for s in range(60)
            for r in plant.sample(t0 + s)
            if r.device == device and r.metric == "temperature"
        ]
        return statistics.fmean(values)

    day = 86400.0 * 20_000
    # warmest at noon, coolest at midnight (UTC)
    assert mean_at(day + 12 * 3600) - mean_at(day) > 6.0


def test_production_counter_resets_at_shift_change() -> None:
    plant = Plant(seed=2, facilities=1, machines=1)
    day = 86400.0 * 20_000

    def count_at(t: float) -> float:
        return next(r.value for r in plant.sample(t) if r.metric == "production_count")

    assert count_at(day + 14 * 3600 - 1) > 1000
    assert count_at(day + 14 * 3600 + 1) < 5
    assert count_at(day + 14 * 3600 + 600) > count_at(day + 14 * 3600 + 60)


def test_each_fault_kind_changes_what_the_machine_emits() -> None:
    for kind in FaultKind:
        healthy = Plant(seed=9, facilities=1, machines=4)
        faulty = Plant(seed=9, facilities=1, machines=4)
        faults = faulty.schedule_faults(start=START, duration=600, count=1, kinds=(kind,))
        assert len(faults) == 1
        fault = faults[0]
        assert fault.kind == kind
        window = range(int(fault.start - START) + 1, int(fault.end - START))
        a = [
            r
            for s in window
            for r in healthy.sample(START + s)
            if r.device == fault.device and r.metric == fault.metric
        ]
        b = [
            r
            for s in window
            for r in faulty.sample(START + s)
            if r.device == fault.device and r.metric == fault.metric
        ]
        assert a != b, kind
        if kind is FaultKind.DROPOUT:
            assert b == []
        if kind is FaultKind.STUCK_SENSOR:
            assert len({r.value for r in b}) == 1
        if kind is FaultKind.CLOCK_SKEW:
            assert all(rb.ts - ra.ts == 300.0 for ra, rb in zip(a, b, strict=True))
        if kind in (FaultKind.OVERHEATING, FaultKind.BEARING_WEAR):
            # by the end of the fault the level is well above the healthy one
            tail_a = statistics.fmean(r.value for r in a[-5:])
            tail_b = statistics.fmean(r.value for r in b[-5:])
            assert tail_b > tail_a * 1.1


def test_faults_are_labeled_with_their_place_and_time() -> None:
    plant = Plant(seed=11, facilities=2, machines=6)
    faults = plant.schedule_faults(start=START, duration=3600, count=6)
    assert {f.kind for f in faults} == set(FaultKind)
    assert len({(f.facility, f.device) for f in faults}) == 6
    for f in faults:
        assert START <= f.start < f.end <= START + 3600
        assert isinstance(f, Fault)
        assert f.as_dict()["kind"] == str(f.kind)
