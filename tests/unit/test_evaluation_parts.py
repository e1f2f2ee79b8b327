"""The evaluation tool's parts: labeled CSVs in, honest scores out; buckets that follow a
signal's own sampling rate, whatever the phase or the batching."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from plantstream.detect.buckets import Bucket
from plantstream.detect.config import DetectionConfig, Rule, SensorLimits, Tuning, limits_for
from plantstream.detect.detectors import evaluate, fault_kind
from plantstream.detect.evaluate.dataset import load_csv
from plantstream.detect.evaluate.scoring import Alarm, score
from plantstream.detect.evaluate.simulated import score_simulated
from plantstream.detect.feed import feed
from plantstream.detect.state import ActiveAlert, SensorState, Severity
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.simulate.faults import Fault, FaultKind

MINUTE = 60_000_000


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_labels_from_a_column_with_semicolons(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "run.csv",
        "datetime;a;b;anomaly;changepoint\n"
        + "".join(f"2020-03-09 10:00:{s:02d};{s};1.5;{int(3 <= s <= 5)};0\n" for s in range(10)),
    )
    series = load_csv(csv, label_column="anomaly", ignore=("changepoint",), train_rows=2)
    assert series.columns == ("a", "b")
    assert series.labels.tolist() == [3 <= s <= 5 for s in range(10)]
    assert len(series.windows) == 1
    assert series.interval_s == 1.0
    assert series.train_rows == 2


def test_labels_from_nab_windows(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "m.csv",
        "timestamp,value\n" + "".join(f"2014-01-01 00:{m:02d}:00,{m}\n" for m in range(0, 60, 5)),
    )
    windows = write(
        tmp_path / "w.json",
        json.dumps(
            {"realKnownCause/m.csv": [["2014-01-01 00:10:00.000000", "2014-01-01 00:20:00"]]}
        ),
    )
    series = load_csv(csv, windows=windows)
    assert series.labels.sum() == 3  # 10, 15, 20
    assert series.interval_s == 300.0


@pytest.mark.parametrize(
    "text", ["t,v\n", "t,v\nnope,1\nnope,2\n", "t,v\n2020-01-01,1\n2020-01-02,x\n"]
)
def test_bad_recordings_are_refused_with_a_code(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_csv(write(tmp_path / "bad.csv", text), windows=tmp_path / "none.json")
    assert caught.value.code == ErrorCode.INVALID_DATASET


def test_scores_count_every_alarm(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "r.csv",
        "t,v,label\n" + "".join(f"{s},{s},{int(10 <= s < 20)}\n" for s in range(40)),
    )
    series = load_csv(csv, label_column="label")
    s = 1_000_000
    alarms = [Alarm(12 * s, 21 * s), Alarm(30 * s, 31 * s), Alarm(35 * s, None)]
    scored = score([series], {series.name: alarms})
    assert scored["nab"]["windows_detected"] == 1
    assert scored["nab"]["false_positives"] == 2
    assert scored["nab"]["median_delay_s"] == 2.0
    point = scored["pointwise"]
    # predicted: 12..21 (10 rows, 8 true), 30..31, 35..39: 2 + 5 false; missed: 10, 11
    assert (point["precision"], point["recall"]) == (round(8 / 17, 4), 0.8)
    assert point["false_alarm_rate"] == round(9 / 30, 4)
    assert point["missed_alarm_rate"] == 0.2


def test_simulator_scoring_counts_unmatched_alerts_as_false() -> None:
    fault = Fault(FaultKind.SPIKE, "f", "m1", "pressure", 100.0, 200.0)
    alerts = [
        ("f", "m1", "pressure", "spike", 150.0),  # true
        ("f", "m1", "pressure", "level_shift", 150.0),  # right place, wrong name: false
        ("f", "m2", "pressure", "spike", 150.0),  # no fault there: false
    ]
    result = score_simulated([fault], alerts, machine_days=2.0)
    overall = result["overall"]
    assert (overall["precision"], overall["recall"]) == (round(1 / 3, 3), 1.0)
    assert overall["false_alarms"] == 2
    assert overall["false_alarms_wrong_name"] == 1
    assert overall["false_alarms_per_machine_day"] == 1.0
    assert result["by_fault_type"]["spike"]["precision"] == 0.5


def _buckets(ts: np.ndarray, values: np.ndarray, batch: int) -> list[Bucket]:
    state, out = SensorState(), []
    for a in range(0, len(ts), batch):
        out += feed(
            state,
            0,
            ts[a : a + batch],
            values[a : a + batch],
            ts[a : a + batch],
            bucket_us=10_000_000,
            min_readings=Tuning().bucket_min_readings,
        )
    return out


def test_buckets_follow_the_data_not_the_clock_grid_or_the_batches() -> None:
    rng = np.random.default_rng(3)
    ts = np.arange(600, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000
    values = rng.normal(50, 1, 600)
    base = [(b.count, b.median) for b in _buckets(ts, values, 600)]
    shifted = [(b.count, b.median) for b in _buckets(ts + 3_000_000, values, 600)]
    rebatched = [(b.count, b.median) for b in _buckets(ts, values, 7)]
    assert base == shifted == rebatched
    assert {count for count, _ in base} == {10}  # 1 Hz: 10 readings span 10 s
    slow = _buckets(np.arange(50, dtype=np.int64) * 5 * MINUTE, values[:50], 3)
    # one reading per 5 minutes: a bucket still holds several, so its median is robust and a
    # spike or a flat run can show inside it
    assert {b.count for b in slow} == {Tuning().bucket_min_readings} == {5}


def test_a_slow_signal_can_show_a_spike_and_a_stuck_sensor() -> None:
    """One reading per 5 minutes: with one reading a bucket neither could ever fire."""
    rng = np.random.default_rng(4)
    n = 400
    ts = np.arange(n, dtype=np.int64) * 5 * MINUTE
    values = rng.normal(80.0, 1.0, n)
    values[300] = 20.0  # one reading far off: a spike
    values[350:] = values[349]  # then the sensor stops moving
    state, tuning, kinds = SensorState(), Tuning(), []
    for bucket in feed(
        state,
        0,
        ts,
        values,
        ts,
        bucket_us=int(tuning.bucket_seconds * 1e6),
        min_readings=tuning.bucket_min_readings,
    ):
        found = evaluate(state, bucket, metric="power", limits=SensorLimits(), tuning=tuning)
        kinds.append((int(bucket.first_ts_us // (5 * MINUTE)), [f.kind for f in found]))
    assert not any(k for first, k in kinds if first < 295)
    assert any("spike" in k for first, k in kinds if 295 < first <= 300)
    assert any("stuck_sensor" in k for first, k in kinds if first >= 350)


def _run(values: list[float], tuning: Tuning, metric: str = "flow_rate") -> list[list[str]]:
    state, found = SensorState(), []
    for i, v in enumerate(values):
        t = i * 5 * MINUTE
        bucket = Bucket(0, t, 1, v, v, 0.0, v, v, t, t, v, v, 0, (v,))
        found.append(
            [
                f.kind
                for f in evaluate(
                    state, bucket, metric=metric, limits=SensorLimits(), tuning=tuning
                )
            ]
        )
    return found


def test_a_slow_excursion_does_not_hide_a_collapse() -> None:
    """As the machine temperature of the issue: a slow descent, then a fall to near zero."""
    rng = random.Random(5)
    normal = [98.7 + rng.gauss(0, 1.0) for _ in range(300)]
    descent = [98.7 - 0.15 * i + rng.gauss(0, 1.0) for i in range(200)]
    collapse = [2.1 + rng.gauss(0, 0.3) for _ in range(5)]
    found = _run(normal + descent + collapse, Tuning())
    assert not any(found[:300])
    assert any("level_shift" in f for f in found[500:])


def test_an_anomaly_during_warm_up_is_not_learned_as_normal() -> None:
    rng = random.Random(6)
    warm = [10 + rng.gauss(0, 0.2) for _ in range(22)] + [30.0] * 8  # last 8 of 30 anomalous
    found = _run(warm + [10 + rng.gauss(0, 0.2) for _ in range(20)] + [30.0] * 5, Tuning())
    assert any(found[-5:])


def test_an_alert_stays_open_while_the_condition_persists() -> None:
    """Hysteresis: below the opening bound but still well off, the alert is not quiet."""
    rng = random.Random(7)
    values = [10 + rng.gauss(0, 0.2) for _ in range(60)]
    state, limits, tuning = SensorState(), SensorLimits(), Tuning()
    for i, v in enumerate(values):
        t = i * 5 * MINUTE
        evaluate(
            state,
            Bucket(0, t, 1, v, v, 0.0, v, v, t, t, v, v, 0, (v,)),
            metric="power",
            limits=limits,
            tuning=tuning,
        )
    sigma = state.base_var**0.5
    state.active["level_shift"] = ActiveAlert("zscore", Severity.WARNING, quiet=2)
    held = 10 + 0.95 * tuning.zscore * sigma  # under the opening bound, over the release one
    t = 61 * 5 * MINUTE
    found = evaluate(
        state,
        Bucket(0, t, 1, held, held, 0.0, held, held, t, t, held, held, 0, (held,)),
        metric="power",
        limits=limits,
        tuning=tuning,
    )
    assert found == []
    assert state.active["level_shift"].quiet == 0
    back = state.base
    t += 5 * MINUTE
    evaluate(
        state,
        Bucket(0, t, 1, back, back, 0.0, back, back, t, t, back, back, 0, (back,)),
        metric="power",
        limits=limits,
        tuning=tuning,
    )
    assert state.active["level_shift"].quiet == 0  # untouched: the lifecycle counts quiet


def test_names_say_what_was_seen_and_rules_map_causes() -> None:
    assert fault_kind("zscore", "flow_rate", rising=False) == "level_shift"
    assert fault_kind("zscore", "temperature", rising=True) == "overheating"  # built in
    config = DetectionConfig(
        rules=[Rule(metric="flow_rate", causes={"drift_down": "leak"}, tuning={"zscore": 4.0})]
    )
    limits = limits_for(config, "f", "pump-1", "flow_rate")
    assert fault_kind("cusum", "flow_rate", rising=False, causes=limits.causes) == "leak"
    assert limits.tuning == {"zscore": 4.0}
    with pytest.raises(ValueError, match="tuning"):
        Rule(tuning={"bucket_seconds": 1.0})
    with pytest.raises(ValueError, match="cause"):
        Rule(causes={"drift": "Bad Name!"})


def test_drift_detection_finds_a_slow_leak_when_switched_on() -> None:
    rng = random.Random(8)
    flow = [76.3 + rng.gauss(0, 0.3) for _ in range(100)]
    flow += [76.3 - 0.02 * i + rng.gauss(0, 0.3) for i in range(200)]  # -> 72.3
    off = _run(flow, Tuning())
    on = _run(flow, Tuning(drift_h=10.0, drift_k=1.0))
    assert not any(off[:100])
    assert not any(on[:100])
    first = next(i for i, f in enumerate(on) if "drift" in f)
    assert 100 < first < 200
