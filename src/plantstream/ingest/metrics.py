"""Prometheus counters of ingest and of the quotas, and the bound on their facility labels.

Every label that a client can choose (a facility) goes through ``facility_label``, so that a
key inventing facilities cannot grow ``/metrics`` without end.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter

OTHER_FACILITIES = "_other"


class BoundedLabels:
    """The first ``limit`` distinct values keep their own label; later ones share ``_other``.

    Prometheus series never go away in a process, so a label whose values come from requests
    must be bounded where it is set. ``limit`` is read on every call: the runtime sets it from
    ``Settings.metrics_max_facilities`` at start.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER_FACILITIES
            self._seen.add(value)
        return value

    def __len__(self) -> int:
        return len(self._seen)


# process-wide, like the metrics it bounds (ingest and processor share it in `serve all`)
facility_label = BoundedLabels(100)

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
QUOTA_REFUSED = Counter(
    "plantstream_quota_refused",
    "What a quota refused, by quota code and facility (_admin for an admin key's reads): "
    "readings for quota_sensors, requests for the others.",
    ["quota", "facility"],
)


def count_refusal(quota: str, facility: str, n: int = 1) -> None:
    """Count ``n`` refusals of ``quota`` for ``facility`` (label bounded)."""
    QUOTA_REFUSED.labels(quota, facility_label(facility)).inc(n)
