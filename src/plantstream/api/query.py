"""Read endpoints: facilities, latest values, series (alerts: ``api/alerts.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from plantstream.api.auth import State, check_facility
from plantstream.api.quotas import QuotaReader as Reader
from plantstream.api.times import parse_time
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest.metrics import count_refusal
from plantstream.model import (
    DEFAULT_CATALOG,
    SignalCatalog,
    SignalDef,
    SignalKind,
    UnknownSignalPolicy,
    ValueType,
    check_id,
    from_epoch_us,
)
from plantstream.store import latest_pages, queries
from plantstream.store.hot import LatestValue as HotValue

router = APIRouter(tags=["query"])

FacilityParam = Annotated[str, Query(min_length=1, max_length=64, description="facility id")]


class Facility(BaseModel):
    facility: str
    devices: int
    sensors: int
    open_alerts: int


class Facilities(BaseModel):
    facilities: list[Facility]


# a number stays a number (int64 exact); a bool or a string/state value is itself
TypedValue = bool | int | float | str


class _Additive(BaseModel):
    """A v1 answer with additive fields: they are left out while they hold their default, so
    a v1 client's view of a plain double (and its exact answers) is what it was."""

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        out: dict[str, object] = handler(self)
        if out.get("value_type") == "double":
            del out["value_type"]
        for name in _ADDITIVE:
            if name in out and out[name] is None:
                del out[name]
        return out


_ADDITIVE = ("quality_code", "twa", "increase", "first", "last", "states", "pending", "kind")


class LatestValue(_Additive):
    device: str
    metric: str
    ts: datetime
    value: TypedValue
    unit: str
    quality: str
    value_type: str = Field(
        default="double", description="double, int64, bool, string or state (the signal's)"
    )
    quality_code: int | None = Field(
        default=None, description="the source's own quality code (OPC UA StatusCode, ...)"
    )
    kind: str | None = Field(default=None, description="counter or state (left out: a gauge)")


class Latest(BaseModel):
    facility: str
    readings: list[LatestValue]
    next_cursor: str | None = Field(
        default=None, description="paging only: pass as `cursor` for the next page; null at the end"
    )


class Point(_Additive):
    ts: datetime
    value: TypedValue
    min: float | None = None
    max: float | None = None
    count: int | None = None
    quality_code: int | None = None
    twa: float | None = Field(
        default=None, description="rollups: the time-weighted average (value carried over)"
    )
    increase: float | None = Field(
        default=None, description="rollups of a counter: its increase (resets, wraps handled)"
    )
    first: float | None = None
    last: float | None = None
    states: dict[str, float] | None = Field(
        default=None, description="rollups of a state signal: seconds in each state"
    )
    pending: bool | None = Field(
        default=None,
        description="rollups only, true while late data's recompute of this bucket is due: "
        "`twa`, `increase` and `states` are left out until it ran (seconds later); "
        "absent when the bucket is exact",
    )


class Series(BaseModel):
    facility: str
    device: str
    metric: str
    unit: str
    step: Literal["raw", "1m", "1h", "1d"]
    points: list[Point]
    truncated: bool = Field(
        default=False, description="more points lie in the range than one answer holds"
    )
    next_from: datetime | None = Field(
        default=None, description="when truncated: ask again with this as `from` for the rest"
    )


@router.get("/v1/facilities", response_model=Facilities)
def facilities(who: Reader, state: State) -> Facilities:
    """Facilities this key may see, with their device counts and open alerts."""
    with state.pool.connection() as conn:
        rows = queries.facilities(conn, only=who.facility)
    return Facilities(facilities=[Facility(**row) for row in rows])


@router.get("/v1/latest", response_model=Latest)
def latest(
    who: Reader,
    state: State,
    facility: FacilityParam,
    device: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{1,20}$", description="page through a large facility: 0 to start"),
    ] = None,
) -> Latest:
    """The newest value of every sensor of a facility (or one device), from Redis.

    One answer holds at most the server's `quota_max_latest_values` (20,000 by default); a
    facility with more answers 403 `quota_result_size` unless it is paged: pass `cursor=0`,
    then each answer's `next_cursor` until it is null (a page is sorted; values may repeat
    across pages while they change).
    """
    check_id(facility, "facility")
    check_facility(who, facility)
    cap = state.settings.quota_max_latest_values
    next_cursor = None
    if device is not None:
        check_id(device, "device")
        values = latest_pages.device_latest(state.redis, facility, device)
    elif cursor is not None:
        if int(cursor) >= 2**64:  # Redis' cursors are unsigned 64-bit numbers
            raise InvalidInputError(ErrorCode.INVALID_REQUEST, "cursor is not one we gave out")
        values, after = latest_pages.latest_page(
            state.redis, facility, cursor=int(cursor), count=cap
        )
        next_cursor = str(after) if after else None
    else:
        size = latest_pages.latest_count(state.redis, facility)
        if size > cap:
            count_refusal(ErrorCode.QUOTA_RESULT_SIZE, facility)
            raise InvalidInputError(
                ErrorCode.QUOTA_RESULT_SIZE,
                f"{facility!r} has {size} latest values, more than the {cap} one answer holds "
                "(quota_result_size): page through them with cursor=0, then next_cursor",
            )
        values = state.hot.latest(facility)
    catalog = _catalog(state)
    return Latest(
        facility=facility,
        readings=[_latest_value(v, catalog.get(facility, v.metric)) for v in values],
        next_cursor=next_cursor,
    )


def _catalog(state: object) -> SignalCatalog:
    """The signal catalog the API state carries (the store-backed one), else the default."""
    catalog = getattr(state, "catalog", None)
    return catalog if catalog is not None else DEFAULT_CATALOG


def _latest_value(v: HotValue, spec: SignalDef | None) -> LatestValue:
    return LatestValue(
        device=v.device,
        metric=v.metric,
        ts=from_epoch_us(v.ts_us),
        value=v.value,
        unit=spec.unit if spec is not None else "",
        quality=v.quality,
        value_type=str(spec.value_type) if spec is not None else v.value_type,
        quality_code=v.quality_code,
        kind=str(spec.kind) if spec is not None and spec.kind is not SignalKind.GAUGE else None,
    )


_TEXT_TYPES = frozenset({ValueType.STRING, ValueType.STATE})
_HOUR = timedelta(hours=1)
_DAWN = datetime.min.replace(tzinfo=UTC)


def choose_step(span: timedelta) -> Literal["raw", "1m", "1h"]:
    """Raw points up to 2 hours, 1-minute buckets up to 3 days, hourly beyond."""
    if span <= timedelta(hours=2):
        return "raw"
    if span <= timedelta(days=3):
        return "1m"
    return "1h"


@router.get("/v1/series", response_model=Series)
def series(
    who: Reader,
    state: State,
    facility: FacilityParam,
    device: Annotated[str, Query(min_length=1, max_length=64)],
    metric: Annotated[str, Query(min_length=1, max_length=64)],
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339; default to-1h")] = None,
    to: Annotated[str | None, Query(description="RFC 3339; default now")] = None,
    step: Literal["raw", "1m", "1h", "1d", "auto"] = "auto",
) -> Series:
    """Points of one sensor between ``from`` and ``to``; ``auto`` picks raw, 1m or 1h by range.

    Rollup points carry the bucket's average as ``value`` with its min, max and count, and
    (additive) its time-weighted average `twa` (a value holds until the next reading, carried
    across bucket edges), `first`, `last` and, for a counter, its `increase` (resets and
    wraps handled); `1d` is a step too. A string or state signal always answers raw. One
    answer holds at most the server's `quota_max_series_points` (20,000 by default): when
    the range holds more, the answer says `truncated: true` and `next_from`, the `from` that
    gets the rest.
    """
    check_id(facility, "facility")
    check_id(device, "device")
    check_facility(who, facility)
    catalog = _catalog(state)
    spec = catalog.get(facility, metric)
    stored: queries.StoredSensor | None = None
    if spec is None:
        # a signal the model no longer declares (removed) keeps its stored history: the
        # sensor's own row says its type and unit; a name never stored is unknown
        with state.pool.connection() as conn:
            stored = queries.stored_sensor(conn, facility=facility, device=device, metric=metric)
        if stored is None and catalog.policy(facility) is not UnknownSignalPolicy.REGISTER:
            raise InvalidInputError("unknown_metric", f"unknown metric {metric[:64]!r}")
    end = parse_time(to) if to is not None else datetime.now(UTC)
    # the default an hour back stops at the first hour of year 1, where datetime ends
    start = parse_time(from_) if from_ is not None else max(end, _DAWN + _HOUR) - _HOUR
    if start >= end:
        raise InvalidInputError("invalid_time", "from must be before to")
    chosen = choose_step(end - start) if step == "auto" else step
    value_type = spec.value_type if spec is not None else stored.value_type if stored else None
    if value_type is ValueType.STRING:
        chosen = "raw"  # a free text has no rollup: its points are its changes
    cap = state.settings.quota_max_series_points
    with state.pool.connection() as conn:
        points = queries.series(
            conn,
            facility=facility,
            device=device,
            metric=metric,
            start=start,
            end=end,
            step=chosen,
            max_points=cap + 1,  # one more than answered: says whether the range holds more
        )
    truncated = len(points) > cap
    if truncated:
        count_refusal(ErrorCode.QUOTA_RESULT_SIZE, facility)
    return Series(
        facility=facility,
        device=device,
        metric=metric,
        unit=spec.unit if spec is not None else stored.unit if stored is not None else "",
        step=chosen,
        points=[Point(**p) for p in points[:cap]],
        truncated=truncated,
        next_from=points[cap]["ts"] if truncated else None,
    )
