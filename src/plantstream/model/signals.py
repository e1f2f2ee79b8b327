"""Signal definitions: what a machine sends, its value type, its kind, its units and range.

A ``SignalDef`` is the contract between the plant model (which declares signals, per facility
and per machine type), ingest and the processor (which validate against it), storage (which
keeps each value type exactly) and the rollups (which aggregate each kind its own way).
``DEFAULT_SIGNALS`` is the catalog a fresh install starts with: today's nine metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, cast


class ValueType(StrEnum):
    """How a signal's value is represented and stored."""

    DOUBLE = "double"
    INT64 = "int64"  # exact beyond 2**53: part counters, energy meters
    BOOL = "bool"
    STRING = "string"  # bounded by ``SignalDef.max_length``
    STATE = "state"  # one of ``SignalDef.states``


class SignalKind(StrEnum):
    """How a signal's values are rolled up."""

    GAUGE = "gauge"  # time-weighted average, min, max, first, last, count
    COUNTER = "counter"  # increase per bucket, resets and wraps handled
    STATE = "state"  # time in each state per bucket


class UnknownSignalPolicy(StrEnum):
    """What a facility does with a signal name its catalog does not declare."""

    REFUSE = "refuse"  # reject the reading with ``unknown_metric`` (the default)
    REGISTER = "register"  # accept it as an unclassified double for an admin to review


NUMERIC_TYPES = frozenset({ValueType.DOUBLE, ValueType.INT64, ValueType.BOOL})
STRING_MAX_LENGTH = 256


@dataclass(frozen=True, slots=True)
class SignalDef:
    """One declared signal. ``unit`` is canonical: stored values are in it.

    ``accepted_units`` are the other units a reading may carry (converted on ingest);
    ``low``/``high`` bound a plausible numeric value (in the canonical unit); ``states``
    lists the allowed values of a ``STATE`` signal; ``wrap`` is the modulus of a counter
    that wraps (2**32 for a uint32 register), None when it only resets.
    """

    name: str
    value_type: ValueType = ValueType.DOUBLE
    kind: SignalKind = SignalKind.GAUGE
    unit: str = ""
    accepted_units: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    description: str = ""
    states: tuple[str, ...] = ()
    wrap: int | None = None
    max_length: int = STRING_MAX_LENGTH
    unclassified: bool = False  # registered by the REGISTER policy, not declared
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        return self.value_type in NUMERIC_TYPES

    @property
    def units(self) -> tuple[str, ...]:
        return (self.unit, *self.accepted_units)


class SignalCatalog(Protocol):
    """Looks up a facility's signal definitions (the store-backed catalog, or a fixed one)."""

    def get(self, facility: str, name: str) -> SignalDef | None: ...

    def policy(self, facility: str) -> UnknownSignalPolicy: ...


class FixedCatalog:
    """A catalog of the same definitions for every facility (tests, and the default)."""

    def __init__(
        self,
        signals: Mapping[str, SignalDef],
        unknown: UnknownSignalPolicy = UnknownSignalPolicy.REFUSE,
    ) -> None:
        self._signals = dict(signals)
        self._unknown = unknown

    def get(self, facility: str, name: str) -> SignalDef | None:
        return self._signals.get(name)

    def policy(self, facility: str) -> UnknownSignalPolicy:
        return self._unknown


def _gauge(name: str, unit: str, low: float, high: float, *accepted: str) -> SignalDef:
    return SignalDef(name, unit=unit, accepted_units=accepted, low=low, high=high)


# today's nine metrics: the catalog a fresh install starts with (units as pint/UCUM-free text)
DEFAULT_SIGNALS: dict[str, SignalDef] = {
    s.name: s
    for s in (
        _gauge("temperature", "degC", -60.0, 1200.0, "degF", "K"),
        _gauge("pressure", "bar", -1.0, 1000.0, "kPa", "Pa", "psi"),
        _gauge("vibration_rms", "mm/s", 0.0, 500.0, "in/s"),
        _gauge("spindle_speed", "rpm", 0.0, 60000.0),
        SignalDef(
            "production_count",
            value_type=ValueType.INT64,
            kind=SignalKind.COUNTER,
            unit="count",
            low=0.0,
            high=1e12,
        ),
        _gauge("current", "A", -10000.0, 10000.0),
        _gauge("power", "kW", -100000.0, 100000.0, "W"),
        _gauge("humidity", "%RH", 0.0, 100.0),
        _gauge("flow_rate", "L/min", 0.0, 1e6, "m3/h"),
    )
}

DEFAULT_CATALOG = FixedCatalog(DEFAULT_SIGNALS)


def per_batch(
    catalog: SignalCatalog, allowed: Callable[[str], bool] | None = None
) -> SignalCatalog:
    """What one batch is validated against: the catalog's per-batch view when it has one
    (``StoreCatalog.batch``: the facility looked up once per batch; ``allowed``: the sender's
    facilities, the others never looked up), else the catalog."""
    batch = getattr(catalog, "batch", None)
    return cast("SignalCatalog", batch(allowed)) if callable(batch) else catalog
