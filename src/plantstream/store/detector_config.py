"""Every statement on the ``detector_config`` table: versions of the detector settings,
one row per change with who made it and when; the newest row is in force."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def newest(*, conn: psycopg.Connection) -> tuple[int, Any] | None:
    """(version, settings as JSON) of the newest row; None while there is none."""
    row = conn.execute("SELECT id, config FROM detector_config ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), row[1])


def insert(*, conn: psycopg.Connection, config: dict[str, Any], author: str, comment: str) -> int:
    """Record a new version; its number."""
    row = conn.execute(
        "INSERT INTO detector_config (config, created_by, comment) VALUES (%s, %s, %s) "
        "RETURNING id",
        (Jsonb(config), author, comment),
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("config insert returned nothing")
    return int(row[0])


def history(*, conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    """Versions newest first: version, created_at, created_by, comment, config."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id AS version, created_at, created_by, comment, config "
            "FROM detector_config ORDER BY id DESC LIMIT %s",
            (limit,),
        ).fetchall()


__all__ = ["history", "insert", "newest"]
