"""``plantstream import``'s core: a file read in chunks, each chunk's readings checked, the
refused ones written to the rejects file (row, column, code, message), the rest stored exactly
once (``history/store.py``), and a summary of it all.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from psycopg_pool import ConnectionPool

from plantstream.history.chunk import Candidates, RowReject, chunk_candidates
from plantstream.history.mapping import ColumnMapping, mapping_error
from plantstream.history.source import Chunk, open_source, read_chunks
from plantstream.history.store import HistoryStore, Written, retention_cutoff_us
from plantstream.model import now_us
from plantstream.processor.rows import Columns
from plantstream.processor.writer import CopyReady
from plantstream.store.rollup_repair import repair_rollups

Prepared = tuple[Columns, CopyReady]

REJECTS_HEADER = ("row", "column", "code", "message")
Progress = Callable[[int, int], None]  # (done, total) in the source's units


@dataclass(slots=True)
class Summary:
    """What an import did. ``readings`` = stored + duplicates + rejected (the books balance);
    ``empty_cells`` are empty cells of a wide file: no reading, so not in ``readings``."""

    files: int = 0
    rows_read: int = 0
    readings: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    empty_cells: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    past_retention: int = 0  # stored although older than the retention horizon (told to)
    repaired: int = 0  # rollup buckets recomputed after the import (history between readings)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "rows_read": self.rows_read,
            "readings": self.readings,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "empty_cells": self.empty_cells,
            "rejected": self.rejected_total,
            "rejected_by_code": dict(sorted(self.rejected.items())),
            "stored_past_retention": self.past_retention,
            "rollup_buckets_repaired": self.repaired,
        }


class RejectsFile:
    """The rejects CSV: a header, then one line per refused reading (file, row, ...)."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(("file", *REJECTS_HEADER))

    def write(self, path: Path, rejects: list[RowReject]) -> None:
        self._writer.writerows(
            (path.name, r.row, r.column, r.code, r.message)
            for r in sorted(rejects, key=lambda r: (r.row, r.column))
        )


class FileImporter:
    """Imports files for one facility through a ``HistoryStore``; one instance per run."""

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        store: HistoryStore,
        chunk_rows: int,
        max_future_us: int,
        rejects: RejectsFile | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.chunk_rows = chunk_rows
        self.max_future_us = max_future_us
        self.rejects = rejects
        self.summary = Summary()

    def import_file(
        self, path: Path, mapping: ColumnMapping, progress: Progress | None = None
    ) -> Summary:
        """Add ``path``'s readings; returns the running summary (all files so far)."""
        source = open_source(path, delimiter=mapping.delimiter)
        signal_columns = {} if mapping.long else mapping.signal_columns(source.columns)
        missing = [c for c in mapping.required_columns() if c not in source.columns]
        if missing:
            raise mapping_error(
                f"{path.name} has no column {missing[0]!r}; it has {source.columns[:20]}"
            )
        columns = [*mapping.required_columns(), *signal_columns]
        summary = self.summary
        summary.files += 1
        cutoff = retention_cutoff_us(self.store.retention_days)
        chunks = read_chunks(source, chunk_rows=self.chunk_rows, columns=columns)

        def read_next() -> tuple[Chunk, Candidates, Prepared | None] | None:
            chunk = next(chunks, None)
            if chunk is None:
                return None
            candidates = chunk_candidates(
                chunk.batch,
                chunk.first_row,
                mapping,
                self.store.catalog,
                signal_columns,
                received_us=now_us(),
                max_future_us=self.max_future_us,
            )
            past = int((candidates.ts_us < cutoff).sum()) if self.store.past_retention else 0
            with self.pool.connection() as conn:
                prepared = self.store.prepare(conn, mapping.facility, candidates)
            summary.past_retention += past
            return chunk, candidates, prepared

        # the next chunk is read, checked and encoded (pyarrow and numpy, mostly without the
        # GIL) while this one is written: two chunks in memory at most
        with ThreadPoolExecutor(1, thread_name_prefix="history-read") as reader:
            ahead = reader.submit(read_next)
            while (got := ahead.result()) is not None:
                chunk, candidates, prepared = got
                ahead = reader.submit(read_next)
                summary.rows_read += chunk.batch.num_rows
                summary.empty_cells += candidates.empty
                written = Written()
                if prepared is not None:
                    with self.pool.connection() as conn:
                        written = self.store.commit(conn, mapping.facility, prepared)
                self._count(path, written, candidates.rejects)
                if progress is not None:
                    progress(chunk.done_units, source.total_units)
        return summary

    def finish(self) -> Summary:
        """Recompute the rollup buckets the import made dirty (history that fell between
        stored readings), in bounded passes until none is left: a standalone import leaves
        every bucket exact without waiting for a processor's repair pass."""
        while True:
            with self.pool.connection() as conn:
                done = repair_rollups(conn)
            self.summary.repaired += sum(done.repaired)
            if not done.full:
                return self.summary

    def _count(self, path: Path, written: Written, rejects: list[RowReject]) -> None:
        summary = self.summary
        summary.stored += written.stored
        summary.duplicates += written.duplicates
        summary.conflicts += written.conflicts
        summary.rejected.update(r.code for r in rejects)
        summary.readings += written.stored + written.duplicates + len(rejects)
        if self.rejects is not None and rejects:
            self.rejects.write(path, rejects)
