"""Hostile model documents: each answers InvalidModelError (a 400 with a code), never a crash
or a hang; unit conversions pint cannot express as factor and offset are refused."""

from __future__ import annotations

import time

import pytest

from plantstream.errors import ErrorCode, InvalidModelError
from plantstream.model import units
from plantstream.model.plantfile import parse_model


def _signal(unit: str, accepted: str = "") -> str:
    extra = f", accepted_units: ['{accepted}']" if accepted else ""
    return f"facility: f\nsignals:\n  - {{name: s1, unit: '{unit}'{extra}}}\n"


def test_deeply_nested_json_is_an_error_not_a_recursion_crash() -> None:
    for text in ("[" * 100_000, '{"facility": ' + "[" * 5_000 + "]" * 5_000 + "}"):
        with pytest.raises(InvalidModelError) as caught:
            parse_model(text, source="deep.json")
        assert caught.value.code is ErrorCode.INVALID_MODEL


@pytest.mark.parametrize("unit", ["1/0", "m/0", "m^(2", "m**(", "kg**1e999", ")("])
def test_a_unit_pint_chokes_on_is_unknown_not_a_crash(unit: str) -> None:
    assert units.is_known(unit) is False
    assert units.linear(unit, "m") is None
    with pytest.raises(InvalidModelError) as caught:
        parse_model(_signal("m", accepted=unit), source="plant.yaml")
    assert (caught.value.issues[0][0], caught.value.issues[0][1]) == (3, 44)
    # as a canonical unit it is merely unknown to pint: a warning, not a crash
    assert parse_model(_signal(unit), source="plant.yaml").warnings


@pytest.mark.parametrize("unit", ["9**9**9", "m**9**9**9", "(((9**99)**99)**99)**99", "m^9^9^9"])
def test_a_unit_with_a_huge_exponent_is_refused_at_once(unit: str) -> None:
    started = time.monotonic()
    assert units.is_known(unit) is False
    with pytest.raises(InvalidModelError):
        parse_model(_signal("m", accepted=unit), source="plant.yaml")
    assert time.monotonic() - started < 2.0


def test_plain_exponents_still_parse() -> None:
    for unit in ("m**3/h", "m^2", "s**-1", "m/s**2", "kg*m**2"):
        assert units.is_known(unit), unit
    assert units.linear("m**2", "cm**2") == pytest.approx((10_000.0, 0.0))


def test_a_logarithmic_unit_is_not_converted_as_if_it_were_linear() -> None:
    assert units.linear("degF", "degC") == pytest.approx((5 / 9, -160 / 9))
    assert units.linear("dBm", "W") is None  # 10 dBm is 10 mW, 20 dBm is 100 mW
    text = _signal("W", accepted="dBm")
    with pytest.raises(InvalidModelError, match="'dBm' cannot be converted to 'W'"):
        parse_model(text, source="plant.yaml")
