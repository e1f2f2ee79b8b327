"""``plantstream import FILE...``: load history (CSV, Parquet) of any age into PostgreSQL,
exactly once, with a rejects file and a summary (docs/history.md)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress as Bar
from rich.progress import TaskID

from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.history import (
    ColumnMapping,
    FileImporter,
    HistoryStore,
    RejectsFile,
    Summary,
    load_mapping,
)
from plantstream.history.importer import Progress
from plantstream.runtime import Runtime
from plantstream.settings import load_settings
from plantstream.store.catalog import StoreCatalog

console = Console(highlight=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)


def _signals(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, name = pair.partition("=")
        if not sep or not column or not name:
            raise InvalidInputError(
                ErrorCode.INVALID_MAPPING, f"--signal takes COLUMN=SIGNAL, got {pair!r}"
            )
        out[column] = name
    return out


def import_files(
    files: Annotated[
        list[Path], typer.Argument(help="CSV or Parquet files (.parquet/.pq), in order")
    ],
    facility: Annotated[str | None, typer.Option(help="the facility the readings are of")] = None,
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping", help="a YAML mapping file (flags win)")
    ] = None,
    ts_column: Annotated[str | None, typer.Option(help="timestamp column (default: ts)")] = None,
    timezone: Annotated[
        str | None,
        typer.Option(help="IANA zone of timestamps without an offset (else they are refused)"),
    ] = None,
    ambiguous: Annotated[
        str | None, typer.Option(help="a repeated DST local time: reject, earliest or latest")
    ] = None,
    delimiter: Annotated[str | None, typer.Option(help="a CSV's delimiter (default ,)")] = None,
    device: Annotated[str | None, typer.Option(help="one device for the whole file")] = None,
    device_column: Annotated[str | None, typer.Option(help="the column naming devices")] = None,
    metric_column: Annotated[
        str | None, typer.Option(help="long form: the column naming each row's signal")
    ] = None,
    value_column: Annotated[
        str | None, typer.Option(help="long form: the column of each row's value")
    ] = None,
    signal: Annotated[
        list[str] | None,
        typer.Option(help="wide form: COLUMN=SIGNAL (repeat); default every other column"),
    ] = None,
    rejects: Annotated[
        Path, typer.Option(help="CSV of refused readings: file, row, column, code, message")
    ] = Path("rejects.csv"),
    past_retention: Annotated[
        bool,
        typer.Option(
            "--past-retention",
            help="store readings older than the raw retention too (the retention job will "
            "drop their raw rows; rollups stay)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Import history files: stored exactly once (a second import changes nothing).

    Exits 1 when some readings were refused (each is in the rejects file), 2 when the import
    could not run at all.
    """
    overrides = {
        "facility": facility,
        "ts_column": ts_column,
        "timezone": timezone,
        "ambiguous": ambiguous,
        "delimiter": delimiter,
        "device": device,
        "device_column": device_column,
        "metric_column": metric_column,
        "value_column": value_column,
        "signals": _signals(signal or []),
    }
    if mapping_file is not None:
        mapping = load_mapping(mapping_file, **overrides)
    else:
        if not facility:
            raise InvalidInputError(ErrorCode.INVALID_MAPPING, "give --facility or --mapping")
        mapping = ColumnMapping(facility=facility).with_overrides(**overrides).checked()
    settings = load_settings()
    runtime = Runtime(settings)
    runtime.migrate()
    pool = runtime.pool(max_size=2)
    started = time.monotonic()
    try:
        store = HistoryStore(
            catalog=StoreCatalog.from_settings(settings, pool),
            retention_days=settings.raw_retention_days,
            past_retention=past_retention,
            max_sensors_per_facility=settings.quota_max_sensors_per_facility,
        )
        with rejects.open("w", newline="", encoding="utf-8") as out:
            importer = FileImporter(
                pool=pool,
                store=store,
                chunk_rows=settings.history_chunk_rows,
                max_future_us=settings.max_future_seconds * 1_000_000,
                rejects=RejectsFile(out),
            )
            for path in files:
                with _progress(path) as progress:
                    importer.import_file(path, mapping, progress)
            importer.finish()
    finally:
        pool.close()
        runtime.close()
    _report(importer.summary, time.monotonic() - started, rejects, as_json=as_json)
    if importer.summary.rejected_total:
        raise typer.Exit(1)


class _progress:
    """A progress bar (rich, on a terminal) or a plain stderr line per chunk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._bar: Bar | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            self._bar = Bar(console=err, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.path.name, total=None)

        def update(done: int, total: int) -> None:
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, completed=done, total=total)
            else:
                pct = 100.0 * done / total if total else 100.0
                print(f"{self.path.name}: {pct:5.1f}%", file=sys.stderr, flush=True)

        return update

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _report(summary: Summary, seconds: float, rejects: Path, *, as_json: bool) -> None:
    if as_json:
        console.print(json.dumps({**summary.as_dict(), "seconds": round(seconds, 3)}))
        return
    rate = summary.readings / seconds if seconds > 0 else 0.0
    console.print(
        f"{summary.files} file(s), {summary.rows_read} rows read, {summary.readings} readings "
        f"in {seconds:.1f} s ({rate:,.0f}/s): {summary.stored} stored, "
        f"{summary.duplicates} duplicates ({summary.conflicts} with another value), "
        f"{summary.rejected_total} rejected"
    )
    for code, n in sorted(summary.rejected.items()):
        console.print(f"  rejected {code}: {n}")
    if summary.empty_cells:
        console.print(f"  empty cells (no reading): {summary.empty_cells}")
    if summary.rejected_total:
        console.print(f"  each rejected reading is in {rejects}")
    if summary.past_retention:
        console.print(
            f"  warning: {summary.past_retention} readings are older than the raw retention; "
            "the retention job will drop their raw rows (their rollups stay)"
        )
