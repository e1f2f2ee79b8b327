"""Units through pint: parse a unit string, and convert a value between compatible units.

Conversions on the hot path are linear (``factor * value + offset``): the pair is resolved by
pint once and cached, so ingest never calls pint per reading. The pair is kept as exact
fractions (pint's definitions are rational: 1 degF is 5/9 K), and a value is converted with
rational arithmetic and rounded once, so an exact input gives the exact answer (212 degF is
100.0 degC, not the 99.99999999999736 of a float factor and offset). Plant spellings that pint does
not parse (``m3/h``, ``%RH``, ``count``) are mapped to pint's names first.

A unit string comes from a model document, so it is hostile until parsed: pint evaluates it as
arithmetic (``9**9**9`` would compute a number of 370 million digits, ``1/0`` raises
ZeroDivisionError, ``m^(2`` a tokenizer error), so exponents are bounded before pint sees the
text and anything pint raises means "not a unit". A conversion that is not linear (decibels
and other logarithmic units) is refused rather than approximated by a wrong factor.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

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


_EXPONENT = re.compile(r"(\*\*|\^)\s*")
_SMALL_POWER = re.compile(r"[-+]?\d{1,2}(\.\d{1,3})?(?![\d.eE])")


def _pint_name(unit: str) -> str:
    return _ALIASES.get(unit, unit)


def _bounded(text: str) -> bool:
    """True when every exponent in ``text`` is a small number raising a unit or a number
    (not a parenthesis, not another exponent): what pint then computes stays small."""
    for match in _EXPONENT.finditer(text):
        if text[: match.start()].rstrip().endswith(")"):
            return False
        power = _SMALL_POWER.match(text, match.end())
        if power is None or text[power.end() :].lstrip().startswith(("**", "^")):
            return False
    return True


@functools.lru_cache(maxsize=4096)
def is_known(unit: str) -> bool:
    """True when pint can parse ``unit`` (after the plant aliases)."""
    name = _pint_name(unit)
    if not _bounded(name):
        return False
    try:
        _REGISTRY.parse_units(name)
    except Exception:  # pint evaluates the text: any error it raises means "not a unit"
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
    source, target = _pint_name(from_unit), _pint_name(to_unit)
    try:
        zero, one, ten = (
            float(_REGISTRY.Quantity(x, source).to(target).magnitude) for x in (0.0, 1.0, 10.0)
        )
    except Exception:  # incompatible dimensions, or a unit pint cannot compute with
        return None
    factor = one - zero
    if not all(map(math.isfinite, (zero, factor, ten))) or not math.isclose(
        ten, zero + 10.0 * factor, rel_tol=1e-9, abs_tol=1e-12 * max(1.0, abs(factor))
    ):
        return None  # not linear (a logarithmic unit): one factor and offset would be wrong
    return (factor, zero)


@functools.cache
def _exact_registry() -> pint.UnitRegistry:  # type: ignore[type-arg]
    """A registry computing in fractions (made on the first conversion: it takes ~0.7 s)."""
    return pint.UnitRegistry(non_int_type=Fraction, autoconvert_offset_to_baseunit=True)


@functools.lru_cache(maxsize=4096)
def _exact(from_unit: str, to_unit: str) -> tuple[Fraction, Fraction, float | None] | None:
    """The pair of ``linear`` as exact fractions, plus the factor as a float when a float
    multiplication alone is exact (no offset, the factor a float exactly)."""
    if linear(from_unit, to_unit) is None:
        return None  # also keeps hostile or logarithmic units away from the second registry
    if from_unit == to_unit:
        return (Fraction(1), Fraction(0), 1.0)
    registry = _exact_registry()
    source, target = _pint_name(from_unit), _pint_name(to_unit)
    try:
        zero, one = (
            Fraction(registry.Quantity(Fraction(x), source).to(target).magnitude) for x in (0, 1)
        )
    except Exception:  # pint could not compute it in fractions: the float pair stands
        factor_f, offset_f = linear(from_unit, to_unit) or (1.0, 0.0)
        return (Fraction(factor_f), Fraction(offset_f), None)
    factor = one - zero
    plain = float(factor) if zero == 0 and Fraction(float(factor)) == factor else None
    return (factor, zero, plain)


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded once from the exact result.

    Raises ``InvalidInputError(unknown_unit)`` when the units are not compatible.
    """
    pair = _exact(from_unit, to_unit)
    if pair is None:
        raise InvalidInputError(
            ErrorCode.UNKNOWN_UNIT, f"unit {from_unit[:16]!r} cannot be converted to {to_unit!r}"
        )
    factor, offset, plain = pair
    if plain is not None:  # one float multiplication: already correctly rounded
        return value * plain
    if not math.isfinite(value):
        return value * float(factor) + float(offset)
    return float(Fraction(value) * factor + offset)


def compatible(unit: str, canonical: str) -> bool:
    """True when a reading in ``unit`` can be stored in ``canonical``."""
    return linear(unit, canonical) is not None
