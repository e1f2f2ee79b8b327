"""A machine model stored as JSON arrays comes back the same model, and a stored row whose
arrays do not fit its signals is refused rather than judged with."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plantstream.detect.machine_models import from_json, to_json
from plantstream.detect.multivariate import bucket_medians, fit


def test_a_model_round_trips_through_json_and_judges_the_same() -> None:
    rng = np.random.default_rng(3)
    load = rng.normal(0, 1, 600)
    rows = np.column_stack([50 + 5 * load, 3 + 0.5 * load + rng.normal(0, 0.03, 600)])
    model = fit(("flow_rate", "pressure"), bucket_medians(rows, 10))
    stored = json.loads(json.dumps(to_json(model)))  # what jsonb gives back
    back = from_json(stored)
    assert back.signals == model.signals
    probe = np.array([[56.0, 2.4], [50.0, 3.0]])
    for ours, theirs in zip(back.statistics(probe), model.statistics(probe), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert (back.t2_limit, back.q_limit) == (model.t2_limit, model.q_limit)


def test_a_stored_model_whose_arrays_do_not_fit_is_refused() -> None:
    rng = np.random.default_rng(4)
    model = fit(("a", "b", "c"), rng.normal(0, 1, (60, 3)))
    stored = to_json(model)
    with pytest.raises(ValueError, match="do not fit"):
        from_json({**stored, "center": stored["center"][:2]})
    with pytest.raises(ValueError, match="do not fit"):
        from_json({**stored, "components": [[1.0, 2.0]]})
