"""``plantstream detect show|set|history``: detector settings, validated and versioned."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console

from plantstream.detect.config import DetectionConfig, config_history, current_config, save_config
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.runtime import Runtime
from plantstream.settings import load_settings

app = typer.Typer(help="Detector settings: thresholds, rules per facility, machine type, machine.")
console = Console()


def _connect() -> psycopg.Connection:
    runtime = Runtime(load_settings())
    runtime.migrate()
    return runtime.connect()


@app.command()
def show() -> None:
    """Print the settings in force as JSON (edit it and pass it to ``detect set``)."""
    with _connect() as conn:
        version, config = current_config(conn)
    console.print_json(json.dumps({"version": version, **config.model_dump(mode="json")}))


@app.command("set")
def set_(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a JSON file")],
    comment: Annotated[str, typer.Option("--comment", help="why it changed")] = "",
) -> None:
    """Validate a settings file and make it the new version."""
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidInputError(
            ErrorCode.INVALID_CONFIG, f"{path} is not valid JSON: {exc}"
        ) from None
    if isinstance(raw, dict):
        raw.pop("version", None)  # a `detect show` dump may be fed back as it is
    try:
        config = DetectionConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInputError(ErrorCode.INVALID_CONFIG, f"{where}: {first['msg']}") from None
    with _connect() as conn:
        version = save_config(conn, config, author=f"cli:{getpass.getuser()}", comment=comment)
    console.print(f"detection settings version {version} saved")


@app.command()
def history(limit: Annotated[int, typer.Option("--limit", min=1)] = 20) -> None:
    """Who changed the settings, when, and why."""
    with _connect() as conn:
        rows = config_history(conn, limit=limit)
    for row in rows:
        console.print(
            f"v{row['version']}  {row['created_at']:%Y-%m-%d %H:%M}  "
            f"{row['created_by']}  {row['comment']}",
            highlight=False,
        )
