"""``plantstream db migrate|retention``: schema and raw-data retention."""

from __future__ import annotations

import typer
from rich.console import Console

from plantstream.runtime import Runtime
from plantstream.settings import load_settings
from plantstream.store.partitions import drop_expired

app = typer.Typer(help="Database schema and retention.")
console = Console()


@app.command()
def migrate() -> None:
    """Apply schema migrations (idempotent) and create the raw partitions ahead of need."""
    runtime = Runtime(load_settings())
    revision = runtime.migrate()
    created = runtime.ensure_partitions()
    console.print(f"schema at revision {revision}; {len(created)} partitions created")


@app.command()
def retention() -> None:
    """Drop raw partitions older than PLANTSTREAM_RAW_RETENTION_DAYS (rollups are kept)."""
    runtime = Runtime(load_settings())
    with runtime.connect() as conn:
        dropped = drop_expired(conn, retention_days=runtime.settings.raw_retention_days)
    console.print(f"dropped {len(dropped)} partitions: {', '.join(dropped) or '-'}")
