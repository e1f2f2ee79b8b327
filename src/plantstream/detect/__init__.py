"""Anomaly detection and alerts for predictive maintenance."""

from plantstream.detect.config import DetectionConfig, Rule, Tuning
from plantstream.detect.detectors import SensorState, evaluate, fault_kind
from plantstream.detect.engine import DetectionEngine

__all__ = [
    "DetectionConfig",
    "DetectionEngine",
    "Rule",
    "SensorState",
    "Tuning",
    "evaluate",
    "fault_kind",
]
