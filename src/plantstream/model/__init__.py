"""Readings and their validation, shared by ingest and processor."""

from plantstream.model.metrics import METRICS, QUALITIES, QUALITY_NAMES
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
    signal_for,
    to_epoch_us,
    validate_columns,
    validate_fields,
)
from plantstream.model.signals import (
    DEFAULT_CATALOG,
    DEFAULT_SIGNALS,
    FixedCatalog,
    SignalCatalog,
    SignalDef,
    SignalKind,
    UnknownSignalPolicy,
    ValueType,
)
from plantstream.model.values import Value, numeric_view

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_SIGNALS",
    "METRICS",
    "QUALITIES",
    "QUALITY_NAMES",
    "FixedCatalog",
    "ParsedBatch",
    "Reading",
    "Reject",
    "RejectCode",
    "SignalCatalog",
    "SignalDef",
    "SignalKind",
    "TimeWindow",
    "UnknownSignalPolicy",
    "Value",
    "ValueType",
    "check_id",
    "from_epoch_us",
    "now_us",
    "numeric_view",
    "parse_batch",
    "signal_for",
    "to_epoch_us",
    "validate_columns",
    "validate_fields",
]
