"""``plantstream db migrate|retention``: schema and raw-data retention."""

from __future__ import annotations

import psycopg
import typer
from rich.console import Console

from plantstream.local import resolve_endpoints
from plantstream.settings import load_settings
from plantstream.store.partitions import drop_expired, ensure_window
from plantstream.store.schema import migrate as run_migrations

app = typer.Typer(help="Database schema and retention.")
console = Console()


@app.command()
def migrate() -> None:
    """Apply schema migrations (idempotent) and create the raw partitions ahead of need."""
    settings = load_settings()
    endpoints = resolve_endpoints(settings)
    revision = run_migrations(endpoints.database_url)
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        created = ensure_window(conn, past_days=settings.max_past_seconds // 86400 + 1)
    console.print(f"schema at revision {revision}; {len(created)} partitions created")


@app.command()
def retention() -> None:
    """Drop raw partitions older than PLANTSTREAM_RAW_RETENTION_DAYS (rollups are kept)."""
    settings = load_settings()
    endpoints = resolve_endpoints(settings)
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        dropped = drop_expired(conn, retention_days=settings.raw_retention_days)
    console.print(f"dropped {len(dropped)} partitions: {', '.join(dropped) or '-'}")
