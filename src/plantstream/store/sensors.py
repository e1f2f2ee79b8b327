"""The sensor registry: (facility, device, metric) -> a small integer id used everywhere else.

A facility's registry is bounded by its sensor quota: past it, new sensors are not registered.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from plantstream.model import DEFAULT_CATALOG, SignalCatalog, signal_for

SensorKey = tuple[str, str, str]  # facility, device, metric

# the class id of the per-facility advisory lock taken while new sensors are counted and added
# (the two-integer form: it never meets the single-bigint locks of partitions and migrations)
_QUOTA_LOCK_CLASS = 0x70737173


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

    def resolve(
        self,
        conn: psycopg.Connection,
        keys: Iterable[SensorKey],
        *,
        max_per_facility: int | None = None,
        catalog: SignalCatalog = DEFAULT_CATALOG,
    ) -> dict[SensorKey, int]:
        """Ids for ``keys``, registering unknown sensors in their own short transaction.

        With ``max_per_facility``, a facility never grows past that many sensors: the new
        sensors that do not fit are left out of the answer (and not registered). Counting and
        adding hold a per-facility lock, so processors working side by side cannot overshoot.
        A new sensor takes its unit, value type, kind and wrap from its signal in ``catalog``
        (fixed from then on: a sensor's stored values never change type).
        """
        wanted = set(keys)
        missing = [key for key in wanted if key not in self._ids]
        if missing:
            with conn.transaction(), conn.cursor() as cur:
                self._load(cur, missing)
                absent = sorted(key for key in missing if key not in self._ids)
                if absent and max_per_facility is not None:
                    absent = _within_quota(cur, absent, max_per_facility)
                if absent:
                    cur.executemany(
                        "INSERT INTO sensors (facility, device, metric, unit, value_type, kind, "
                        "wrap) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [_sensor_row(catalog, key) for key in absent],
                    )
                    self._load(cur, absent)
        return {key: self._ids[key] for key in wanted if key in self._ids}

    def _load(self, cur: psycopg.Cursor, keys: list[SensorKey]) -> None:
        cur.execute(
            "SELECT facility, device, metric, id FROM sensors "
            "WHERE (facility, device, metric) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
        for facility, device, metric, sensor_id in cur.fetchall():
            self._ids[(facility, device, metric)] = sensor_id


def _sensor_row(
    catalog: SignalCatalog, key: SensorKey
) -> tuple[str, str, str, str, str, str, int | None]:
    facility, device, metric = key
    spec = signal_for(catalog, facility, metric, None)
    return (
        facility,
        device,
        metric,
        spec.unit,
        str(spec.value_type),
        str(spec.kind),
        spec.wrap,
    )


def _within_quota(cur: psycopg.Cursor, absent: list[SensorKey], limit: int) -> list[SensorKey]:
    """The new sensors (sorted) that fit their facility's quota; locks each facility's count
    until the transaction ends (facilities in sorted order: no deadlock between processors)."""
    by_facility: dict[str, list[SensorKey]] = {}
    for key in absent:
        by_facility.setdefault(key[0], []).append(key)
    fitting: list[SensorKey] = []
    for facility in sorted(by_facility):
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_QUOTA_LOCK_CLASS, facility))
        row = cur.execute(
            "SELECT count(*) FROM sensors WHERE facility = %s", (facility,)
        ).fetchone()
        room = max(0, limit - (row[0] if row else 0))
        fitting += by_facility[facility][:room]
    return fitting


def facility_sensors(conn: psycopg.Connection, *, facility: str) -> set[tuple[str, str]]:
    """The (device, metric) pairs registered for ``facility``."""
    rows = conn.execute(
        "SELECT device, metric FROM sensors WHERE facility = %s", (facility,)
    ).fetchall()
    return {(device, metric) for device, metric in rows}
