"""Prometheus metrics of the MQTT bridge: as for HTTP ingest, per message path and code."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES = Counter(
    "plantstream_mqtt_messages", "MQTT messages taken from the broker, by path.", ["path"]
)
READINGS = Counter(
    "plantstream_mqtt_readings",
    "Readings of MQTT messages, by path and outcome (received, accepted, rejected).",
    ["path", "outcome"],
)
REJECTED = Counter(
    "plantstream_mqtt_rejected", "Readings refused one by one, by path and code.", ["path", "code"]
)
DEAD_LETTERED = Counter(
    "plantstream_mqtt_dead_lettered",
    "Messages refused whole and kept with their topic in the dead-letter list, by code.",
    ["path", "code"],
)
DEAD_LETTERS_DROPPED = Counter(
    "plantstream_mqtt_dead_letters_dropped",
    "Old dead letters pushed out of the bounded list (PLANTSTREAM_MQTT_DEAD_LETTER_MAX).",
)
COMMIT_RETRIES = Counter(
    "plantstream_mqtt_commit_retries",
    "Batches whose readings or state could not be made durable yet (not acked; retried).",
    ["reason"],
)
ACKED = Counter("plantstream_mqtt_acked", "QoS 1 messages acknowledged once durable.")
REBIRTHS = Counter(
    "plantstream_sparkplug_rebirths_requested",
    "NCMD Node Control/Rebirth requests sent (gap, unknown alias, node without birth).",
)
HISTORICAL = Counter(
    "plantstream_sparkplug_historical",
    "is_historical metrics taken (within the live window; older ones are refused "
    "timestamp_too_old).",
)
STALE_NODES = Gauge(
    "plantstream_sparkplug_stale_nodes",
    "Edge nodes and devices this bridge saw die (NDEATH/DDEATH) and not born again.",
)
PARKED = Counter(
    "plantstream_sparkplug_parked",
    "Sparkplug messages of a node without a birth (or with aliases not in it), kept in Redis "
    "and acked, to be taken after its rebirth.",
)
REPLAYED = Counter(
    "plantstream_sparkplug_replayed", "Parked Sparkplug messages taken after their node's birth."
)
