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
    sparkplug: dict[str, int] | None = None,
) -> dict[str, object]:
    """The run's books across both paths: HTTP (the gateway's 202 answers) and Sparkplug B
    (what the broker acknowledged, and the bridge accepted or rejected); balanced when every
    reading the broker took is accounted for and the accepted ones are all stored, refused
    by the processor or known duplicates."""
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
    mqtt = sparkplug or {"published": 0, "acked_by_broker": 0, "accepted": 0, "rejected": 0}
    accepted = stats.accepted + mqtt["accepted"]
    mqtt_balanced = (
        mqtt["published"] == mqtt["acked_by_broker"] == (mqtt["accepted"] + mqtt["rejected"])
    )
    return {
        "duration_s": round(time.time() - started, 1),
        "facilities": options.facilities,
        "machines_per_facility": options.machines,
        "readings_sent": stats.sent + mqtt["published"],
        "accepted": accepted,
        "rejected": stats.rejected + mqtt["rejected"],
        "rejected_by_code": dict(stats.rejected_by_code),
        "paths": {
            "http": {"sent": stats.sent, "accepted": stats.accepted, "rejected": stats.rejected},
            "sparkplug": mqtt,
        },
        "stored": stored,
        "dead_lettered": dead,
        "duplicates": counters["duplicate"],
        "balanced": accepted == stored + dead + counters["duplicate"] and mqtt_balanced,
        "alerts": len(alerts),
        "alerts_by_fault_type": by_fault,
        "faults_injected": [f.as_dict() for f in stats.faults],
        "errors": dict(stats.errors),
    }
