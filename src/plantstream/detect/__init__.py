"""Anomaly detection and alerts for predictive maintenance."""

from plantstream.detect.alerts import AlertEvent, AlertLifecycle
from plantstream.detect.config import DetectionConfig, Rule, Tuning
from plantstream.detect.detectors import DETECTORS, evaluate, fault_kind
from plantstream.detect.engine import DetectionEngine
from plantstream.detect.registry import Detector, Finding, Judged, Registry
from plantstream.detect.state import ActiveAlert, SensorState, Severity

__all__ = [
    "DETECTORS",
    "ActiveAlert",
    "AlertEvent",
    "AlertLifecycle",
    "DetectionConfig",
    "DetectionEngine",
    "Detector",
    "Finding",
    "Judged",
    "Registry",
    "Rule",
    "SensorState",
    "Severity",
    "Tuning",
    "evaluate",
    "fault_kind",
]
