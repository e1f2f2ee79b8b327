"""Rollup points of one sensor: the plain aggregates, the time-weighted average and a
counter's increase per bucket, with the value carried in from the bucket before.

A state signal's bucket tells the seconds spent in each state (``states``), counted the
same way: carried in, its own spans, its last state to the end. A bucket's time-weighted
average is its step function's integral over the bucket divided by
the bucket's length: the value carried in from the previous bucket until the first reading
(``lag(last)``), the bucket's own ``area`` between its first and last reading, and its last
value from then to the bucket's end (or now, for the bucket in progress). A sensor's first
bucket averages over the time from its first reading. A counter's increase adds the step
from the previous bucket's last value to its first. ``area`` NULL (a bucket from before the
upgrade whose raw readings were gone) gives no average.

A bucket that late data made dirty and that the repair pass (``store/rollup_repair.py``) has
not recomputed yet answers ``pending: true`` and leaves out ``twa``, ``increase`` and
``states`` (its count, min, max, first and last are exact all along): a point is exact or
flagged, never silently wrong. The repair follows the commit within a pass or two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

TABLES = {
    "1m": ("rollup_1m", "1 minute"),
    "1h": ("rollup_1h", "1 hour"),
    "1d": ("rollup_1d", "1 day"),
}
_WIDTHS = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}

_POINTS = """
SELECT bucket AS ts, sum / count AS value, min, max, count, first, last,
       CASE WHEN area IS NOT NULL AND NOT dirty THEN
           (coalesce(carried * extract(epoch FROM first_ts - bucket), 0) + area
            + last * extract(epoch FROM greatest(least(bucket + {width}, now()), last_ts)
                                        - last_ts))
           / nullif(extract(epoch FROM greatest(least(bucket + {width}, now()), last_ts)
                                       - CASE WHEN carried IS NULL THEN first_ts
                                              ELSE bucket END), 0)
       END AS twa,
       CASE WHEN kind = 1 AND NOT dirty THEN
           increase + coalesce(ps_increase(carried, first, %(wrap)s::numeric), 0)
       END AS increase,
       CASE WHEN kind = 2 AND NOT dirty THEN durations END AS durations,
       carried_text, last_text, dirty AS pending,
       extract(epoch FROM first_ts - bucket) AS head_s,
       extract(epoch FROM greatest(least(bucket + {width}, now()), last_ts) - last_ts) AS tail_s
FROM (
    SELECT *, lag(last) OVER (ORDER BY bucket) AS carried,
           lag(last_text) OVER (ORDER BY bucket) AS carried_text FROM {table}
    WHERE sensor_id = %(sensor)s AND bucket < %(end)s
      AND bucket >= coalesce(
          (SELECT max(bucket) FROM {table} WHERE sensor_id = %(sensor)s AND bucket < %(start)s),
          %(start)s)
) x
WHERE bucket >= %(start)s ORDER BY bucket LIMIT %(limit)s
"""


def rollup_points(
    conn: psycopg.Connection,
    *,
    sensor_id: int,
    wrap: float | None,
    step: str,
    start: datetime,
    end: datetime,
    max_points: int,
    state: bool = False,
) -> list[dict[str, Any]]:
    """Buckets of ``step`` (1m, 1h, 1d) in [start, end), oldest first, at most ``max_points``.

    For a ``state`` signal, a bucket without a reading that lies between two readings is a
    point too (``count`` 0, ``value`` the state held): its whole width in the state carried
    through it, so the buckets' seconds add up to the time between the readings."""
    table, width = TABLES[step]
    query = _POINTS.format(table=table, width=f"interval '{width}'")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            query,  # the table and width come from TABLES only
            {
                "sensor": sensor_id,
                "wrap": wrap,
                "start": start,
                "end": end,
                "limit": max_points,
            },
        ).fetchall()
    points: list[dict[str, Any]] = []
    width_of = _WIDTHS[step]
    after: datetime | None = None  # the bucket after the last point, or None before the first
    for row in rows:
        held = row["carried_text"]  # the state through the gap before this bucket, if any
        if state and held is not None:
            gap = after if after is not None else _first_bucket(start, width_of)
            while gap < row["ts"] and len(points) < max_points:
                points.append(_held_through(gap, held, width_of))
                gap += width_of
        if len(points) >= max_points:
            break
        row["states"] = _time_in_state(row)
        row["pending"] = True if row["pending"] else None  # absent while exact
        points.append(row)
        after = row["ts"] + width_of
    return points


def _held_through(bucket: datetime, held: str, width: timedelta) -> dict[str, Any]:
    """A state's bucket without a reading: all of it in the state ``held``; no aggregates."""
    return {
        "ts": bucket,
        "value": held,
        "min": None,
        "max": None,
        "count": 0,
        "first": None,
        "last": None,
        "twa": None,
        "increase": None,
        "states": {held: width.total_seconds()},
        "pending": None,
    }


def _first_bucket(start: datetime, width: timedelta) -> datetime:
    """The first bucket at or after ``start`` (buckets are aligned on the Unix epoch)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = -((epoch - start) // width)  # ceil((start - epoch) / width)
    return epoch + n * width


def _time_in_state(row: dict[str, Any]) -> dict[str, float] | None:
    """Seconds in each state over the bucket: the carried-in state until the first reading,
    the bucket's own spans, its last state until the bucket's end (or now)."""
    durations, carried, last = (
        row.pop("durations"),
        row.pop("carried_text"),
        row.pop("last_text"),
    )
    head, tail = float(row.pop("head_s")), float(row.pop("tail_s"))
    if durations is None:
        return None
    spans = {k: float(v) for k, v in durations.items()}
    if carried is not None and head > 0:
        spans[carried] = spans.get(carried, 0.0) + head
    if tail > 0:
        spans[last] = spans.get(last, 0.0) + tail
    return spans
