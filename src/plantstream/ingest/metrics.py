"""Prometheus counters of ingest: readings by outcome, requests pushed back by code."""

from __future__ import annotations

from prometheus_client import Counter

INGESTED = Counter(
    "plantstream_ingest_readings",
    "Readings answered by ingest, by facility and outcome.",
    ["facility", "outcome"],
)
PUSHED_BACK = Counter(
    "plantstream_ingest_pushed_back",
    "Ingest requests answered 429 before their body was read, by code.",
    ["code"],
)
