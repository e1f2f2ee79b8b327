"""Alerts against the simulator's injected faults, every alert counted.

An alert is TRUE when it names an injected fault's kind on that fault's sensor, opening
between the fault's start and ``grace_s`` after its end. Every other alert is a FALSE
alarm, also one at the right sensor and time under another name (reported apart as
``wrong_name``). Overall precision is true alerts over all alerts; recall is detected faults
over injected faults; false alarms are also given per machine-day.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from plantstream.simulate.faults import Fault, FaultKind

SimAlert = tuple[str, str, str, str, float]  # facility, device, metric, kind, opened epoch s


def _near(alert: SimAlert, fault: Fault, grace_s: float) -> bool:
    facility, device, metric, _, opened = alert
    return (
        facility == fault.facility
        and device == fault.device
        and metric == fault.metric
        and fault.start - 1 <= opened <= fault.end + grace_s
    )


def score_simulated(
    faults: Sequence[Fault],
    alerts: Sequence[SimAlert],
    *,
    machine_days: float,
    grace_s: float = 120.0,
) -> dict[str, Any]:
    """Per fault type and overall figures (see the module's docstring)."""
    true_alerts: set[int] = set()
    wrong_name: set[int] = set()
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in FaultKind:
        injected = [f for f in faults if f.kind == kind]
        detected, delays = 0, []
        for fault in injected:
            hits = [
                (i, a[4])
                for i, a in enumerate(alerts)
                if a[3] == str(kind) and _near(a, fault, grace_s)
            ]
            if hits:
                detected += 1
                delays.append(min(opened for _, opened in hits) - fault.start)
                true_alerts.update(i for i, _ in hits)
        raised = [i for i, a in enumerate(alerts) if a[3] == str(kind)]
        true = [i for i in raised if i in true_alerts]
        per_kind[str(kind)] = {
            "injected": len(injected),
            "detected": detected,
            "alerts": len(raised),
            "true_alerts": len(true),
            "false_alarms": len(raised) - len(true),
            "recall": round(detected / len(injected), 3) if injected else None,
            "precision": round(len(true) / len(raised), 3) if raised else None,
            "median_delay_s": round(statistics.median(delays), 1) if delays else None,
        }
    for i, alert in enumerate(alerts):
        if i not in true_alerts and any(_near(alert, f, grace_s) for f in faults):
            wrong_name.add(i)
    false = [a for i, a in enumerate(alerts) if i not in true_alerts]
    unnamed: dict[str, int] = {}
    for alert in false:
        if alert[3] not in {str(k) for k in FaultKind}:
            unnamed[alert[3]] = unnamed.get(alert[3], 0) + 1
    detected_all = sum(int(e["detected"]) for e in per_kind.values())
    return {
        "overall": {
            "injected": len(faults),
            "detected": detected_all,
            "alerts": len(alerts),
            "true_alerts": len(true_alerts),
            "false_alarms": len(false),
            "false_alarms_wrong_name": len(wrong_name),
            "precision": round(len(true_alerts) / len(alerts), 3) if alerts else None,
            "recall": round(detected_all / len(faults), 3) if faults else None,
            "false_alarms_per_machine_day": round(len(false) / machine_days, 3)
            if machine_days
            else None,
        },
        "by_fault_type": per_kind,
        "false_alarms_by_kind_without_fault_type": dict(sorted(unnamed.items())),
    }


__all__ = ["SimAlert", "score_simulated"]
