"""One chunk of a file as candidate readings: every (row, signal) cell with its device, its
signal, its time and its typed value, checked by the same column-wise validation as the
processor (``model.validate_columns``); each refusal keeps its file row and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.history.mapping import ColumnMapping
from plantstream.history.timestamps import parse_timestamps
from plantstream.history.values import typed_cells
from plantstream.model import (
    SignalCatalog,
    TimeWindow,
    ValueType,
    signal_for,
    validate_columns,
)
from plantstream.model.values import TEXT_CODES

_METRICS_PER_CALL = 250  # validate_columns indexes metrics with a uint8


@dataclass(frozen=True, slots=True)
class RowReject:
    row: int  # 1-based data row of the file (header not counted); for HTTP: the index
    column: str
    code: str
    message: str


@dataclass(slots=True)
class Candidates:
    """Valid readings of a chunk, column-wise; ``device``/``metric`` index the name lists."""

    devices: list[str]
    metrics: list[str]
    device: npt.NDArray[np.int32]
    metric: npt.NDArray[np.int32]
    ts_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    vtype: npt.NDArray[np.uint8] | None
    ivalue: npt.NDArray[np.int64] | None
    text: npt.NDArray[np.object_] | None
    row: npt.NDArray[np.int64]
    column: list[str]  # the file column of each metric (wide) or the value column (long)
    rejects: list[RowReject] = field(default_factory=list)
    empty: int = 0  # wide cells left empty: no reading, not a refusal
    quality: npt.NDArray[np.int16] | None = None  # None: all good (a file has no quality)
    qcode: npt.NDArray[np.int64] | None = None  # the source's quality code, -1 for none

    def __len__(self) -> int:
        return len(self.ts_us)

    def take(self, keep: npt.NDArray[np.bool_]) -> Candidates:
        return Candidates(
            self.devices,
            self.metrics,
            self.device[keep],
            self.metric[keep],
            self.ts_us[keep],
            self.value[keep],
            None if self.vtype is None else self.vtype[keep],
            None if self.ivalue is None else self.ivalue[keep],
            None if self.text is None else self.text[keep],
            self.row[keep],
            self.column,
            self.rejects,
            self.empty,
            None if self.quality is None else self.quality[keep],
            None if self.qcode is None else self.qcode[keep],
        )

    def reject(self, where: npt.NDArray[np.bool_], code: str, message: str) -> None:
        for i in np.flatnonzero(where).tolist():
            m = int(self.metric[i])
            self.rejects.append(RowReject(int(self.row[i]), self.column[m], code, message))


def chunk_candidates(
    batch: Any,
    first_row: int,
    mapping: ColumnMapping,
    catalog: SignalCatalog,
    signal_columns: dict[str, str],
    *,
    received_us: int,
    max_future_us: int,
) -> Candidates:
    """The readings of one pyarrow ``batch`` of a file (rows ``first_row``..)."""
    n = batch.num_rows
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    rejects: list[RowReject] = []
    ts_us, ts_ok, ts_errors = parse_timestamps(
        batch.column(mapping.ts_column), timezone=mapping.timezone, ambiguous=mapping.ambiguous
    )
    rejects += [RowReject(int(rows[i]), mapping.ts_column, str(c), m) for i, c, m in ts_errors]
    if mapping.device is not None:
        devices, device = [mapping.device], np.zeros(n, dtype=np.int32)
        device_ok = np.ones(n, dtype=bool)
    else:
        devices, device, device_ok = _codes(batch.column(mapping.device_column))
        rejects += [
            RowReject(int(rows[i]), str(mapping.device_column), ErrorCode.INVALID_ID, "no device")
            for i in np.flatnonzero(~device_ok & ts_ok).tolist()
        ]
    row_ok = ts_ok & device_ok
    parts: list[tuple[npt.NDArray[np.intp], int, Any]] = []  # (rows, metric, cells)
    if mapping.long:
        metrics, metric, metric_ok = _codes(batch.column(mapping.metric_column))
        rejects += [
            RowReject(int(rows[i]), str(mapping.metric_column), ErrorCode.NULL_VALUE, "no metric")
            for i in np.flatnonzero(~metric_ok & row_ok).tolist()
        ]
        row_ok &= metric_ok
        values = batch.column(mapping.value_column)
        empty_value = np.asarray(values.is_null(), dtype=bool) & row_ok
        rejects += [
            RowReject(int(rows[i]), str(mapping.value_column), ErrorCode.NULL_VALUE, "no value")
            for i in np.flatnonzero(empty_value).tolist()
        ]
        row_ok &= ~empty_value
        order = np.argsort(metric, kind="stable")
        sorted_metric = metric[order]
        bounds = np.flatnonzero(np.diff(sorted_metric)) + 1
        for rows_of_metric in np.split(order, bounds):
            group = rows_of_metric[row_ok[rows_of_metric]]
            if len(group):
                parts.append((group, int(metric[group[0]]), values.take(pa.array(group))))
        columns = [str(mapping.value_column)] * len(metrics)
        empty = 0
    else:
        metrics = list(signal_columns.values())
        columns = list(signal_columns)
        empty = 0
        for m, column_name in enumerate(columns):
            cells = batch.column(column_name)
            present = np.asarray(cells.is_valid(), dtype=bool)
            empty += int(np.count_nonzero(~present & row_ok))
            group = np.flatnonzero(present & row_ok)
            if len(group):
                parts.append((group, m, cells.take(pa.array(group))))
    out = _assemble(parts, devices, device, metrics, columns, ts_us, rows, mapping, catalog)
    out.rejects = rejects + out.rejects
    out.empty = empty
    return _validated(out, mapping.facility, catalog, received_us, max_future_us)


def _codes(column: Any) -> tuple[list[str], npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Dictionary codes of a text column (nulls: code 0, marked not ok)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(column))
    ok = np.asarray(encoded.is_valid(), dtype=bool)
    codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
    return [str(x) for x in encoded.dictionary.to_pylist()], codes, ok


def _assemble(  # noqa: PLR0917 - the chunk's columns, passed as found
    parts: list[tuple[npt.NDArray[np.intp], int, Any]],
    devices: list[str],
    device: npt.NDArray[np.int32],
    metrics: list[str],
    columns: list[str],
    ts_us: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    mapping: ColumnMapping,
    catalog: SignalCatalog,
) -> Candidates:
    """Every cell of ``parts`` as one set of columns, typed by its signal."""
    index, metric, value, vtype, ints, texts, oks = [], [], [], [], [], [], []
    rejects: list[RowReject] = []
    typed = False
    for group, m, cells in parts:
        try:
            spec = signal_for(catalog, mapping.facility, metrics[m], None)
            value_type = spec.value_type
        except InvalidInputError:
            value_type = ValueType.DOUBLE  # refused with its reason by the validation below
        got = typed_cells(cells, value_type, metrics[m])
        rejects += [
            RowReject(int(rows[group[i]]), columns[m], str(c), msg) for i, c, msg in got.errors
        ]
        typed |= value_type is not ValueType.DOUBLE
        index.append(group)
        metric.append(np.full(len(group), m, dtype=np.int32))
        value.append(got.value)
        vtype.append(np.full(len(group), got.vtype, dtype=np.uint8))
        ints.append(got.ints if got.ints is not None else np.zeros(len(group), dtype=np.int64))
        texts.append(got.texts if got.texts is not None else np.full(len(group), None, object))
        oks.append(got.ok)
    if not index:
        empty_i = np.zeros(0, dtype=np.intp)
        return Candidates(
            devices, metrics, device[empty_i], np.zeros(0, np.int32), ts_us[empty_i],
            np.zeros(0), None, None, None, rows[empty_i], columns, rejects,
        )  # fmt: skip
    at = np.concatenate(index)
    ok = np.concatenate(oks)
    out = Candidates(
        devices,
        metrics,
        device[at],
        np.concatenate(metric),
        ts_us[at],
        np.concatenate(value),
        np.concatenate(vtype) if typed else None,
        np.concatenate(ints) if typed else None,
        np.concatenate(texts) if typed else None,
        rows[at],
        columns,
        rejects,
    )
    return out.take(ok) if not ok.all() else out


def _validated(
    c: Candidates, facility: str, catalog: SignalCatalog, received_us: int, max_future_us: int
) -> Candidates:
    """``c`` less what ``validate_columns`` refuses (per device, as the processor checks)."""
    if not len(c):
        return c
    window = TimeWindow(max_past_us=received_us + 2**62, max_future_us=max_future_us)
    ok = np.zeros(len(c), dtype=bool)
    group_key = c.device.astype(np.int64) * 1_000_000 + c.metric // _METRICS_PER_CALL
    order = np.argsort(group_key, kind="stable")
    bounds = np.flatnonzero(np.diff(group_key[order])) + 1
    quality = np.zeros(len(c), dtype=np.uint8)
    for group in np.split(order, bounds):
        first = int(c.metric[group[0]]) // _METRICS_PER_CALL * _METRICS_PER_CALL
        names = c.metrics[first : first + _METRICS_PER_CALL]
        group_ok, rejects = validate_columns(
            facility=facility,
            device=c.devices[int(c.device[group[0]])],
            metrics=names,
            metric_idx=(c.metric[group] - first).astype(np.uint8),
            ts_us=c.ts_us[group],
            values=c.value[group],
            quality=quality[group],
            received_us=received_us,
            window=window,
            catalog=catalog,
            vtype=None if c.vtype is None else c.vtype[group],
            ints=None if c.ivalue is None else c.ivalue[group],
            texts=None if c.text is None else c.text[group],
        )
        ok[group] = group_ok
        for i, error in rejects:
            at = int(group[i])
            c.rejects.append(
                RowReject(
                    int(c.row[at]), c.column[int(c.metric[at])], str(error.code), error.message
                )
            )
    if c.text is not None and c.vtype is not None:
        # validate_columns takes text as given; a kept text is a str (not None)
        ok &= ~(np.isin(c.vtype, np.array(sorted(TEXT_CODES), np.uint8)) & (c.text == None))  # noqa: E711
    return c.take(ok) if not ok.all() else c
