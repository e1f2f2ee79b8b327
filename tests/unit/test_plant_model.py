"""The plant model file: parsed into the hierarchy and catalog, refused with the line at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from plantstream.errors import ErrorCode, InvalidModelError
from plantstream.model.plantdiff import Action, diff
from plantstream.model.plantexport import model_document
from plantstream.model.plantfile import parse_model
from plantstream.model.signals import DEFAULT_SIGNALS, SignalKind, UnknownSignalPolicy, ValueType

PRESS_SHOP = Path(__file__).parents[1] / "data" / "plant" / "press-shop.yaml"


def issues_of(text: str, source: str = "plant.yaml") -> list[tuple[int, int, str]]:
    with pytest.raises(InvalidModelError) as caught:
        parse_model(text, source=source)
    assert caught.value.code is ErrorCode.INVALID_MODEL
    return [(line, column, message) for line, column, _, message in caught.value.issues]


def test_the_example_file_declares_hierarchy_types_and_typed_signals() -> None:
    parsed = parse_model(PRESS_SHOP.read_text(), source=str(PRESS_SHOP))
    model = parsed.model
    assert model.facility == "plant-a"
    assert model.unknown_signals is UnknownSignalPolicy.REGISTER
    assert model.machines["press-001"].line == "line-1"
    assert model.machines["press-001"].area == "stamping"  # a line's machines are in its area
    assert model.machines["crane-1"].area == "stamping"
    assert model.machines["crane-1"].line is None
    assert model.machines["compressor-1"].area is None
    assert "007" in model.machines  # an id is its text: YAML does not make it the number 7
    state = model.signals["state"]
    assert state.value_type is ValueType.STATE
    assert state.kind is SignalKind.STATE
    assert state.states == ("idle", "on", "off", "fault")  # not True/False as YAML 1.1 reads them
    parts = model.signals["parts"]
    assert (parts.value_type, parts.kind, parts.wrap) == (
        ValueType.INT64,
        SignalKind.COUNTER,
        2**32,
    )
    assert model.signals["running"].value_type is ValueType.BOOL
    # two probes of one quantity are two signals; a default signal may be named by reference
    assert {"oil_temp_in", "oil_temp_out"} <= set(model.machine_types["press"].signals)
    assert model.signals["temperature"] == DEFAULT_SIGNALS["temperature"]
    # a unit pint does not know is allowed, with a note saying it is never converted
    [(line, _, _, note)] = parsed.warnings
    assert line == 18
    assert "strokes/min" in note
    assert "no conversion" in note


def test_export_parses_back_to_the_same_model_as_yaml_and_json() -> None:
    model = parse_model(PRESS_SHOP.read_text(), source="a.yaml").model
    document = model_document(model)
    assert parse_model(yaml.safe_dump(document), source="b.yaml").model == model
    assert parse_model(json.dumps(document, indent="\t"), source="c.json").model == model
    assert diff(model, parse_model(json.dumps(document), source="d.json").model) == []


@pytest.mark.parametrize(
    ("text", "line", "column", "says"),
    [
        ("facility: plant a\n", 1, 11, "not a valid id"),
        ("machines: []\n", 1, 1, "'facility' is required"),
        ("facility: f\nmachnes: []\n", 2, 1, "did you mean 'machines'"),
        ("facility: f\nfacility: g\n", 2, 1, "appears twice (first on line 1)"),
        ("facility: f\nmachines:\n  - {id: m1, type: lathe}\n", 3, 20, "'lathe' is not declared"),
        ("facility: f\nmachines:\n  - {id: m1}\n  - {id: m1}\n", 4, 10, "declared twice"),
        ("facility: f\nunknown_signals: drop\n", 2, 18, "not one of refuse, register"),
        ("facility: f\nmachines: [{id: m}\n", 3, 1, "not valid YAML"),
        ("a: &x [1]\nb: *x\nfacility: f\n", 2, 1, "aliases are not supported"),
        ("facility: f\nm: &m {id: x}\nmachines: [{<<: *m}]\n", 3, 13, "merge keys"),
        ("facility: f\nmachines: [{id: !!python/name:os.system x}]\n", 2, 17, "unsupported type"),
    ],
)
def test_a_bad_document_names_the_line_and_column_and_what_is_wrong(
    text: str, line: int, column: int, says: str
) -> None:
    found = issues_of(text)
    assert any((ln, col) == (line, column) and says in message for ln, col, message in found), found


SIGNALS = """\
facility: f
signals:
  - {name: force, unit: kN, accepted_units: [N, degC, blorbs]}
  - {name: widgets, unit: widget/h, accepted_units: [1/h]}
  - {name: s, type: state}
  - {name: r, unit: bar, range: [10, 5]}
  - {name: k, kind: state}
  - {name: g, wrap: uint32}
  - {name: b, type: bool, unit: V}
  - {name: ok, unit: bar}
machine_types:
  - name: t
    signals:
      - {name: ok, unit: kPa}
      - nowhere
"""


def test_signal_declarations_are_checked_with_units_from_pint() -> None:
    found = {(line, column): message for line, column, message in issues_of(SIGNALS)}
    assert "'degC' cannot be converted to 'kN' (another quantity)" in found[(3, 49)]
    assert "pint does not know the unit 'blorbs'" in found[(3, 55)]
    # only where it matters does the message say an unknown unit converts identity-only
    assert "identity-only" in found[(4, 54)]
    assert not any("identity-only" in m for at, m in found.items() if at != (4, 54))
    assert "lists its states" in found[(5, 5)]
    assert "low (10) must be below high (5)" in found[(6, 34)]
    assert "rolled up as gauge or counter" in found[(7, 21)]
    assert "only a counter wraps" in found[(8, 21)]
    assert "only a double or int64 signal has units" in found[(9, 33)]
    assert "declared differently on line 10" in found[(14, 9)]
    assert "'nowhere' is declared nowhere" in found[(15, 9)]


def test_json_errors_carry_json_positions() -> None:
    [(line, column, message)] = issues_of('{\n  "facility": "f",\n  "machines": [,]\n}', "p.json")
    assert (line, column) == (3, 16)
    assert "not valid JSON" in message
    found = issues_of('{\n  "facility": "f",\n  "machines": [{"id": 7, "tipe": "x"}]\n}', "p.json")
    assert any(line == 3 and "unknown key 'tipe'" in m for line, _, m in found), found


def test_the_error_message_starts_with_file_line_and_column() -> None:
    with pytest.raises(InvalidModelError) as caught:
        parse_model("facility: f\nmachines:\n  - {id: a b}\n  - {idd: x}\n", source="shop.yaml")
    assert str(caught.value).startswith("shop.yaml:3:10: machines[0].id: 'a b' is not a valid id")
    assert str(caught.value).endswith("(and 2 more)")


def test_diff_says_what_was_created_changed_and_removed() -> None:
    old = parse_model("facility: f\nareas: [{id: a}]\nmachines: [{id: m1}, {id: m2}]\n", source="x")
    new = parse_model(
        "facility: f\nareas: [{id: b}]\nmachines: [{id: m1, name: One}, {id: m3}]\n", source="y"
    )
    changes = {(c.action, c.kind, c.key) for c in diff(old.model, new.model)}
    assert changes == {
        (Action.CREATED, "area", "b"),
        (Action.REMOVED, "area", "a"),
        (Action.CHANGED, "machine", "m1"),
        (Action.CREATED, "machine", "m3"),
        (Action.REMOVED, "machine", "m2"),
    }


def test_bounds_are_errors_not_crashes() -> None:
    deep = "facility: f\nsignals: " + "[" * 40 + "]" * 40 + "\n"
    assert any("nested deeper" in m for _, _, m in issues_of(deep))
    with pytest.raises(InvalidModelError, match="larger than"):
        parse_model(b"#" * (9 * 1024 * 1024), source="big.yaml")
    with pytest.raises(InvalidModelError, match="not UTF-8"):
        parse_model(b"facility: \xff\n", source="bin.yaml")
