"""Scores of alarms against labels, two ways, every alarm counted.

- NAB-style (events): a labeled window is detected when an alarm opens inside it; its delay
  is from the window's start to the first such alarm; every alarm that opens outside all
  windows is a false positive (also reported per month of scored data).
- Point-wise (rows): a row is predicted anomalous while any alarm of its recording is open;
  F1, false alarm rate FP / (FP + TN) and missed alarm rate FN / (FN + TP), as SKAB's
  leaderboard reports them.

Rows and alarms of the training (history) part of a recording are never scored.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from plantstream.detect.evaluate.dataset import LabeledSeries

MONTH_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alert as scored: when it opened and closed (None: still open at the end)."""

    opened_us: int
    closed_us: int | None
    kind: str = ""


def predicted(series: LabeledSeries, alarms: Iterable[Alarm]) -> npt.NDArray[np.bool_]:
    """Rows covered by an open alarm."""
    out = np.zeros(len(series.ts_us), dtype=bool)
    end = int(series.ts_us[-1]) if len(series.ts_us) else 0
    for alarm in alarms:
        closed = end if alarm.closed_us is None else alarm.closed_us
        a = np.searchsorted(series.ts_us, alarm.opened_us, side="left")
        b = np.searchsorted(series.ts_us, closed, side="right")
        out[a:b] = True
    return out


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def score(
    recordings: Sequence[LabeledSeries], alarms: Mapping[str, Sequence[Alarm]]
) -> dict[str, Any]:
    """Both scores over all recordings (``alarms`` by recording name)."""
    tp = fp = fn = tn = 0
    windows = detected = false_positives = 0
    delays: list[float] = []
    scored_s = 0.0
    by_kind: dict[str, dict[str, int]] = {}
    for series in recordings:
        start = int(series.ts_us[series.train_rows])
        scored_s += (int(series.ts_us[-1]) - start) / 1e6
        mine = [a for a in alarms.get(series.name, ()) if a.opened_us >= start]
        pred = predicted(series, mine)[series.train_rows :]
        truth = series.labels[series.train_rows :]
        tp += int((pred & truth).sum())
        fp += int((pred & ~truth).sum())
        fn += int((~pred & truth).sum())
        tn += int((~pred & ~truth).sum())
        spans = [(a, b) for a, b in series.windows if b >= start]
        windows += len(spans)
        for a, b in spans:
            inside = [x.opened_us for x in mine if a <= x.opened_us <= b]
            # an alarm already open when the window starts has seen it too
            carried = any(
                x.opened_us < a and (x.closed_us is None or x.closed_us >= a) for x in mine
            )
            if inside or carried:
                detected += 1
                delays.append(0.0 if carried else (min(inside) - a) / 1e6)
        for alarm in mine:
            entry = by_kind.setdefault(alarm.kind or "?", {"alarms": 0, "false_positives": 0})
            entry["alarms"] += 1
            if not any(a <= alarm.opened_us <= b for a, b in spans):
                false_positives += 1
                entry["false_positives"] += 1
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else 0.0
    months = scored_s / MONTH_S
    return {
        "nab": {
            "windows": windows,
            "windows_detected": detected,
            "false_positives": false_positives,
            "false_positives_per_month": round(false_positives / months, 2) if months else None,
            "median_delay_s": round(statistics.median(delays), 1) if delays else None,
            "scored_days": round(scored_s / 86400, 2),
        },
        "pointwise": {
            "f1": f1,
            "precision": precision,
            "recall": recall,
            "false_alarm_rate": _ratio(fp, fp + tn),
            "missed_alarm_rate": _ratio(fn, fn + tp),
            "rows": tp + fp + fn + tn,
        },
        "alarms_by_kind": dict(sorted(by_kind.items())),
    }


def alarms_from_flags(ts_us: npt.NDArray[np.int64], flags: npt.NDArray[np.bool_]) -> list[Alarm]:
    """A baseline's flagged rows as alarms: each run of flagged rows is one alarm."""
    if not flags.any():
        return []
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [
        Alarm(int(ts_us[a]), int(ts_us[b]), "baseline") for a, b in zip(starts, ends, strict=True)
    ]


__all__ = ["MONTH_S", "Alarm", "alarms_from_flags", "predicted", "score"]
