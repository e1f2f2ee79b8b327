"""The queue's SQLite schema: readings waiting, readings refused by plantstream, counters, gaps.

``value`` has no declared type, so SQLite keeps each value as it came: REAL for doubles,
INTEGER (exact to 64 bits) for int64 and bool, TEXT for strings and states.
"""

COLUMNS = (
    "source, device, metric, ts_us, source_ts_us, server_ts_us, value_type, value, unit, "
    "quality, raw_status, enqueued_us, held"
)

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
    held TEXT
);
CREATE INDEX IF NOT EXISTS readings_ready ON readings (id) WHERE held IS NULL;
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
