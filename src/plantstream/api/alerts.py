"""Alert endpoints: a facility's alerts, filtered (time range, machine, detector, state) and
paged with a cursor, and acknowledging one. The v1 answer is unchanged: ``alerts`` newest
first, 200 by default; ``next_cursor`` is added, present when more match."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from plantstream.api.auth import State, check_facility
from plantstream.api.quotas import QuotaReader as Reader
from plantstream.api.times import parse_time
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.model import check_id, to_epoch_us
from plantstream.store import alerts as alert_store

router = APIRouter(tags=["query"])

FacilityParam = Annotated[str, Query(min_length=1, max_length=64, description="facility id")]


class Alert(BaseModel):
    id: int
    facility: str
    device: str
    metric: str
    detector: str
    severity: str
    state: str
    message: str
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    details: dict[str, object]


class Alerts(BaseModel):
    alerts: list[Alert]
    # pass as ``cursor`` for the next (older) page; absent on the last page, as in v1
    next_cursor: str | None = Field(None, exclude_if=lambda v: v is None)


def _cursor(text: str) -> tuple[int, int]:
    """``<opened epoch us>.<id>``: where the previous page ended."""
    opened, _, alert_id = text.partition(".")
    try:
        return int(opened), int(alert_id)
    except ValueError:
        raise InvalidInputError(
            ErrorCode.INVALID_REQUEST, "cursor: not one this API gave"
        ) from None


@router.get("/v1/alerts", response_model=Alerts)
def alerts(
    who: Reader,
    state: State,
    facility: FacilityParam,
    state_: Annotated[
        Literal["open", "acknowledged", "resolved"] | None, Query(alias="state")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    device: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    detector: Annotated[
        str | None, Query(min_length=1, max_length=64, description="the alert's kind")
    ] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="opened at or after (RFC 3339)")
    ] = None,
    to: Annotated[str | None, Query(description="opened before (RFC 3339)")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Alerts:
    """Alerts of a facility, newest first, filtered; ``next_cursor`` pages on."""
    check_id(facility, "facility")
    check_facility(who, facility)
    if device is not None:
        check_id(device, "device")
    start = None if from_ is None else parse_time(from_)
    end = None if to is None else parse_time(to)
    with state.pool.connection() as conn:
        rows = alert_store.page_alerts(
            conn=conn,
            facility=facility,
            state=state_,
            device=device,
            kind=detector,
            from_us=None if start is None else to_epoch_us(start),
            to_us=None if end is None else to_epoch_us(end),
            before=None if cursor is None else _cursor(cursor),
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = f"{to_epoch_us(last['opened_at'])}.{last['id']}"
    return Alerts(alerts=[Alert(**row) for row in rows], next_cursor=next_cursor)


@router.post("/v1/alerts/{alert_id}/ack", response_model=Alert)
def acknowledge(who: Reader, state: State, alert_id: Annotated[int, Path(ge=1, le=2**62)]) -> Alert:
    """Acknowledge an open alert (someone is on it). Acknowledging again changes nothing."""
    with state.pool.connection() as conn:
        row = alert_store.get_alert(conn=conn, alert_id=alert_id)
        if row is None or not who.may_access(str(row["facility"])):
            # the same answer for "absent" and "not yours": ids of other facilities stay secret
            raise InvalidInputError("not_found", f"no alert {alert_id}")
        if row["state"] == "resolved":
            raise InvalidInputError("conflict", "the alert is already resolved")
        row = alert_store.acknowledge_alert(conn=conn, alert_id=alert_id, by=who.key_id) or row
    return Alert(**row)
