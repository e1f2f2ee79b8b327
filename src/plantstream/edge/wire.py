"""The queue's readings as plantstream's ingest body, and what an answer's status means.

The same JSON body goes to ``POST /v1/readings`` (live) and ``POST /v1/readings/history``.
Values go typed: a double or int64 as a number, a bool as ``true``/``false``, a string or
state as text; a non-Good OPC UA StatusCode travels as ``quality_code`` beside the quality
(left out when good: plantstream's default).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import orjson

from plantstream.edge.queue import Queued
from plantstream.edge.records import GOOD
from plantstream.errors import ErrorCode
from plantstream.model.metrics import QUALITY_NAMES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PUSH_BACK = frozenset({408, 429, 500, 502, 503, 504})
KEY_REFUSED = frozenset({401, 403})
TOO_LARGE = frozenset({413})
TEXT_TYPES = frozenset({"string", "state"})

Dead = tuple[int, str, str]  # (row id, code, reason)


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339(ts_us: int) -> str:
    """Exact to the microsecond (plantstream identifies a reading by its timestamp).

    The date and time of day are formatted once per second (a backlog has many readings of
    each second), the microseconds every time.
    """
    seconds, micros = divmod(ts_us, 1_000_000)
    return f"{_second(seconds)}.{micros:06d}+00:00"


def wire_value(r: Queued) -> float | int | bool | str | None:
    """The queued value as its signal's JSON type (a bool is kept as 0/1 in the queue)."""
    if r.value_type == "bool" and r.value is not None:
        return bool(r.value)
    if r.value_type == "int64" and isinstance(r.value, float) and r.value.is_integer():
        return int(r.value)
    return r.value


def encode(facility: str, rows: Sequence[Queued]) -> bytes:
    readings = []
    for r in rows:
        item: dict[str, object] = {
            "device": r.device,
            "metric": r.metric,
            "ts": rfc3339(r.ts_us),
            "value": wire_value(r),
        }
        if r.quality != GOOD:  # good is what plantstream assumes: fewer bytes to parse
            item["quality"] = QUALITY_NAMES.get(r.quality, "bad")
        if r.unit is not None:
            item["unit"] = r.unit
        if r.raw_status:  # Good (0) says nothing more than the quality
            item["quality_code"] = r.raw_status
        readings.append(item)
    return orjson.dumps({"facility": facility, "readings": readings})


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or not math.isfinite(seconds) else max(0.0, seconds)


def error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def retryable(code: str) -> bool:
    """A per-reading code that means "not now" (a quota, push-back), not "never"."""
    try:
        return ErrorCode(code).status in (429, 503)
    except ValueError:
        return False


def locally_invalid(rows: list[Queued]) -> tuple[list[Queued], list[Dead]]:
    """Readings no ingest could take (no value, not finite): dead-lettered without sending."""
    good: list[Queued] = []
    dead: list[Dead] = []
    for r in rows:
        if r.value is None:
            dead.append((r.id, "no_value", "the source sent no value (a bad sample, or a null)"))
        elif isinstance(r.value, float) and not math.isfinite(r.value):
            dead.append((r.id, "value_not_finite", "the source gave a value that is not finite"))
        elif isinstance(r.value, str) != (r.value_type in TEXT_TYPES):
            dead.append((r.id, "invalid_reading", f"a {r.value_type} signal with this value"))
        else:
            good.append(r)
    return good, dead
