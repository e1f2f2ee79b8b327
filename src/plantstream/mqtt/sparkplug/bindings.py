"""What a birth certificate says of each metric, bound once: where its values go, how to read them.

A ``Binding`` is built per metric at NBIRTH/DBIRTH (or rebuilt from the birth kept in Redis),
so a data message's metric costs one dict lookup by alias before its value is validated. The
signal's definition comes from the facility's catalog at that moment (a model applied later is
seen at the node's next birth, or the next bridge start).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import DEFAULT_CATALOG, SignalCatalog, ValueType, check_id
from plantstream.model.readings import value_bounds
from plantstream.model.units import linear
from plantstream.mqtt.sparkplug.datatypes import rule_of
from plantstream.mqtt.sparkplug.mapping import is_control, split_metric
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

# property keys that carry a metric's engineering unit, as Sparkplug tools spell them
UNIT_KEYS = ("engUnit", "engineeringUnits", "EngUnit", "units", "unit")
_SCALARS = (
    "int_value",
    "long_value",
    "float_value",
    "double_value",
    "boolean_value",
    "string_value",
)


@dataclass(frozen=True, slots=True)
class Binding:
    """One metric of a birth: its machine and signal, sign handling, unit, quality, or the
    code it is refused with (``refuse``); ``control`` for the protocol's own metrics."""

    machine: str
    signal: str
    signed_bits: int = 0
    unit: str | None = None
    quality: int = 0
    refuse: ErrorCode | None = None
    control: bool = False
    # the fast path: a known metric on valid ids, its unit's conversion, its plausible range
    # (a value outside it, or any other doubt, goes through ``validate_fields`` for its reason)
    fast: bool = False
    convert: Callable[[float], float] | None = None
    low: float = 0.0
    high: float = 0.0


def properties_of(metric: Payload.Metric) -> dict[str, Any]:
    """The scalar properties of a metric (nested property sets are left out)."""
    if not metric.HasField("properties"):
        return {}
    props = metric.properties
    out: dict[str, Any] = {}
    for key, value in zip(props.keys, props.values, strict=False):
        kind = value.WhichOneof("value")
        if kind in _SCALARS and not value.is_null:
            out[key] = getattr(value, kind)
    return out


def quality_of(props: dict[str, Any]) -> int:
    """plantstream's quality (0 good, 1 uncertain, 2 bad) from an OPC-style ``Quality`` code."""
    code = props.get("Quality")
    if not isinstance(code, int) or isinstance(code, bool):
        return 0
    return 0 if code >= 192 else 1 if code >= 64 else 2


def definition(metric: Payload.Metric) -> dict[str, Any]:
    """What the catalog keeps of a metric's birth: its datatype and its properties."""
    return {
        "datatype": metric.datatype,
        "type": rule_of(metric.datatype).name,
        "properties": properties_of(metric),
    }


def bind(
    machine: str,
    name: str,
    spec: dict[str, Any],
    *,
    facility: str = "",
    catalog: SignalCatalog = DEFAULT_CATALOG,
) -> Binding:
    """The binding of metric ``name`` born on ``machine`` of ``facility`` with definition
    ``spec``; the signal's type, unit and range are the facility's (``catalog``)."""
    if is_control(name):
        return Binding(machine, name, control=True)
    target, signal = split_metric(machine, name)
    rule = rule_of(int(spec.get("datatype", 0)))
    props = spec.get("properties") or {}
    unit = next((str(props[k]) for k in UNIT_KEYS if isinstance(props.get(k), str)), None)
    known = catalog.get(facility, signal)
    pair = linear(unit, known.unit) if known is not None and unit else None
    fast = (
        known is not None
        and rule.value_type in (ValueType.DOUBLE, ValueType.INT64)  # numbers only
        and known.value_type is ValueType.DOUBLE  # typed signals take the validating path
        and _valid_id(target)
        and (unit in (None, known.unit) or (unit in known.accepted_units and pair is not None))
    )
    return Binding(
        target,
        signal,
        signed_bits=rule.signed_bits,
        unit=unit or None,
        quality=quality_of(props),
        refuse=None if rule.value_type is not None else ErrorCode.UNSUPPORTED_DATATYPE,
        fast=fast,
        convert=_converter(pair) if pair is not None and pair != (1.0, 0.0) else None,
        low=value_bounds[0](known) if known is not None else -math.inf,
        high=value_bounds[1](known) if known is not None else math.inf,
    )


def _converter(pair: tuple[float, float]) -> Callable[[float], float]:
    factor, offset = pair
    return lambda value: value * factor + offset


def _valid_id(value: str) -> bool:
    try:
        check_id(value, "machine")
    except InvalidInputError:
        return False
    return True


@dataclass(slots=True)
class Bound:
    """A birth's bindings by alias and by name."""

    by_alias: dict[int, Binding]
    by_name: dict[str, Binding]

    @classmethod
    def build(
        cls,
        machine: str,
        metrics: dict[str, dict[str, Any]],
        aliases: dict[int, str],
        *,
        facility: str = "",
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> Bound:
        by_name = {
            name: bind(machine, name, spec, facility=facility, catalog=catalog)
            for name, spec in metrics.items()
        }
        by_alias = {alias: by_name[name] for alias, name in aliases.items() if name in by_name}
        return cls(by_alias, by_name)

    def find(self, metric: Payload.Metric) -> Binding | None:
        if metric.HasField("alias"):
            return self.by_alias.get(metric.alias)
        return self.by_name.get(metric.name)
