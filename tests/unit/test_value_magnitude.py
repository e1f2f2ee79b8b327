"""A number's magnitude is bounded (``MAX_MAGNITUDE``) even where a signal declares no range:
rollups multiply values by seconds and add squares, and PostgreSQL raises on an overflowing
double, so an unbounded 1.5e308 would stop every commit of its shard."""

from __future__ import annotations

import json

import numpy as np

from plantstream.errors import ErrorCode
from plantstream.model import FixedCatalog, SignalDef, TimeWindow, now_us, parse_batch
from plantstream.model.readings import validate_columns
from plantstream.model.values import MAX_MAGNITUDE

OPEN = FixedCatalog({"level": SignalDef("level", unit="m")})  # no low, no high


def test_an_open_range_is_bounded_by_the_largest_magnitude_on_ingest() -> None:
    received = now_us()
    ts = "2026-12-01T00:00:00Z"
    values = [MAX_MAGNITUDE, -MAX_MAGNITUDE, 1.5e308, -1e101, 3.0]
    body = {
        "facility": "plant-01",
        "readings": [{"device": "d", "metric": "level", "ts": ts, "value": v} for v in values],
    }
    window = TimeWindow(max_past_us=received)  # any past time is in the window here
    batch = parse_batch(
        json.dumps(body).encode(), received_us=received, window=window, max_readings=10,
        catalog=OPEN,
    )  # fmt: skip
    assert [r.value for r in batch.readings] == [MAX_MAGNITUDE, -MAX_MAGNITUDE, 3.0]
    assert [(r.index, r.code) for r in batch.rejected] == [
        (2, ErrorCode.VALUE_OUT_OF_RANGE), (3, ErrorCode.VALUE_OUT_OF_RANGE),
    ]  # fmt: skip


def test_the_processor_s_column_check_refuses_them_too() -> None:
    received = now_us()
    values = np.array([1.0, 1.5e308, -MAX_MAGNITUDE], dtype=np.float64)
    ok, rejects = validate_columns(
        facility="plant-01",
        device="d",
        metrics=["level"],
        metric_idx=np.zeros(3, dtype=np.uint8),
        ts_us=np.full(3, received, dtype=np.int64),
        values=values,
        quality=np.zeros(3, dtype=np.uint8),
        received_us=received,
        window=TimeWindow(),
        catalog=OPEN,
    )
    assert ok.tolist() == [True, False, True]
    assert [(i, e.code) for i, e in rejects] == [(1, ErrorCode.VALUE_OUT_OF_RANGE)]
