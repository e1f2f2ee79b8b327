"""The demo's closing summary: what was sent, accepted, stored, and which faults were caught."""

from __future__ import annotations

import time
from collections import Counter

import psycopg

from plantstream.demo import books
from plantstream.demo.options import DemoOptions
from plantstream.simulate import LoadStats
from plantstream.store.alerts import opened_since

DETECTION_GRACE_S = 120.0  # an alert this long after a fault ended still counts as catching it


def collect_summary(
    database_url: str,
    stats: LoadStats,
    started: float,
    options: DemoOptions,
    baseline: Counter[str],
    *,
    paths: dict[str, dict[str, int]] | None = None,
) -> dict[str, object]:
    """The run's books across its paths: HTTP (the gateway's 202 answers), Sparkplug B (what
    the broker acknowledged, and the bridge accepted or rejected) and OPC UA (values written
    to the server, collected by the edge agent, forwarded or refused); balanced when each
    path accounts for every reading it took and all the accepted ones are stored, refused by
    the processor or known duplicates."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        counters = books.since(conn, baseline)
        alerts = opened_since(conn=conn, since_s=started)
    by_fault: dict[str, dict[str, object]] = {}
    for fault in stats.faults:
        caught = [
            (detector, float(opened))
            for facility, device, _metric, detector, opened in alerts
            if facility == fault.facility
            and device == fault.device
            and fault.start <= float(opened) <= fault.end + DETECTION_GRACE_S
        ]
        entry = by_fault.setdefault(str(fault.kind), {"injected": 0, "detected": 0, "alerts": 0})
        entry["injected"] = int(entry["injected"]) + 1  # type: ignore[call-overload]
        entry["alerts"] = int(entry["alerts"]) + len(caught)  # type: ignore[call-overload]
        if caught:
            entry["detected"] = int(entry["detected"]) + 1  # type: ignore[call-overload]
    stored, dead = counters["stored"], counters["rejected"]
    paths = paths or {}
    accepted = stats.accepted + sum(p["accepted"] for p in paths.values())
    rejected = stats.rejected + sum(p["rejected"] for p in paths.values())
    sent = stats.sent + sum(_took(p)[0] for p in paths.values())
    paths_balanced = all(_path_balanced(p) for p in paths.values())
    return {
        "duration_s": round(time.time() - started, 1),
        "facilities": options.facilities,
        "machines_per_facility": options.machines,
        "readings_sent": sent,
        "accepted": accepted,
        "rejected": rejected,
        "rejected_by_code": dict(stats.rejected_by_code),
        "paths": {
            "http": {"sent": stats.sent, "accepted": stats.accepted, "rejected": stats.rejected},
            **paths,
        },
        "stored": stored,
        "dead_lettered": dead,
        "duplicates": counters["duplicate"],
        "balanced": accepted == stored + dead + counters["duplicate"] and paths_balanced,
        "alerts": len(alerts),
        "alerts_by_fault_type": by_fault,
        "faults_injected": [f.as_dict() for f in stats.faults],
        "errors": dict(stats.errors),
    }


_TOOK = ("published", "acked_by_broker", "written_to_server", "collected")


def _took(books: dict[str, int]) -> list[int]:
    """What a path counted on its way in: published and acked (MQTT), written (less what an
    OPC UA subscription does not report: a value unchanged) and collected (OPC UA)."""
    took = [books[k] for k in _TOOK if k in books] or [0]
    if "written_to_server" in books:
        took[0] -= books.get("unchanged_not_reported", 0)
    return took


def _path_balanced(books: dict[str, int]) -> bool:
    """Every reading a path took came out accepted or rejected, none lost on the way."""
    took = _took(books)
    return len(set(took)) == 1 and took[0] == books["accepted"] + books["rejected"]
