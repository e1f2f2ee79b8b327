"""``plantstream services start|stop|status``: the embedded PostgreSQL and Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from plantstream.local import EmbeddedServices, mask_url
from plantstream.settings import load_settings

app = typer.Typer(help="Manage the embedded PostgreSQL and Redis used for development.")
console = Console()

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="where the servers keep their files")
]


def _services(data_dir: Path | None) -> EmbeddedServices:
    settings = load_settings()
    return EmbeddedServices(data_dir or settings.data_dir)


@app.command()
def start(data_dir: DataDir = None) -> None:
    """Start both servers (or reuse them if running) and print where they listen."""
    services = _services(data_dir)
    database_url, redis_url = services.start()
    console.print(f"postgres  {mask_url(database_url)}")
    console.print(f"redis     {mask_url(redis_url)}")


@app.command()
def stop(data_dir: DataDir = None) -> None:
    """Stop both servers cleanly."""
    stopped = _services(data_dir).stop()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Show whether each server runs; exit 1 if one does not."""
    rows = _services(data_dir).status()
    table = Table("service", "state", "url")
    for row in rows:
        table.add_row(row.name, "running" if row.running else "stopped", row.url or "")
    console.print(table)
    if not all(row.running for row in rows):
        raise typer.Exit(1)
