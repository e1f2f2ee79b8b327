"""``plantstream evaluate FILE...``: replay labeled recordings through the real detection
engine and score it, NAB-style (windows, false positives, delay) and point-wise (F1, false
alarm rate, missed alarm rate).

It runs on the configured services (embedded by default) in a scratch facility that is
removed afterwards; the detection settings are those in force unless ``--defaults``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from plantstream.detect.config import DetectionConfig, current_config
from plantstream.detect.evaluate.dataset import load_csv
from plantstream.detect.evaluate.replay import Replay
from plantstream.detect.evaluate.scoring import score
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.runtime import Runtime
from plantstream.settings import load_settings

console = Console()


def evaluate(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="labeled CSV files")
    ],
    labels: Annotated[
        str | None, typer.Option("--labels", help="the label column (1 = anomalous)")
    ] = None,
    windows: Annotated[
        Path | None,
        typer.Option("--windows", exists=True, dir_okay=False, help="labeled windows, JSON"),
    ] = None,
    time_column: Annotated[
        str | None, typer.Option("--time-column", help="default: the first column")
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="a column that is no signal")
    ] = None,
    train_rows: Annotated[
        int, typer.Option("--train-rows", min=0, help="rows of history per file, not scored")
    ] = 0,
    metric: Annotated[
        str | None, typer.Option("--metric", help="judge every column as this metric")
    ] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="the built-in settings, not those in force")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--json", help="also write the scores here")
    ] = None,
) -> None:
    """Score detection on labeled recordings (a timestamp column, value columns, labels)."""
    recordings = [
        load_csv(
            path,
            time_column=time_column,
            label_column=labels,
            windows=windows,
            ignore=tuple(ignore or ()),
            train_rows=train_rows,
            name=path.stem if len(files) == 1 else f"{path.parent.name}-{path.stem}",
        )
        for path in files
    ]
    runtime = Runtime(load_settings())
    try:
        runtime.migrate()
        config = DetectionConfig()
        if not defaults:
            with runtime.connect() as conn:
                config = current_config(conn)[1]
        try:
            replay = Replay(
                database_url=runtime.database_url,
                redis_client=runtime.redis("state"),
                config=config,
                metric=metric,
            ).run(recordings)
        except ValueError as exc:
            raise InvalidInputError(ErrorCode.INVALID_DATASET, str(exc)) from None
    finally:
        runtime.close()
    scores = score(recordings, replay.alarms)
    nab, point = scores["nab"], scores["pointwise"]
    console.print(
        f"{len(recordings)} recording(s), {replay.readings:,} readings replayed\n"
        f"windows detected {nab['windows_detected']}/{nab['windows']}, "
        f"false positives {nab['false_positives']} "
        f"({nab['false_positives_per_month']} per month), "
        f"median delay {nab['median_delay_s']} s\n"
        f"point-wise F1 {point['f1']}, false alarm rate {point['false_alarm_rate']}, "
        f"missed alarm rate {point['missed_alarm_rate']}",
        highlight=False,
    )
    if output is not None:
        output.write_text(json.dumps(scores, indent=2) + "\n")
