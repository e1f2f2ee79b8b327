"""History import: files (CSV, Parquet) and ``POST /v1/readings/history`` bodies of readings
of any age, stored exactly once through the processor's batch write, never through the stream.
"""

from plantstream.history.importer import FileImporter, RejectsFile, Summary
from plantstream.history.mapping import ColumnMapping, load_mapping
from plantstream.history.readings import HistoryAnswer, parse_history_body, store_history_batch
from plantstream.history.store import HistoryStore, Written, retention_cutoff_us

__all__ = [
    "ColumnMapping",
    "FileImporter",
    "HistoryAnswer",
    "HistoryStore",
    "RejectsFile",
    "Summary",
    "Written",
    "load_mapping",
    "parse_history_body",
    "retention_cutoff_us",
    "store_history_batch",
]
