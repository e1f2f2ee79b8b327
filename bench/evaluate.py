"""Detection on public, labeled, real industrial recordings, scored beside two baselines and
the data sets' own published figures. Writes bench/results/evaluate.json.

The data are not in this repository (their licences differ: NAB is AGPL-3.0 with its data
under its own terms, SKAB is GPL-3.0); obtain them from their public repositories and point
``--data`` at a folder laid out as::

    DIR/nab/machine_temperature_system_failure.csv   NAB data/realKnownCause/...
    DIR/nab/NAME.csv for NAME in NAB_OTHERS          NAB data/realKnownCause/..., optional
    DIR/nab/combined_windows.json                    NAB labels/combined_windows.json
    DIR/skab/{valve1,valve2,other}/*.csv             SKAB data/...
    DIR/nab/results/NAME.csv, DIR/nab/thresholds.json optional: NAB's own detectors

for example ``git clone https://github.com/numenta/NAB`` and ``.../waico/SKAB``, then copy.
Each data set is replayed through the real detection engine on real PostgreSQL and Redis
(``plantstream evaluate`` does the same for one CSV) and scored NAB-style and point-wise.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis

from plantstream.detect.config import DetectionConfig, DetectorName, Rule, Tuning
from plantstream.detect.evaluate.dataset import LabeledSeries, load_csv, parse_time
from plantstream.detect.evaluate.replay import Replay
from plantstream.detect.evaluate.scoring import Alarm, alarms_from_flags, score
from plantstream.testing import fresh_services, write_result

RESULTS = Path(__file__).parent / "results"

# the data sets' own published figures, as their repositories state them
PUBLISHED: dict[str, dict[str, Any]] = {
    "nab_machine_temperature": {
        "source": "NAB results/*/realKnownCause/*machine_temperature_system_failure.csv with "
        "config/thresholds.json 'standard' thresholds (numenta/NAB), scored below as ours; "
        "the issue quotes 3 or 4 of 4 windows found with 5 to 10 false alarms",
    },
    "nab_other_system_failures": {
        "source": "NAB data/realKnownCause, scored with the same code; no published figures "
        "kept here: an overfitting check of plantstream's defaults",
    },
    "skab": {
        "source": "SKAB README, 'Proposed Leaderboard', outlier detection (test set)",
        "best": {"algorithm": "Conv-AE", "f1": 0.78, "far_pct": 13.55, "mar_pct": 28.02},
        "others": {
            "MSET": {"f1": 0.78, "far_pct": 39.73, "mar_pct": 14.13},
            "T-squared+Q (PCA-based)": {"f1": 0.76, "far_pct": 26.62, "mar_pct": 24.92},
            "LSTM-AE": {"f1": 0.74, "far_pct": 29.96, "mar_pct": 25.92},
            "T-squared": {"f1": 0.66, "far_pct": 19.21, "mar_pct": 42.6},
            "Isolation forest": {"f1": 0.29, "far_pct": 2.56, "mar_pct": 82.89},
        },
    },
}


# NAB data/realKnownCause recordings of machines (not traffic or keystrokes), rows a day
NAB_OTHERS = {
    "ambient_temperature_system_failure": 24,  # hourly
    "cpu_utilization_asg_misconfiguration": 288,  # every 5 minutes
    "ec2_request_latency_system_failure": 288,
}


def nab_published(data: Path, series: LabeledSeries) -> dict[str, Any]:
    """NAB's own detectors' results on this recording (``DIR/nab/results/NAME.csv`` from
    NAB ``results/NAME/realKnownCause/NAME_machine_temperature_system_failure.csv`` and
    ``DIR/nab/thresholds.json`` from NAB ``config/thresholds.json``), each row at or above
    the detector's 'standard' threshold one alarm, scored as ours."""
    thresholds_path = data / "nab" / "thresholds.json"
    if not thresholds_path.exists():
        return {}
    thresholds = json.loads(thresholds_path.read_text())
    scored = {}
    for path in sorted((data / "nab" / "results").glob("*.csv")):
        threshold = thresholds[path.stem]["standard"]["threshold"]
        rows = list(csv.DictReader(path.read_text().splitlines()))
        alarms = [
            Alarm(parse_time(r["timestamp"]), parse_time(r["timestamp"]), path.stem)
            for r in rows
            if float(r["anomaly_score"]) >= threshold
        ]
        result = score([series], {series.name: alarms})
        scored[path.stem] = {"threshold": threshold, "nab": result["nab"]}
    return scored


def load(data: Path, name: str) -> list[LabeledSeries]:
    if name == "nab_machine_temperature":
        return [
            load_csv(
                data / "nab" / "machine_temperature_system_failure.csv",
                windows=data / "nab" / "combined_windows.json",
                train_rows=288,  # one day of history (the first window opens 7.4 days in)
            )
        ]
    if name == "nab_other_system_failures":
        # the same defaults on NAB's other realKnownCause machine recordings: a check that
        # what helps the machine temperature is not fitted to its four windows
        return [
            load_csv(
                data / "nab" / f"{stem}.csv",
                windows=data / "nab" / "combined_windows.json",
                train_rows=rows_a_day,
            )
            for stem, rows_a_day in NAB_OTHERS.items()
            if (data / "nab" / f"{stem}.csv").exists()
        ]
    files = sorted((data / "skab").glob("*/*.csv"))
    files = [f for f in files if f.parent.name != "anomaly-free"]
    if not files:
        raise SystemExit(f"no SKAB files under {data / 'skab'}: see this file's docstring")
    return [
        load_csv(
            f,
            label_column="anomaly",
            ignore=("changepoint",),
            train_rows=400,  # SKAB's convention: the first 400 s of a run are normal
            name=f"{f.parent.name}-{f.stem}",
        )
        for f in files
    ]


def static_threshold(series: LabeledSeries, k: float = 3.0) -> list[Alarm]:
    """Any column outside mean +- k sd of the training rows."""
    train = series.values[: max(series.train_rows, 10)]
    mean, sd = train.mean(axis=0), np.maximum(train.std(axis=0), 1e-9)
    flags = (np.abs(series.values - mean) > k * sd).any(axis=1)
    return alarms_from_flags(series.ts_us, flags)


def rolling_zscore(series: LabeledSeries, window: int = 100, k: float = 4.0) -> list[Alarm]:
    """Any column more than k sd from the mean of its previous ``window`` rows."""
    x = series.values
    c1 = np.cumsum(np.vstack([np.zeros(x.shape[1]), x]), axis=0)
    c2 = np.cumsum(np.vstack([np.zeros(x.shape[1]), x * x]), axis=0)
    idx = np.arange(len(x))
    lo = np.maximum(idx - window, 0)
    n = np.maximum(idx - lo, 1)[:, None]
    mean = (c1[idx] - c1[lo]) / n
    var = np.maximum((c2[idx] - c2[lo]) / n - mean * mean, 0.0)
    z = np.abs(x - mean) / np.maximum(np.sqrt(var), 1e-9)
    flags: npt.NDArray[np.bool_] = ((z > k) & (idx >= 10)[:, None]).any(axis=1)
    return alarms_from_flags(series.ts_us, flags)


# plantstream itself: the defaults, and with the drift detector switched on (as a rule's
# ``tuning`` would for chosen signals)
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # the time-weighted drift detector (on by default since 2026-12-01) off, and its sum
    # at the two ends of the range that meets the NAB goal (16-24 sigma-hours)
    "drift_sigma_hours_off": {"drift_sigma_hours": None},
    "drift_sigma_hours_16": {"drift_sigma_hours": 16.0},
    "drift_sigma_hours_24": {"drift_sigma_hours": 24.0},
    "drift_on": {"drift_h": 20.0},
    # chosen AFTER looking at the machine temperature's labels (so not a default): the
    # best drift setting of a small grid, kept to show what a per-signal rule can do
    "drift_on_h40_k1": {"drift_h": 40.0, "drift_k": 1.0},
}

ALL_DETECTORS: tuple[DetectorName, ...] = typing.get_args(DetectorName)

BASELINES: dict[str, Callable[[LabeledSeries], list[Alarm]]] = {
    "static_threshold_3sd": static_threshold,
    "rolling_zscore_100_4sd": rolling_zscore,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--datasets",
        default="nab_machine_temperature,nab_other_system_failures,skab",
        help="comma-separated",
    )
    parser.add_argument(
        "--tuning", nargs="*", default=[], help="NAME=VALUE overrides of the detection tuning"
    )
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.tuning)}
    config = DetectionConfig(tuning=Tuning(**overrides)) if overrides else None
    results: dict[str, Any] = {
        "machine": "shared, busy",
        "load_average_at_start_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "datasets": {},
    }
    with fresh_services("plantstream_bench_evaluate") as (database_url, redis_url):
        client = redis.Redis.from_url(redis_url)
        for name in args.datasets.split(","):
            recordings = load(args.data, name)
            started = time.perf_counter()
            replay = Replay(database_url=database_url, redis_client=client, config=config).run(
                recordings
            )
            elapsed = time.perf_counter() - started
            variants = {}
            if config is None:
                for variant, tuning in VARIANTS.items():
                    if tuning:
                        run = Replay(
                            database_url=database_url,
                            redis_client=client,
                            config=DetectionConfig(tuning=Tuning(**tuning)),
                        ).run(recordings)
                        variants[variant] = {"tuning": tuning, **score(recordings, run.alarms)}
                if all(len(s.columns) > 1 for s in recordings):
                    # the machine's signals also judged together (PCA T^2 / Q), beside the
                    # single-signal detectors, and alone (every single-signal one disabled)
                    pairs = (("with_multivariate", False), ("multivariate_only", True))
                    for variant, only in pairs:
                        run = Replay(
                            database_url=database_url,
                            redis_client=client,
                            config=DetectionConfig(rules=[Rule(disabled=list(ALL_DETECTORS))])
                            if only
                            else None,
                            multivariate=True,
                        ).run(recordings)
                        variants[variant] = {
                            "multivariate": "PCA T^2/Q on 10-reading bucket medians",
                            **score(recordings, run.alarms),
                        }
            entry: dict[str, Any] = {
                "recordings": len(recordings),
                "rows": sum(len(s.ts_us) for s in recordings),
                "sampling_s": round(float(np.median([s.interval_s for s in recordings])), 1),
                "readings": replay.readings,
                "replay_readings_per_s": round(replay.readings / elapsed),
                "plantstream": score(recordings, replay.alarms),
                "plantstream_variants": variants,
                "baselines": {
                    b: score(recordings, {s.name: fn(s) for s in recordings})
                    for b, fn in BASELINES.items()
                },
                "published": {
                    **PUBLISHED[name],
                    **(
                        {"nab_detectors_scored_as_ours": nab_published(args.data, recordings[0])}
                        if name == "nab_machine_temperature"
                        else {}
                    ),
                },
            }
            results["datasets"][name] = entry
            ours = entry["plantstream"]
            print(f"{name}: {ours['nab']} {ours['pointwise']}")
            for variant, scored in variants.items():
                print(f"  plantstream {variant}: {scored['nab']} {scored['pointwise']}")
            for b, scored in entry["baselines"].items():
                print(f"  {b}: {scored['nab']} {scored['pointwise']}")
    results["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    results["tuning"] = (config or DetectionConfig()).tuning.model_dump()
    results["command"] = "python bench/evaluate.py --data DIR (see the docstring for DIR)" + (
        f" --tuning {' '.join(args.tuning)}" if args.tuning else ""
    )
    path = write_result("evaluate", results, RESULTS)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
