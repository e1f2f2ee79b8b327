"""Labeled recordings for evaluation: a CSV with a timestamp column, value columns and labels
as a column (1 = anomalous) or as windows (a JSON file in NAB's ``combined_windows`` form).

Bad input is refused with ``invalid_dataset`` and says where; nothing is guessed silently
except the separator (``,`` or ``;``) and which columns hold numbers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from plantstream.errors import ErrorCode, InvalidInputError

MAX_ROWS = 5_000_000  # per file: an explicit bound, about 40 MB of values per column


@dataclass(frozen=True)
class LabeledSeries:
    """One recording: times, values per column, a label per row, the labeled windows."""

    name: str
    ts_us: npt.NDArray[np.int64]
    columns: tuple[str, ...]
    values: npt.NDArray[np.float64]  # rows x columns
    labels: npt.NDArray[np.bool_]
    windows: tuple[tuple[int, int], ...]  # (start_us, end_us), inclusive
    train_rows: int = 0  # history before scoring starts (learned from, never scored)

    @property
    def interval_s(self) -> float:
        return float(np.median(np.diff(self.ts_us))) / 1e6 if len(self.ts_us) > 1 else 0.0


def _bad(message: str) -> InvalidInputError:
    return InvalidInputError(ErrorCode.INVALID_DATASET, message)


def parse_time(text: str) -> int:
    """Epoch microseconds of an ISO time (naive = UTC) or of epoch seconds."""
    text = text.strip()
    try:
        return round(float(text) * 1e6)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{text[:40]!r} is neither an ISO time nor epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1e6)


def windows_from_labels(
    ts_us: npt.NDArray[np.int64], labels: npt.NDArray[np.bool_]
) -> list[tuple[int, int]]:
    """Contiguous runs of labeled rows as (first, last) times."""
    if not labels.any():
        return []
    edges = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(int(ts_us[a]), int(ts_us[b])) for a, b in zip(starts, ends, strict=True)]


def load_windows(path: Path, name: str) -> list[tuple[int, int]]:
    """Windows for recording ``name`` from a JSON file: NAB's ``{"dir/file.csv": [[a, b]]}``
    (matched by file name) or a plain list of ``[start, end]`` pairs."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _bad(f"{path}: {exc}") from None
    if isinstance(raw, dict):
        found = [v for k, v in raw.items() if Path(k).name == name]
        if not found:
            raise _bad(f"{path} has no windows for {name!r}")
        raw = found[0]
    if not isinstance(raw, list) or not all(isinstance(w, list) and len(w) == 2 for w in raw):
        raise _bad(f"{path}: windows must be [start, end] pairs")
    return [(parse_time(str(a)), parse_time(str(b))) for a, b in raw]


def load_csv(
    path: Path,
    *,
    time_column: str | None = None,
    label_column: str | None = None,
    windows: Path | None = None,
    ignore: tuple[str, ...] = (),
    train_rows: int = 0,
    name: str | None = None,
) -> LabeledSeries:
    """A labeled recording; labels from ``label_column`` or ``windows`` (rows inside a
    window are anomalous), exactly one of them."""
    if (label_column is None) == (windows is None):
        raise _bad("give labels either as a column or as a windows file, exactly one")
    try:
        text = path.read_text()
    except OSError as exc:
        raise _bad(f"{path}: {exc}") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if len(rows) < 3:
        raise _bad(f"{path}: a header and at least two rows are needed")
    if len(rows) - 1 > MAX_ROWS:
        raise _bad(f"{path}: more than {MAX_ROWS:,} rows")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if r]
    time_column = time_column or header[0]
    for wanted in (time_column, label_column):
        if wanted is not None and wanted not in header:
            raise _bad(f"{path}: no column {wanted!r} (has {', '.join(header)})")
    t_index = header.index(time_column)
    skip = {time_column, label_column, *ignore}
    value_columns = [i for i, h in enumerate(header) if h not in skip]
    try:
        ts = np.array([parse_time(r[t_index]) for r in body], dtype=np.int64)
        values = np.array([[float(r[i]) for i in value_columns] for r in body], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise _bad(f"{path}: a row is not numeric or is short: {exc}") from None
    if not np.isfinite(values).all():
        raise _bad(f"{path}: values must be finite numbers")
    order = np.argsort(ts, kind="stable")
    ts, values = ts[order], values[order]
    label_name = name or path.stem
    if label_column is not None:
        li = header.index(label_column)
        try:
            labels = np.array([float(r[li]) > 0 for r in body], dtype=bool)[order]
        except ValueError:
            raise _bad(f"{path}: labels in {label_column!r} must be 0 or 1") from None
        spans = windows_from_labels(ts, labels)
    elif windows is not None:
        spans = load_windows(windows, path.name)
        labels = np.zeros(len(ts), dtype=bool)
        for a, b in spans:
            labels |= (ts >= a) & (ts <= b)
    else:
        raise _bad("no labels")  # unreachable: checked above
    return LabeledSeries(
        name=label_name,
        ts_us=ts,
        columns=tuple(header[i] for i in value_columns),
        values=values,
        labels=labels,
        windows=tuple(spans),
        train_rows=min(max(0, train_rows), len(ts) - 1),
    )


__all__ = [
    "MAX_ROWS",
    "LabeledSeries",
    "load_csv",
    "load_windows",
    "parse_time",
    "windows_from_labels",
]
