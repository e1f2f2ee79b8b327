"""Readings and their validation, shared by ingest and processor."""

from plantstream.model.metrics import METRICS, QUALITIES, QUALITY_NAMES, Metric
from plantstream.model.readings import (
    ParsedBatch,
    Reading,
    Reject,
    RejectCode,
    TimeWindow,
    check_id,
    from_epoch_us,
    now_us,
    parse_batch,
    to_epoch_us,
    validate_columns,
    validate_fields,
)

__all__ = [
    "METRICS",
    "QUALITIES",
    "QUALITY_NAMES",
    "Metric",
    "ParsedBatch",
    "Reading",
    "Reject",
    "RejectCode",
    "TimeWindow",
    "check_id",
    "from_epoch_us",
    "now_us",
    "parse_batch",
    "to_epoch_us",
    "validate_columns",
    "validate_fields",
]
