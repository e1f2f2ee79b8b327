"""Prometheus metrics of the processor (process-wide, like every prometheus_client metric)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READINGS = Counter(
    "plantstream_processor_readings",
    "Readings seen by the processor, by facility and outcome "
    "(received, accepted, rejected, rejected:<code>, duplicate, late, stored).",
    ["facility", "outcome"],
)
BATCH_SECONDS = Histogram(
    "plantstream_processor_batch_seconds", "Time to process one shard batch end to end."
)
SHARD_LAG_MS = Gauge(
    "plantstream_processor_shard_behind_ms",
    "How far the processor is behind a shard's tip.",
    ["shard"],
)
OWNED_SHARDS = Gauge("plantstream_processor_owned_shards", "Shards this process holds.")
ERRORS = Counter(
    "plantstream_processor_errors",
    "Errors the processor recovered from, by kind (postgres, disk_full, stream, or the name "
    "of the post-commit sink that failed: redis, detection, ...).",
    ["kind"],
)
SINK_BEHIND = Gauge(
    "plantstream_processor_sink_behind",
    "1 while a post-commit sink (redis, detection, ...) missed batches and awaits catch-up.",
    ["sink"],
)
