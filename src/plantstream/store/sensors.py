"""The sensor registry: (facility, device, metric) -> a small integer id used everywhere else."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from plantstream.model import METRICS

SensorKey = tuple[str, str, str]  # facility, device, metric


class SensorRegistry:
    """Looks sensor ids up, registering new sensors; caches what it has seen (ids never change)."""

    def __init__(self) -> None:
        self._ids: dict[SensorKey, int] = {}

    def cached(self, key: SensorKey) -> int | None:
        return self._ids.get(key)

    def known(self, keys: Iterable[SensorKey]) -> dict[SensorKey, int] | None:
        """Ids for ``keys`` if every one is cached (no database needed), else None."""
        try:
            return {key: self._ids[key] for key in keys}
        except KeyError:
            return None

    def resolve(self, conn: psycopg.Connection, keys: Iterable[SensorKey]) -> dict[SensorKey, int]:
        """Ids for ``keys``, registering unknown sensors in their own short transaction."""
        wanted = set(keys)
        missing = [key for key in wanted if key not in self._ids]
        if missing:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sensors (facility, device, metric, unit) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(f, d, m, METRICS[m].unit) for f, d, m in missing],
                )
                cur.execute(
                    "SELECT facility, device, metric, id FROM sensors "
                    "WHERE (facility, device, metric) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
                    (
                        [k[0] for k in missing],
                        [k[1] for k in missing],
                        [k[2] for k in missing],
                    ),
                )
                for facility, device, metric, sensor_id in cur.fetchall():
                    self._ids[(facility, device, metric)] = sensor_id
        return {key: self._ids[key] for key in wanted}
