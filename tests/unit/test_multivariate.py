"""Multivariate detection per machine: a correlation break that no single signal shows is
found by PCA T^2/Q, named by its contributing signals; bad training data is refused."""

from __future__ import annotations

import numpy as np
import pytest

from plantstream.detect.multivariate import MachineWatch, bucket_medians, fit
from plantstream.errors import ErrorCode, InvalidInputError


def normal(n: int, rng: np.random.Generator) -> np.ndarray:
    """Flow and pressure move together; temperature on its own."""
    load = rng.normal(0, 1, n)
    return np.column_stack(
        [
            50 + 5 * load + rng.normal(0, 0.3, n),
            3 + 0.5 * load + rng.normal(0, 0.03, n),
            70 + rng.normal(0, 1, n),
        ]
    )


def test_a_correlation_break_is_found_and_its_signals_named() -> None:
    rng = np.random.default_rng(1)
    signals = ("flow", "pressure", "temperature")
    model = fit(signals, normal(200, rng))
    watch = MachineWatch(model)
    quiet = normal(50, rng)
    assert watch.judge(quiet) == []
    # flow high while pressure low: each within its normal range, the pair never seen
    broken = normal(5, rng)
    broken[:, 0] = 57.0
    broken[:, 1] = 2.3
    for column in (0, 1):
        low, high = quiet[:, column].min(), quiet[:, column].max()
        assert ((broken[:, column] > low) & (broken[:, column] < high)).all()
    events = watch.judge(broken)
    assert [e for e, _, _ in events] == ["opened"]
    (_, number, finding) = events[0]
    assert number == 50
    assert finding is not None
    named = [s for s, _ in finding.contributing]
    assert set(named[:2]) == {"flow", "pressure"}
    assert sum(w for _, w in finding.contributing) <= 1.0 + 1e-9
    evidence = finding.evidence(model)
    assert evidence["statistic"] > evidence["threshold"] == 1.0
    # back to normal: resolved after the clearing buckets, not before
    events = watch.judge(normal(3, rng))
    assert [e for e, _, _ in events] == ["resolved"]


def test_bucket_medians_are_column_wise_and_drop_the_incomplete_tail() -> None:
    rows = np.arange(24, dtype=np.float64).reshape(12, 2)
    medians = bucket_medians(rows, 5)
    assert medians.tolist() == [[4.0, 5.0], [14.0, 15.0]]


@pytest.mark.parametrize(
    ("signals", "rows"),
    [
        (("a", "b"), np.ones((5, 2))),  # too few buckets
        (("a",), np.ones((50, 1))),  # one signal is not a machine
        (("a", "b"), np.ones((50, 3))),  # columns do not match the signals
        (("a", "b"), np.full((50, 2), np.nan)),
    ],
)
def test_bad_training_data_is_refused_with_a_code(
    signals: tuple[str, ...], rows: np.ndarray
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        fit(signals, rows)
    assert caught.value.code is ErrorCode.INVALID_DATASET
