"""Multivariate detection per machine: a machine's signals judged together by PCA T^2 and Q
(squared prediction error) on their bucket medians, trained on its normal period.

A correlation break (each signal within its own range, the combination never seen while
normal) is what the single-signal detectors cannot see. The alert names the signals that
contribute most. Column-wise over a batch: one matrix product judges every bucket at once.
Needs scikit-learn (``pip install "plantstream[ml]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from plantstream.errors import ErrorCode, InvalidInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
KIND = "correlation_break"
MAX_SIGNALS = 64


def _bad(message: str) -> InvalidInputError:
    return InvalidInputError(ErrorCode.INVALID_DATASET, message)


@dataclass(frozen=True, slots=True)
class MultivariateTuning:
    """How the machine model is trained and how far off a bucket must be."""

    explained: float = 0.9  # share of the normal period's variance the components keep
    quantile: float = 0.99  # the limits start from this quantile of the training statistics
    # ... widened: a short normal period (SKAB's 400 s: 40 buckets) under-states the
    # spread of a process that moves a little after it (docs/detection.md: how chosen)
    margin: float = 4.0
    clear_buckets: int = 3
    min_rows: int = 10


@dataclass(frozen=True, slots=True)
class MachineModel:
    """A machine's normal period: its signals' robust centre and scale, the principal
    components and their variances, and the T^2 and Q limits."""

    signals: tuple[str, ...]
    center: FloatArray
    scale: FloatArray
    components: FloatArray  # k x p
    variances: FloatArray  # k
    t2_limit: float
    q_limit: float

    def statistics(self, rows: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(T^2, Q, per-signal contribution shares) of each row (n x p, ``signals`` order)."""
        z = (rows - self.center) / self.scale
        scores = z @ self.components.T
        t2 = (scores * scores / self.variances).sum(axis=1)
        residual = z - scores @ self.components
        q = (residual * residual).sum(axis=1)
        # T^2 contributions (scores weighted back onto the signals) and Q's residuals
        t2_part = np.abs((scores / self.variances) @ self.components * z)
        q_part = residual * residual
        over_t2 = t2 / self.t2_limit >= q / self.q_limit
        part = np.where(over_t2[:, None], t2_part, q_part)
        total = part.sum(axis=1, keepdims=True)
        shares = np.divide(part, total, out=np.zeros_like(part), where=total > 0)
        return t2, q, shares


def fit(
    signals: Sequence[str], rows: FloatArray, tuning: MultivariateTuning | None = None
) -> MachineModel:
    """The model of a machine's normal period ``rows`` (n x p, one column per signal)."""
    try:
        from sklearn.decomposition import PCA  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the extra is part of the dev install
        raise ImportError(
            'multivariate detection needs scikit-learn: run "pip install plantstream[ml]"'
        ) from exc
    tuning = tuning or MultivariateTuning()
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(signals):
        raise _bad(f"rows must be n x {len(signals)} (one column per signal)")
    if not 2 <= len(signals) <= MAX_SIGNALS:
        raise _bad(f"a machine model takes 2 to {MAX_SIGNALS} signals, not {len(signals)}")
    if len(rows) < max(tuning.min_rows, 2 * len(signals)):
        raise _bad(
            f"{len(rows)} normal buckets are too few for {len(signals)} signals "
            f"(at least {max(tuning.min_rows, 2 * len(signals))})"
        )
    if not np.isfinite(rows).all():
        raise _bad("the normal period holds values that are not finite numbers")
    center = np.median(rows, axis=0)
    scale = rows.std(axis=0)
    scale = np.where(scale > 0, scale, 1e-9 + np.abs(center) * 1e-6)
    z = (rows - center) / scale
    pca = PCA(n_components=tuning.explained, svd_solver="full").fit(z)
    components = np.asarray(pca.components_, dtype=np.float64)
    variances = np.maximum(np.asarray(pca.explained_variance_, dtype=np.float64), 1e-12)
    model = MachineModel(
        tuple(signals), center, scale, components, variances, t2_limit=1.0, q_limit=1.0
    )
    t2, q, _ = model.statistics(rows)
    return MachineModel(
        model.signals,
        center,
        scale,
        components,
        variances,
        t2_limit=max(float(np.quantile(t2, tuning.quantile)) * tuning.margin, 1e-9),
        q_limit=max(float(np.quantile(q, tuning.quantile)) * tuning.margin, 1e-9),
    )


def bucket_medians(rows: FloatArray, per_bucket: int) -> FloatArray:
    """Medians of consecutive ``per_bucket`` rows (the engine's buckets), column-wise."""
    n = (len(rows) // per_bucket) * per_bucket
    shaped = rows[:n].reshape(-1, per_bucket, rows.shape[1])
    return np.asarray(np.median(shaped, axis=1), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class MachineFinding:
    """A bucket of the machine judged off: when, how far, and which signals say so."""

    bucket: int
    t2: float
    q: float
    contributing: tuple[tuple[str, float], ...]

    def evidence(self, model: MachineModel) -> dict[str, Any]:
        return {
            "detector": "pca",
            "t2": self.t2,
            "t2_limit": model.t2_limit,
            "q": self.q,
            "q_limit": model.q_limit,
            "statistic": max(self.t2 / model.t2_limit, self.q / model.q_limit),
            "threshold": 1.0,
            "contributing": [{"signal": s, "share": round(w, 4)} for s, w in self.contributing],
        }


@dataclass(slots=True)
class MachineWatch:
    """One machine's multivariate detector over its stream of buckets, with hysteresis: an
    alert opens on a bucket past a limit and resolves after ``clear_buckets`` quiet ones."""

    model: MachineModel
    tuning: MultivariateTuning = field(default_factory=MultivariateTuning)
    open_since: int | None = None
    quiet: int = 0
    seen: int = 0

    def judge(self, medians: FloatArray) -> list[tuple[str, int, MachineFinding | None]]:
        """Events for these buckets (``opened`` with its finding, ``resolved``), in order;
        bucket numbers count every bucket this watch has judged."""
        t2, q, shares = self.model.statistics(medians)
        off = (t2 > self.model.t2_limit) | (q > self.model.q_limit)
        events: list[tuple[str, int, MachineFinding | None]] = []
        for i, number in enumerate(range(self.seen, self.seen + len(medians))):
            if off[i]:
                self.quiet = 0
                if self.open_since is None:
                    self.open_since = number
                    order = np.argsort(-shares[i])[:3]
                    named = tuple(
                        (self.model.signals[j], float(shares[i, j]))
                        for j in order.tolist()
                        if shares[i, j] > 0
                    )
                    found = MachineFinding(number, float(t2[i]), float(q[i]), named)
                    events.append(("opened", number, found))
            elif self.open_since is not None:
                self.quiet += 1
                if self.quiet >= self.tuning.clear_buckets:
                    self.open_since, self.quiet = None, 0
                    events.append(("resolved", number, None))
        self.seen += len(medians)
        return events


__all__ = [
    "KIND",
    "FloatArray",
    "IntArray",
    "MachineFinding",
    "MachineModel",
    "MachineWatch",
    "MultivariateTuning",
    "bucket_medians",
    "fit",
]
