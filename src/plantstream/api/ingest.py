"""``POST /v1/readings``: the hot path from machines and gateways into the stream."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool

from plantstream.api.auth import State, Writer, check_facility
from plantstream.api.state import AppState
from plantstream.errors import InvalidInputError, StreamThrottledError
from plantstream.model import RejectCode, now_us, parse_batch
from plantstream.model.readings import BatchIn
from plantstream.store.keys import Principal
from plantstream.stream.records import pack_readings

router = APIRouter(tags=["ingest"])

INGESTED = Counter(
    "plantstream_ingest_readings",
    "Readings answered by ingest, by facility and outcome.",
    ["facility", "outcome"],
)
PUSHED_BACK = Counter(
    "plantstream_ingest_pushed_back",
    "Ingest requests answered 429 before their body was read, by code.",
    ["code"],
)

_BODY_SCHEMA: dict[str, Any] = msgspec.json.schema(BatchIn)
_ACCEPTED_SCHEMA = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "code": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, decompressed if gzip/deflate, refused past ``limit`` bytes either way.

    A client that has not sent the whole body within ``timeout`` seconds is answered 408: a
    trickle of bytes must not hold one of the few ingest slots for ever.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise InvalidInputError(RejectCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise InvalidInputError(
                        RejectCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise InvalidInputError(
            RejectCode.BODY_TIMEOUT, f"the body did not arrive within {timeout:g} s"
        ) from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError("unsupported_encoding", "Content-Encoding must be gzip or deflate")
    # bounded output: a small body that expands into gigabytes is refused, not inflated
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInputError(RejectCode.INVALID_BODY, f"body is not valid {encoding}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InvalidInputError(
            RejectCode.BODY_TOO_LARGE, f"decompressed body exceeds {limit} bytes"
        )
    return out


@router.post(
    "/v1/readings",
    status_code=202,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
    responses={
        202: {
            "description": "Accepted",
            "content": {"application/json": {"schema": _ACCEPTED_SCHEMA}},
        },
        400: {"description": "Malformed body"},
        401: {"description": "Missing or invalid key"},
        403: {"description": "Key of another facility or role"},
        413: {"description": "Body or batch too large"},
        429: {"description": "Rate limit or stream push-back; see Retry-After"},
        503: {"description": "Stream unavailable; nothing accepted"},
    },
)
async def post_readings(request: Request, who: Writer, state: State) -> Response:
    """Send a batch of readings for one facility.

    Answers 202 once the stream holds the accepted readings durably; each refused reading is
    listed by its index with a machine-readable code. A reading is identified by (device,
    metric, ts): sending it again is harmless, it is stored once.
    """
    wait = state.limiter.admit(who.key_id)
    if wait:
        PUSHED_BACK.labels("rate_limited").inc()
        raise StreamThrottledError(
            "too many requests for this key", retry_after=wait, code="rate_limited"
        )
    if not state.ingest_gate.try_enter():
        PUSHED_BACK.labels("overloaded").inc()
        raise StreamThrottledError(
            "the server is busy with as many batches as it holds; retry shortly",
            retry_after=1.0,
            code="overloaded",
        )
    try:
        return await _ingest(request, who, state)
    finally:
        state.ingest_gate.leave()


async def _ingest(request: Request, who: Principal, state: AppState) -> Response:
    settings = state.settings
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
    received = now_us()
    batch = parse_batch(
        body,
        received_us=received,
        window=state.window,
        max_readings=settings.max_batch_readings,
    )
    check_facility(who, batch.facility)
    if batch.readings:
        entries = pack_readings(batch.facility, received, batch.readings)
        await run_in_threadpool(state.stream.put, entries)
    INGESTED.labels(batch.facility, "accepted").inc(len(batch.readings))
    if batch.rejected:
        INGESTED.labels(batch.facility, "rejected").inc(len(batch.rejected))
    answer = {
        "accepted": len(batch.readings),
        "rejected": [
            {"index": r.index, "code": str(r.code), "reason": r.reason} for r in batch.rejected
        ],
    }
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")
