"""The machines of a facility as the dashboard lists them: declared and unplaced, filtered.

A machine is declared (``machines``) or merely known from its readings (a device in
``sensors`` with no declared place: shown under its facility as unplaced, as before the
plant model existed). Its state comes from Redis (the newest timestamp among its latest
values) and from open alerts. Every read is bounded: the facility's machines are bounded by
the model's and the sensor quota's limits, Redis is walked with ``HSCAN`` pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import redis

from plantstream.store import latest_pages

SCAN_PAGE = 10_000  # latest values per HSCAN call


@dataclass(frozen=True, slots=True)
class MachineRow:
    id: str
    name: str
    machine_type: str | None
    area: str | None
    line: str | None
    placed: bool


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def machines(
    *,
    conn: psycopg.Connection,
    facility: str,
    search: str = "",
    area: str | None = None,
    line: str | None = None,
    machine_type: str | None = None,
) -> list[MachineRow]:
    """Machines of ``facility`` matching the filters, sorted by id (unplaced devices too,
    unless a place or type is asked for). ``search`` matches id or name, case-insensitive."""
    placed_only = area is not None or line is not None or machine_type is not None
    rows = conn.execute(
        """
        SELECT id, name, machine_type, area, line, true FROM machines
        WHERE facility = %(f)s
          AND (%(q)s = '' OR id ILIKE %(like)s OR name ILIKE %(like)s)
          AND (%(area)s::text IS NULL OR area = %(area)s)
          AND (%(line)s::text IS NULL OR line = %(line)s)
          AND (%(type)s::text IS NULL OR machine_type = %(type)s)
        UNION ALL
        SELECT DISTINCT s.device, '', NULL, NULL, NULL, false FROM sensors s
        WHERE s.facility = %(f)s AND NOT %(placed_only)s
          AND (%(q)s = '' OR s.device ILIKE %(like)s)
          AND NOT EXISTS (SELECT 1 FROM machines m WHERE m.facility = s.facility
                          AND m.id = s.device)
        ORDER BY 1
        """,
        {
            "f": facility,
            "q": search,
            "like": _like(search),
            "area": area,
            "line": line,
            "type": machine_type,
            "placed_only": placed_only,
        },
    ).fetchall()
    return [MachineRow(*row) for row in rows]


def unplaced_devices(*, conn: psycopg.Connection, facility: str, limit: int) -> list[str]:
    """Devices with readings but no declared machine, sorted; at most ``limit``."""
    rows = conn.execute(
        "SELECT DISTINCT s.device FROM sensors s WHERE s.facility = %s AND NOT EXISTS "
        "(SELECT 1 FROM machines m WHERE m.facility = s.facility AND m.id = s.device) "
        "ORDER BY 1 LIMIT %s",
        (facility, limit),
    ).fetchall()
    return [row[0] for row in rows]


def device_metrics(*, conn: psycopg.Connection, facility: str) -> dict[str, list[str]]:
    """The metrics each device of ``facility`` has sent, by device."""
    out: dict[str, list[str]] = {}
    for device, metric in conn.execute(
        "SELECT device, metric FROM sensors WHERE facility = %s ORDER BY device, metric",
        (facility,),
    ):
        out.setdefault(device, []).append(metric)
    return out


def open_alerts(*, conn: psycopg.Connection, facility: str) -> dict[str, int]:
    """Open (not acknowledged, not resolved) alerts per device."""
    rows = conn.execute(
        "SELECT device, count(*) FROM alerts WHERE facility = %s AND state = 'open' "
        "GROUP BY device",
        (facility,),
    ).fetchall()
    return {device: int(n) for device, n in rows}


def last_seen(client: redis.Redis, facility: str) -> dict[str, int]:
    """The newest reading time (epoch µs) per device of ``facility``, from Redis latest."""
    newest: dict[str, int] = {}
    cursor = 0
    while True:
        values, cursor = latest_pages.latest_page(client, facility, cursor=cursor, count=SCAN_PAGE)
        for v in values:
            if v.ts_us > newest.get(v.device, -1):
                newest[v.device] = v.ts_us
        if cursor == 0:
            return newest


__all__ = [
    "MachineRow",
    "device_metrics",
    "last_seen",
    "machines",
    "open_alerts",
    "unplaced_devices",
]
