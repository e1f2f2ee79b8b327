"""The queue's SQLite schema: readings waiting, readings refused by plantstream, counters, gaps.

``value`` has no declared type, so SQLite keeps each value as it came: REAL for doubles,
INTEGER (exact to 64 bits) for int64 and bool, TEXT for strings and states. ``lane`` is a
hash of the signal: the forwarder sends lanes in parallel, each in order (``lane_of``).
"""

import functools
import zlib

COLUMNS = (
    "source, device, metric, ts_us, source_ts_us, server_ts_us, value_type, value, unit, "
    "quality, raw_status, enqueued_us, held"
)

INSERT_COLUMNS = COLUMNS + ", lane"

# a queue written by an agent before lanes: its rows are all lane 0 (sent in order, one lane)
MIGRATIONS = {"lane": "ALTER TABLE readings ADD COLUMN lane INTEGER NOT NULL DEFAULT 0"}


@functools.lru_cache(maxsize=65536)
def lane_of(device: str, metric: str) -> int:
    """A signal's lane (0..65535): stable across restarts, the same for every reading of it."""
    return zlib.crc32(f"{device}\0{metric}".encode()) & 0xFFFF


SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    source_ts_us INTEGER,
    server_ts_us INTEGER,
    value_type TEXT NOT NULL,
    value,
    unit TEXT,
    quality INTEGER NOT NULL,
    raw_status INTEGER,
    enqueued_us INTEGER NOT NULL,
    held TEXT,
    lane INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS readings_ready ON readings (id) WHERE held IS NULL;
CREATE INDEX IF NOT EXISTS readings_held ON readings (held, id) WHERE held IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    source_ts_us INTEGER,
    server_ts_us INTEGER,
    value_type TEXT NOT NULL,
    value,
    unit TEXT,
    quality INTEGER NOT NULL,
    raw_status INTEGER,
    enqueued_us INTEGER NOT NULL,
    held TEXT,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    dead_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gaps (
    source TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""
