"""A history file read in bounded chunks: CSV (every column as text, so one bad cell is one
rejected row, not a failed read) or Parquet (its own column types), through pyarrow.

Memory is bounded by the chunk: a CSV is read ``block_bytes`` at a time, a Parquet file
``chunk_rows`` rows at a time (pyarrow holds at most one row group's column chunks besides).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantstream.errors import ErrorCode, InvalidInputError

CSV_BLOCK_BYTES = 16 * 1024 * 1024


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - the extra is installed wherever tests run
        raise InvalidInputError(
            ErrorCode.UNREADABLE_FILE,
            'history import needs pyarrow: run "pip install plantstream[history]"',
        ) from None
    return pyarrow


@dataclass(slots=True)
class Chunk:
    """Rows ``first_row`` .. of a file (1-based data rows, the header not counted)."""

    batch: Any  # pyarrow.RecordBatch
    first_row: int
    done_units: int  # progress so far: bytes of a CSV, rows of a Parquet file


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    kind: str  # "csv" or "parquet"
    total_units: int  # bytes of a CSV, rows of a Parquet file
    columns: list[str]
    delimiter: str = ","


def open_source(path: Path, *, delimiter: str = ",") -> Source:
    """What ``path`` is (by its suffix: ``.parquet``/``.pq``, else CSV) and its columns."""
    pa = _pyarrow()
    if not path.is_file():
        raise InvalidInputError(ErrorCode.UNREADABLE_FILE, f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path)
            return Source(path, "parquet", meta.metadata.num_rows, list(meta.schema_arrow.names))
        import pyarrow.csv as pcsv

        with pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=64 * 1024),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
        ) as reader:
            names = list(reader.schema.names)
        return Source(path, "csv", path.stat().st_size, names, delimiter)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(ErrorCode.UNREADABLE_FILE, f"{path}: {exc}"[:300]) from None


def read_chunks(source: Source, *, chunk_rows: int, columns: list[str]) -> Iterator[Chunk]:
    """The file's rows, ``columns`` only, in chunks of bounded size."""
    pa = _pyarrow()
    row = 1
    try:
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            done = 0
            for batch in pq.ParquetFile(source.path).iter_batches(
                batch_size=chunk_rows, columns=columns
            ):
                done += batch.num_rows
                yield Chunk(batch, row, done)
                row += batch.num_rows
            return
        import pyarrow.csv as pcsv

        block = max(64 * 1024, min(CSV_BLOCK_BYTES, chunk_rows * 64))
        with (
            source.path.open("rb") as raw,
            pcsv.open_csv(
                raw,
                read_options=pcsv.ReadOptions(block_size=block, use_threads=True),
                parse_options=pcsv.ParseOptions(delimiter=source.delimiter),
                convert_options=pcsv.ConvertOptions(
                    column_types={name: pa.string() for name in source.columns},
                    include_columns=columns,
                    strings_can_be_null=True,
                ),
            ) as reader,
        ):
            for batch in reader:
                # the reader reads ahead a block or two: progress is where the file is
                yield Chunk(batch, row, min(raw.tell(), source.total_units))
                row += batch.num_rows
    except pa.ArrowInvalid as exc:  # a line with the wrong number of fields, bad UTF-8
        raise InvalidInputError(
            ErrorCode.UNREADABLE_FILE, f"{source.path} near data row {row}: {exc}"[:300]
        ) from None
