"""``POST /v1/readings/history``: readings of any age (years back) stored synchronously in
PostgreSQL, past the live window of ``/v1/readings``; never through the stream, so detection
does not see them. The HTTP adapter of ``plantstream.history``.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from plantstream.api.auth import State, Writer
from plantstream.api.ingest import read_body
from plantstream.api.state import AppState
from plantstream.errors import AuthError, ErrorCode, PushBackError, RateLimitedError
from plantstream.history import HistoryStore, parse_history_body, store_history_batch
from plantstream.history.readings import HistoryAnswer
from plantstream.ingest.admission import InflightGate, RateLimiter
from plantstream.ingest.unclassified import register_unknown
from plantstream.model import now_us
from plantstream.model.readings import BatchIn
from plantstream.model.signals import per_batch
from plantstream.store.catalog import StoreCatalog
from plantstream.store.keys import Principal

router = APIRouter(tags=["ingest"])

_BODY_SCHEMA: dict[str, Any] = msgspec.json.schema(BatchIn)

_ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "description": "readings newly stored"},
        "duplicates": {"type": "integer", "description": "readings stored before"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


class HistoryService:
    """What the route shares in one process: the catalog, the store, and its bounds (a gate
    over all facilities, a readings/s bucket per facility)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        settings = state.settings
        self.catalog = StoreCatalog.from_settings(settings, state.pool)
        self.store = HistoryStore(
            catalog=self.catalog,
            retention_days=settings.raw_retention_days,
            max_sensors_per_facility=settings.quota_max_sensors_per_facility,
        )
        self.gate = InflightGate(settings.history_max_inflight)
        rate = settings.history_readings_per_second
        self.rate = RateLimiter(rate, burst=2 * rate)


_LOCK = threading.Lock()


def _service(request: Request, state: AppState) -> HistoryService:
    app_state = request.app.state
    with _LOCK:
        service: HistoryService | None = getattr(app_state, "history", None)
        # one per runtime state: an app handed another state (a test's fresh database) must
        # not write through the last one's catalog and its cache of days with partitions
        if service is None or service.state is not state:
            if service is not None:
                service.catalog.close()
            service = app_state.history = HistoryService(state)
    return service


@router.post(
    "/v1/readings/history",
    status_code=200,
    openapi_extra={  # MessagePack too, as for /v1/readings (said in the description)
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    responses={
        200: {
            "description": "Stored",
            "content": {"application/json": {"schema": _ANSWER_SCHEMA}},
        },
        400: {"description": "Malformed body"},
        401: {"description": "Missing or invalid key"},
        403: {"description": "Key of another facility or role"},
        413: {"description": "Body or batch too large"},
        429: {"description": "The facility's history rate or concurrency bound; see Retry-After"},
    },
)
async def post_history(request: Request, who: Writer, state: State) -> Response:
    """Store readings of any age (years back, up to now plus the usual clock skew) for one
    facility: the ``/v1/readings`` body, JSON or MessagePack.

    Answers 200 once the readings are committed in PostgreSQL (not a stream): ``accepted``
    were newly stored, ``duplicates`` were stored before (a reading is its device, metric and
    time: sending it again changes nothing), each refused one is listed by its index with a
    code. Readings older than the raw retention horizon are refused ``beyond_retention``.
    These readings feed rollups and series, not detection or ``/v1/latest``. 429 with
    Retry-After past the facility's history readings/s or while another history write of it
    is under way.
    """
    service = _service(request, state)
    settings = state.settings
    if who.facility is not None:
        wait = service.rate.wait_for(who.facility, 1)
        if wait:
            raise _rate_limited(who.facility, service.rate.rate, wait)
    # the body first, bounded in bytes and time (a 408 for a trickle), outside the gate: a
    # slow client holds a connection, never one of the few history slots of the process
    body = await read_body(
        request,
        settings.max_body_bytes,
        settings.body_timeout_seconds,
        drain_limit=settings.max_drain_bytes,
        max_members=settings.max_gzip_members,
    )
    if not service.gate.try_enter():
        raise PushBackError(
            "history writes of this server are at their bound; retry shortly",
            retry_after=1.0,
            code=ErrorCode.HISTORY_BUSY,
        )
    try:
        answer = await _store(request, who, state, service, body)
    finally:
        service.gate.leave()
    return Response(
        orjson.dumps(
            {
                "accepted": answer.accepted,
                "duplicates": answer.duplicates,
                "rejected": [
                    {"index": r.row, "code": r.code, "message": r.message} for r in answer.rejected
                ],
            }
        ),
        media_type="application/json",
    )


async def _store(
    request: Request, who: Principal, state: AppState, service: HistoryService, body: bytes
) -> HistoryAnswer:
    """Decode, register the new names, take the facility's readings/s and store; the tokens
    of a request refused afterwards (``history_busy``, PostgreSQL away) are given back, and
    so are those of readings the store refused (they were not stored)."""
    settings = state.settings
    fmt = state.ingest.codecs.for_media_type(request.headers.get("content-type", ""))
    # a facility the key may not send for is never looked up (it is refused 403 below)
    view = per_batch(service.catalog, who.may_access)
    batch = await run_in_threadpool(
        parse_history_body,
        body,
        fmt,
        received_us=now_us(),
        max_future_us=state.window.max_future_us,
        max_readings=settings.max_batch_readings,
        catalog=view,
    )
    if not who.may_access(batch.facility):
        raise AuthError(ErrorCode.FORBIDDEN_FACILITY, "this key does not belong to that facility")
    # under the register policy, new names are recorded as unclassified (for an admin's
    # review, bounded per facility) before anything is stored, as on the live path
    refused = {r.index for r in batch.rejected}
    sent = [i for i in range(len(batch.readings) + len(refused)) if i not in refused]
    batch, _ = await run_in_threadpool(register_unknown, view, service.catalog, batch, sent)
    tokens = len(batch.readings)
    if tokens:
        wait = service.rate.admit(batch.facility, tokens)
        if wait:
            raise _rate_limited(batch.facility, service.rate.rate, wait)
    try:
        answer = await run_in_threadpool(store_history_batch, state.pool, service.store, batch)
    except BaseException:
        service.rate.refund(batch.facility, tokens)  # nothing of it was stored
        raise
    unused = tokens - answer.accepted - answer.duplicates
    if unused > 0:
        service.rate.refund(batch.facility, unused)
    return answer


def _rate_limited(facility: str, rate: float, wait: float) -> RateLimitedError:
    return RateLimitedError(
        f"facility {facility!r} sends history faster than {rate:g} readings/s "
        "(PLANTSTREAM_HISTORY_READINGS_PER_SECOND); nothing was stored",
        retry_after=wait,
        code=ErrorCode.QUOTA_READINGS_RATE,
    )
