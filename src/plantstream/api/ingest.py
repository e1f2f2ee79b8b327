"""``POST /v1/readings``: the HTTP adapter of the ingest service (body in, answer out).

Reading the body (size, trickle timeout, gzip) is HTTP's; everything else is the service's.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import msgspec
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from plantstream.api.auth import State, Writer
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import Accepted
from plantstream.model.readings import BatchIn

router = APIRouter(tags=["ingest"])

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
        raise InvalidInputError(ErrorCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise InvalidInputError(ErrorCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise InvalidInputError(
            ErrorCode.BODY_TIMEOUT, f"the body did not arrive within {timeout:g} s"
        ) from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(
            ErrorCode.UNSUPPORTED_ENCODING, "Content-Encoding must be gzip or deflate"
        )
    # bounded output: a small body that expands into gigabytes is refused, not inflated
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInputError(ErrorCode.INVALID_BODY, f"body is not valid {encoding}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InvalidInputError(
            ErrorCode.BODY_TOO_LARGE, f"decompressed body exceeds {limit} bytes"
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
    with state.ingest.admit(who):
        body = await read_body(
            request, state.settings.max_body_bytes, state.settings.body_timeout_seconds
        )
        answer = await run_in_threadpool(state.ingest.accept, who, body, "json")
    return Response(_answer(answer), status_code=202, media_type="application/json")


def _answer(accepted: Accepted) -> bytes:
    return orjson.dumps(
        {
            "accepted": accepted.accepted,
            "rejected": [
                {"index": r.index, "code": str(r.code), "reason": r.reason}
                for r in accepted.rejected
            ],
        }
    )
