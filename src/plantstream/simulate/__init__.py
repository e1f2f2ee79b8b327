"""The plant simulator: realistic machines, labeled faults, and a load generator."""

from plantstream.simulate.faults import FAULT_METRICS, Fault, FaultKind
from plantstream.simulate.load import Gateway, LoadStats
from plantstream.simulate.plant import MACHINE_TYPES, Machine, Plant, SimReading, stable_seed

__all__ = [
    "FAULT_METRICS",
    "MACHINE_TYPES",
    "Fault",
    "FaultKind",
    "Gateway",
    "LoadStats",
    "Machine",
    "Plant",
    "SimReading",
    "stable_seed",
]
