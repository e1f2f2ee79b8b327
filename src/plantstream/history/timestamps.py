"""A file's timestamp column as exact microseconds since the epoch, column-wise (pyarrow):
an offset when the text has one, else the mapping's ``--timezone``; every row that cannot be
read gets its own code (``invalid_timestamp``, ``timestamp_without_offset``,
``ambiguous_local_time``, ``nonexistent_local_time``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantstream.errors import ErrorCode

RowError = tuple[int, ErrorCode, str]  # index in the chunk, code, message
_OFFSET = r"([Zz]|[+-]\d\d(:?\d\d)?)$"
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT"})
_US = pa.timestamp("us")
_US_UTC = pa.timestamp("us", "UTC")


def parse_timestamps(
    column: Any, *, timezone: str | None, ambiguous: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], list[RowError]]:
    """(microseconds, valid mask, errors) for a pyarrow column of text or timestamps."""
    n = len(column)
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    errors: list[RowError] = []
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    missing = np.asarray(column.is_null(), dtype=bool)
    errors += [
        (i, ErrorCode.INVALID_TIMESTAMP, "the timestamp is empty")
        for i in np.flatnonzero(missing).tolist()
    ]
    if pa.types.is_timestamp(column.type):
        if column.type.tz is not None:
            _fill(out, ok, ~missing, pc.cast(column, _US_UTC))
        else:
            _local(column.cast(_US), ~missing, timezone, ambiguous, out, ok, errors)
        return out, ok, errors
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        errors += [
            (i, ErrorCode.INVALID_TIMESTAMP, f"a {column.type} column is not a timestamp")
            for i in np.flatnonzero(~missing).tolist()
        ]
        return out, ok, errors
    column = pc.utf8_trim_whitespace(column)
    has_offset = np.asarray(pc.match_substring_regex(column, _OFFSET).fill_null(False))
    for mask, aware in ((~missing & has_offset, True), (~missing & ~has_offset, False)):
        if not mask.any():
            continue
        index = np.flatnonzero(mask)
        part = column.take(pa.array(index))
        try:
            parsed = pc.cast(part, _US_UTC if aware else _US)
        except pa.ArrowInvalid:  # some row is not a timestamp: read this part row by row
            parsed, bad = _row_by_row(part, aware)
            errors += [
                (int(index[j]), ErrorCode.INVALID_TIMESTAMP, f"not a timestamp: {text!r}")
                for j, text in bad
            ]
        if aware:
            sub_out = np.zeros(len(part), dtype=np.int64)
            sub_ok = np.zeros(len(part), dtype=bool)
            _fill(sub_out, sub_ok, np.ones(len(part), dtype=bool), parsed)
        else:
            sub_out, sub_ok, sub_errors = _local_part(parsed, timezone, ambiguous)
            errors += [(int(index[j]), code, message) for j, code, message in sub_errors]
        out[index] = sub_out
        ok[index] = sub_ok
    return out, ok, errors


def _fill(out: npt.NDArray[np.int64], ok: npt.NDArray[np.bool_], where: Any, parsed: Any) -> None:
    values = parsed.cast(pa.int64())
    valid = np.asarray(values.is_valid(), dtype=bool)
    out[:] = np.where(valid, values.fill_null(0).to_numpy(zero_copy_only=False), 0)
    ok[:] = where & valid


def _row_by_row(part: Any, aware: bool) -> tuple[Any, list[tuple[int, str]]]:
    """The texts of ``part`` parsed one by one (the rare chunk with a bad timestamp)."""
    values: list[datetime | None] = []
    bad: list[tuple[int, str]] = []
    for j, text in enumerate(part.to_pylist()):
        try:
            parsed = datetime.fromisoformat(text)
            if (parsed.tzinfo is not None) != aware:
                raise ValueError(text)
        except ValueError:
            values.append(None)
            bad.append((j, str(text)[:40]))
            continue
        values.append(parsed.astimezone(UTC) if aware else parsed)
    return pa.array(values, type=_US_UTC if aware else _US), bad


def _local(  # noqa: PLR0917 - in, bounds, out
    naive: Any,
    where: npt.NDArray[np.bool_],
    timezone: str | None,
    ambiguous: str,
    out: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    errors: list[RowError],
) -> None:
    sub_out, sub_ok, sub_errors = _local_part(naive, timezone, ambiguous)
    out[:] = sub_out
    ok[:] = sub_ok & where
    errors += [e for e in sub_errors if where[e[0]]]


def _local_part(
    naive: Any, timezone: str | None, ambiguous: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], list[RowError]]:
    """Naive timestamps read in ``timezone``: each refused without one, or where the zone's
    clock repeats (ambiguous, unless told which) or skips (nonexistent) that local time."""
    n = len(naive)
    valid = np.asarray(naive.is_valid(), dtype=bool)
    if timezone is None:
        message = "timestamp has no UTC offset: give --timezone (the zone the file was written in)"
        refused: list[RowError] = [
            (j, ErrorCode.TIMESTAMP_WITHOUT_OFFSET, message) for j in np.flatnonzero(valid).tolist()
        ]
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), refused
    if timezone in _UTC_NAMES:
        early = naive.cast(pa.int64())
        late, skipped = early, early
    else:
        early = pc.assume_timezone(
            naive, timezone=timezone, ambiguous="earliest", nonexistent="earliest"
        ).cast(pa.int64())
        late = pc.assume_timezone(
            naive, timezone=timezone, ambiguous="latest", nonexistent="earliest"
        ).cast(pa.int64())
        skipped = pc.assume_timezone(
            naive, timezone=timezone, ambiguous="earliest", nonexistent="latest"
        ).cast(pa.int64())
    e = early.fill_null(0).to_numpy(zero_copy_only=False)
    lt = late.fill_null(0).to_numpy(zero_copy_only=False)
    s = skipped.fill_null(0).to_numpy(zero_copy_only=False)
    repeated = valid & (e != lt)
    gap = valid & (e != s)
    errors: list[RowError] = [
        (j, ErrorCode.NONEXISTENT_LOCAL_TIME, f"that local time does not exist in {timezone}")
        for j in np.flatnonzero(gap).tolist()
    ]
    chosen = lt if ambiguous == "latest" else e
    ok: npt.NDArray[np.bool_] = valid & ~gap
    if ambiguous == "reject":
        ok &= ~repeated
        errors += [
            (
                j,
                ErrorCode.AMBIGUOUS_LOCAL_TIME,
                f"that local time occurs twice in {timezone}: give --ambiguous earliest|latest",
            )
            for j in np.flatnonzero(repeated & ~gap).tolist()
        ]
    return np.asarray(chosen, dtype=np.int64), ok, errors
