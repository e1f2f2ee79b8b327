"""One signal declaration of a model file, validated into a ``SignalDef``.

Units are checked with pint (``model.units``): an accepted unit must convert to the canonical
one. A canonical unit pint does not know is allowed (a plant may count strokes or widgets),
but then readings must carry exactly that unit: the note says so where it matters.
"""

from __future__ import annotations

from plantstream.model import units
from plantstream.model.fields import Fields
from plantstream.model.located import Located
from plantstream.model.plant import MAX_PROPERTIES, MAX_STATES, MAX_TEXT
from plantstream.model.signals import STRING_MAX_LENGTH, SignalDef, SignalKind, ValueType

SIGNAL_KEYS = (
    "name",
    "type",
    "kind",
    "unit",
    "accepted_units",
    "range",
    "low",
    "high",
    "states",
    "wrap",
    "max_length",
    "description",
    "properties",
)
MAX_UNIT = 32
MAX_STRING_LENGTH = 4096

# the kinds each value type may be rolled up as; the first is the default
KINDS: dict[ValueType, tuple[SignalKind, ...]] = {
    ValueType.DOUBLE: (SignalKind.GAUGE, SignalKind.COUNTER),
    ValueType.INT64: (SignalKind.GAUGE, SignalKind.COUNTER),
    ValueType.BOOL: (SignalKind.STATE, SignalKind.GAUGE),  # a gauge of a flag: its duty cycle
    ValueType.STRING: (SignalKind.STATE,),
    ValueType.STATE: (SignalKind.STATE,),
}
# names a register's width is known by
WRAPS = {"uint16": 2**16, "uint32": 2**32, "uint64": 2**64}


def read_signal(f: Fields, node: Located, path: str) -> SignalDef | None:
    """The signal declared at ``node``; None (with issues recorded) when it is not valid."""
    keys = f.mapping(node, path, SIGNAL_KEYS, required=("name",))
    if keys is None:
        return None
    before = len(f.issues)
    name = f.ident(keys.get("name"), f"{path}.name", "a signal name")
    value_type = f.choice(keys.get("type"), f"{path}.type", ValueType) or ValueType.DOUBLE
    kind = f.choice(keys.get("kind"), f"{path}.kind", SignalKind) or KINDS[value_type][0]
    if "kind" in keys and kind not in KINDS[value_type]:
        allowed = " or ".join(KINDS[value_type])
        f.fail(keys["kind"], f"{path}.kind", f"a {value_type} signal is rolled up as {allowed}")
    unit, accepted = _units(
        f, keys, path, numeric=value_type in (ValueType.DOUBLE, ValueType.INT64)
    )
    low, high = _range(f, keys, path, value_type)
    states = f.texts(keys.get("states"), f"{path}.states", limit=MAX_STATES, each=64)
    if value_type is ValueType.STATE and not states:
        f.fail(keys.get("states", node), f"{path}.states", "a state signal lists its states")
    elif states and value_type is not ValueType.STATE:
        f.fail(keys["states"], f"{path}.states", "only a signal of type state has states")
    wrap = _wrap(f, keys.get("wrap"), f"{path}.wrap")
    if wrap is not None and kind is not SignalKind.COUNTER:
        f.fail(keys["wrap"], f"{path}.wrap", "only a counter wraps")
    max_length = f.integer(keys.get("max_length"), f"{path}.max_length", 1, MAX_STRING_LENGTH)
    if max_length is not None and value_type is not ValueType.STRING:
        f.fail(keys["max_length"], f"{path}.max_length", "only a string signal has a max_length")
    description = f.text(keys.get("description"), f"{path}.description", limit=MAX_TEXT)
    properties = _properties(f, keys.get("properties"), f"{path}.properties")
    if name is None or len(f.issues) > before:
        return None
    return SignalDef(
        name,
        value_type=value_type,
        kind=kind,
        unit=unit,
        accepted_units=tuple(accepted),
        low=low,
        high=high,
        description=description,
        states=tuple(states),
        wrap=wrap,
        max_length=max_length or STRING_MAX_LENGTH,
        properties=properties,
    )


def _units(
    f: Fields, keys: dict[str, Located], path: str, *, numeric: bool
) -> tuple[str, list[str]]:
    unit = f.text(keys.get("unit"), f"{path}.unit", limit=MAX_UNIT)
    accepted = f.texts(keys.get("accepted_units"), f"{path}.accepted_units", limit=32, each=32)
    if not numeric:
        for key in ("unit", "accepted_units"):
            if key in keys and (unit or accepted):
                f.fail(keys[key], f"{path}.{key}", "only a double or int64 signal has units")
        return "", []
    known = units.is_known(unit)
    for i, other in enumerate(accepted):
        where, at = keys["accepted_units"].value[i], f"{path}.accepted_units[{i}]"
        if other == unit:
            f.fail(where, at, f"{other!r} is the canonical unit already")
        elif not known:
            f.fail(
                where,
                at,
                f"{other!r} cannot be converted to {unit!r}: pint does not know {unit!r}, so "
                "conversion to it is identity-only (readings must carry exactly that unit)",
            )
        elif not units.is_known(other):
            f.fail(where, at, f"pint does not know the unit {other!r}")
        elif not units.compatible(other, unit):
            f.fail(where, at, f"{other!r} cannot be converted to {unit!r} (another quantity)")
    if unit and not known and not accepted:
        f.warn(
            keys["unit"],
            f"{path}.unit",
            f"pint does not know {unit!r}: readings must carry exactly this unit (no conversion)",
        )
    return unit, accepted


def _range(
    f: Fields, keys: dict[str, Located], path: str, value_type: ValueType
) -> tuple[float | None, float | None]:
    low_node, high_node = keys.get("low"), keys.get("high")
    if "range" in keys:
        if low_node is not None or high_node is not None:
            f.fail(keys["range"], f"{path}.range", "give either range or low/high, not both")
            return None, None
        pair = f.sequence(keys["range"], f"{path}.range", 2)
        if len(pair) != 2:
            f.fail(keys["range"], f"{path}.range", "expected [low, high]")
            return None, None
        low_node, high_node = pair
    low = f.number(low_node, f"{path}.range")
    high = f.number(high_node, f"{path}.range")
    given = low_node if low_node is not None else high_node
    if given is None:
        return low, high
    if value_type not in (ValueType.DOUBLE, ValueType.INT64):
        f.fail(given, f"{path}.range", f"a {value_type} signal has no range")
    elif low is not None and high is not None and low >= high:
        f.fail(given, f"{path}.range", f"low ({low:g}) must be below high ({high:g})")
    return low, high


def _wrap(f: Fields, node: Located | None, path: str) -> int | None:
    if node is None or node.value is None:
        return None
    if isinstance(node.value, str):
        if node.value in WRAPS:
            return WRAPS[node.value]
        f.fail(node, path, f"expected a modulus or one of {', '.join(WRAPS)}")
        return None
    return f.integer(node, path, 2, 2**64)


def _properties(f: Fields, node: Located | None, path: str) -> dict[str, str]:
    if node is None or node.value is None:
        return {}
    keys = f.mapping(node, path, node.keys)
    if keys is None:
        return {}
    if len(keys) > MAX_PROPERTIES:
        f.fail(node, path, f"more than {MAX_PROPERTIES} properties")
        return {}
    out: dict[str, str] = {}
    for key, value in keys.items():
        if len(key) > 64 or not key.isprintable():
            f.fail(node.keys[key], path, "a property name is 1-64 printable characters")
        out[key] = f.text(value, f"{path}.{key[:64]}", limit=MAX_TEXT)
    return out


__all__ = ["KINDS", "SIGNAL_KEYS", "WRAPS", "read_signal"]
