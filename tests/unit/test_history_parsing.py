"""The history import's column parsing (no I/O): timestamps with and without offsets, time
zones and DST, typed cells, and the mapping's refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from plantstream.errors import InvalidInputError
from plantstream.history import ColumnMapping, load_mapping
from plantstream.history.timestamps import parse_timestamps
from plantstream.history.values import typed_cells
from plantstream.model import ValueType


def _us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000  # type: ignore[misc]


def test_offsets_win_and_naive_times_are_read_in_the_zone() -> None:
    column = pa.array(
        [
            "2025-01-15T10:00:00+02:00",
            "2025-01-15 10:00:00",  # Berlin winter: UTC+1
            "2025-07-15 10:00:00.25",  # Berlin summer: UTC+2
            "2025-01-15T10:00:00Z",
            None,
            "soon",
        ]
    )
    ts, ok, errors = parse_timestamps(column, timezone="Europe/Berlin", ambiguous="reject")
    assert ok.tolist() == [True, True, True, True, False, False]
    assert ts[:4].tolist() == [
        _us(2025, 1, 15, 8),
        _us(2025, 1, 15, 9),
        _us(2025, 7, 15, 8) + 250_000,
        _us(2025, 1, 15, 10),
    ]
    assert sorted((i, str(code)) for i, code, _ in errors) == [
        (4, "invalid_timestamp"),
        (5, "invalid_timestamp"),
    ]


def test_no_zone_refuses_naive_times_and_dst_gaps_and_repeats_have_codes() -> None:
    naive = pa.array(["2025-03-30 02:30:00", "2025-10-26 02:30:00", "2025-10-26 04:00:00"])
    _, ok, errors = parse_timestamps(naive, timezone=None, ambiguous="reject")
    assert not ok.any()
    assert {str(code) for _, code, _ in errors} == {"timestamp_without_offset"}
    _, ok, errors = parse_timestamps(naive, timezone="Europe/Berlin", ambiguous="reject")
    assert ok.tolist() == [False, False, True]
    assert sorted((i, str(code)) for i, code, _ in errors) == [
        (0, "nonexistent_local_time"),
        (1, "ambiguous_local_time"),
    ]
    ts, ok, _ = parse_timestamps(naive, timezone="Europe/Berlin", ambiguous="earliest")
    assert ok.tolist() == [False, True, True]
    assert ts[1] == _us(2025, 10, 26, 0, 30)  # the first 02:30, still summer time


def test_typed_cells_keep_int64_exact_and_refuse_what_is_not_of_the_type() -> None:
    ints = typed_cells(pa.array(["9007199254740993", "12.0", "12.5", None]), ValueType.INT64, "n")
    assert ints.ok.tolist() == [True, True, False, False]
    assert ints.ints is not None
    assert ints.ints[:2].tolist() == [9007199254740993, 12]
    assert [(i, str(c)) for i, c, _ in ints.errors] == [(2, "invalid_reading")]
    flags = typed_cells(pa.array(["true", "OFF", "2"]), ValueType.BOOL, "running")
    assert (flags.ok.tolist(), flags.value[:2].tolist()) == ([True, True, False], [1.0, 0.0])
    numbers = typed_cells(pa.array([" 1.5", "x", "2e3"]), ValueType.DOUBLE, "t")
    assert numbers.ok.tolist() == [True, False, True]
    assert numbers.value[[0, 2]].tolist() == [1.5, 2000.0]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("facility: p\ndevice: m\nfoo: 1\n", "unknown key 'foo'"),
        ("facility: p\n", "exactly one of --device"),
        ("facility: p\ndevice: m\nmetric_column: s\n", "both --metric-column"),
        ("facility: p\ndevice: m\ntimezone: Mars/Olympus\n", "unknown timezone"),
        ("facility: p\ndevice: m\nsignals: [a]\n", "signals must map"),
        ("facility: p\n  device: [\n", "not valid YAML (line"),
    ],
)
def test_a_bad_mapping_file_says_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as refused:
        load_mapping(path)
    assert refused.value.code == "invalid_mapping"
    assert says in refused.value.message


def test_flags_win_over_the_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("facility: p\ndevice: m\ntimezone: UTC\n")
    mapping = load_mapping(path, timezone="Europe/Berlin", device=None)
    assert (mapping.facility, mapping.device, mapping.timezone) == ("p", "m", "Europe/Berlin")
    assert ColumnMapping(facility="p", device="m").signal_columns(["ts", "a", "b"]) == {
        "a": "a",
        "b": "b",
    }
