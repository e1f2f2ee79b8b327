"""Units through pint: parse a unit string, and convert a value between compatible units.

Conversions on the hot path are linear (``factor * value + offset``): the pair is resolved by
pint once and cached, so ingest never calls pint per reading. Plant spellings that pint does
not parse (``m3/h``, ``%RH``, ``count``) are mapped to pint's names first.
"""

from __future__ import annotations

import functools

import pint

from plantstream.errors import ErrorCode, InvalidInputError

_REGISTRY: pint.UnitRegistry = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)  # type: ignore[type-arg]

# how plant tags and exports write units that pint spells otherwise
_ALIASES: dict[str, str] = {
    "m3/h": "m**3/h",
    "m3/s": "m**3/s",
    "m3": "m**3",
    "%RH": "percent",
    "%": "percent",
    "count": "dimensionless",
    "": "dimensionless",
    "1": "dimensionless",
}


def _pint_name(unit: str) -> str:
    return _ALIASES.get(unit, unit)


@functools.lru_cache(maxsize=4096)
def is_known(unit: str) -> bool:
    """True when pint can parse ``unit`` (after the plant aliases)."""
    try:
        _REGISTRY.parse_units(_pint_name(unit))
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, SyntaxError):
        return False
    return True


@functools.lru_cache(maxsize=4096)
def linear(from_unit: str, to_unit: str) -> tuple[float, float] | None:
    """``(factor, offset)`` with ``to = factor * from + offset``; None when incompatible.

    Identical strings convert trivially, even for a unit pint has never heard of (a signal
    may be declared in any unit; it just cannot be converted).
    """
    if from_unit == to_unit:
        return (1.0, 0.0)
    if not (is_known(from_unit) and is_known(to_unit)):
        return None
    try:
        zero = _REGISTRY.Quantity(0.0, _pint_name(from_unit)).to(_pint_name(to_unit)).magnitude
        one = _REGISTRY.Quantity(1.0, _pint_name(from_unit)).to(_pint_name(to_unit)).magnitude
    except (pint.errors.PintError, ValueError, TypeError):
        return None
    return (float(one - zero), float(zero))


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``.

    Raises ``InvalidInputError(unknown_unit)`` when the units are not compatible.
    """
    pair = linear(from_unit, to_unit)
    if pair is None:
        raise InvalidInputError(
            ErrorCode.UNKNOWN_UNIT, f"unit {from_unit[:16]!r} cannot be converted to {to_unit!r}"
        )
    factor, offset = pair
    return value * factor + offset


def compatible(unit: str, canonical: str) -> bool:
    """True when a reading in ``unit`` can be stored in ``canonical``."""
    return linear(unit, canonical) is not None
