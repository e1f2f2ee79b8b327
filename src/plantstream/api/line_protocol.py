"""``POST /api/v2/write`` and ``POST /write``: the InfluxDB line protocol, as its clients send it.

The HTTP adapter of the ``line`` ingest format: the key comes as InfluxDB clients send a token,
the bucket (v2) or db (v1) names the facility, and answers are shaped the way InfluxDB answers
(204; 400 with the line number, also for a partial write, as InfluxDB 1.x does), with
plantstream's ``error`` beside.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from plantstream.api.auth import State, app_state
from plantstream.api.ingest import REFUSED, read_body
from plantstream.errors import AuthError, ErrorCode, InvalidInputError
from plantstream.ingest import Accepted, authorize_writer
from plantstream.ingest.line_protocol import (
    LineOptions,
    LineProtocolError,
    line_payload,
    reading_lines,
)
from plantstream.store.keys import Principal

router = APIRouter(tags=["ingest"])

_SCHEMES = ("token", "bearer")
_RESPONSES: dict[int | str, dict[str, Any]] = {
    204: {"description": "Every point was accepted (durably in the stream)"},
    400: {
        "description": "Not line protocol (nothing accepted; `line` is the first bad line), or "
        "a partial write (`accepted` points are in the stream, `rejected` lists the others)"
    },
    401: {"description": "Missing or invalid key"},
    403: {"description": "Key of another facility or role"},
    413: {"description": "Body or batch too large"},
    429: {"description": "Rate limit or stream push-back; see Retry-After"},
    503: {"description": "Stream unavailable; nothing accepted"},
}
_BODY = {
    "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
}


def token_writer(request: Request) -> Principal:
    """The writer of ``Authorization: Token <key>`` (InfluxDB's form), ``Bearer <key>`` or, as
    InfluxDB 1.x clients send it, ``Basic`` with the key as the password."""
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    key = credentials.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(
                ErrorCode.MALFORMED_KEY, "the Basic credentials are malformed"
            ) from None
    elif scheme.lower() not in _SCHEMES:
        key = ""
    if not key:
        raise AuthError(
            ErrorCode.MISSING_KEY, "an ingest key is required (Authorization: Token <key>)"
        )
    if not (key.isascii() and key.isprintable()):
        raise AuthError(ErrorCode.MALFORMED_KEY, "the API key is malformed")
    who = app_state(request).verify(key)
    authorize_writer(who)
    return who


TokenWriter = Annotated[Principal, Depends(token_writer)]


@router.post("/api/v2/write", status_code=204, responses=_RESPONSES, openapi_extra=_BODY)
async def write_v2(
    request: Request,
    who: TokenWriter,
    state: State,
    bucket: Annotated[str | None, Query(max_length=64, description="the facility")] = None,
    org: Annotated[str | None, Query(max_length=256, description="ignored")] = None,
    precision: Annotated[str, Query(max_length=2, description="ns, us, ms or s")] = "ns",
) -> Response:
    """Write points in the InfluxDB v2 line protocol (Telegraf, Node-RED, ``influxdb-client``).

    The bucket names the facility; each field of a line is one reading of the device named by
    the ``device`` or ``machine`` tag (else the measurement); see docs/line-protocol.md.
    """
    return await _write(request, who, state, bucket, precision)


@router.post("/write", status_code=204, responses=_RESPONSES, openapi_extra=_BODY)
async def write_v1(
    request: Request,
    who: TokenWriter,
    state: State,
    db: Annotated[str | None, Query(max_length=64, description="the facility")] = None,
    rp: Annotated[str | None, Query(max_length=256, description="ignored")] = None,
    precision: Annotated[str, Query(max_length=2, description="n, u, ms, s, m or h")] = "n",
) -> Response:
    """Write points in the InfluxDB 1.x line protocol; the database names the facility."""
    return await _write(request, who, state, db, precision)


async def _write(
    request: Request, who: Principal, state: State, facility: str | None, precision: str
) -> Response:
    options = LineOptions(
        facility=facility or who.facility,
        precision=precision,
        signal=state.settings.line_signal_naming,
    )
    with state.ingest.admit(who):
        try:
            body = await read_body(
                request,
                state.settings.max_body_bytes,
                state.settings.body_timeout_seconds,
                drain_limit=state.settings.max_drain_bytes,
                max_members=state.settings.max_gzip_members,
            )
            payload = line_payload(body, options)
            answer = await run_in_threadpool(state.ingest.accept, who, payload, "line")
        except LineProtocolError as exc:
            REFUSED.labels(str(exc.code)).inc()
            return _influx_error(400, "invalid", exc.message, exc.line, exc.code, {})
        except InvalidInputError as exc:
            REFUSED.labels(str(exc.code)).inc()
            raise
    if not answer.rejected:
        return Response(status_code=204)
    return _partial_write(answer, payload)


def _partial_write(answer: Accepted, payload: bytes) -> Response:
    """400 naming every refused point by line and field; the accepted ones are in the stream.

    InfluxDB 1.x answers a partial write 400 too; a 2xx would let a client believe every
    point was stored.
    """
    where = reading_lines(payload)
    rejected = [
        {
            "line": where[r.index][0],
            "field": where[r.index][1],
            "code": str(r.code),
            "reason": r.reason,
        }
        for r in answer.rejected
    ]
    first = answer.rejected[0]
    message = (
        f"partial write: {len(rejected)} of {len(rejected) + answer.accepted} points rejected; "
        f"first: {first.reason}"
    )
    extra = {"accepted": answer.accepted, "rejected": rejected}
    return _influx_error(400, "invalid", message, rejected[0]["line"], first.code, extra)


def _influx_error(
    status: int, influx_code: str, message: str, line: Any, code: ErrorCode, extra: dict[str, Any]
) -> Response:
    body = {
        "code": influx_code,
        "message": message,
        "line": line,
        **extra,
        "error": {"code": str(code), "message": message},
    }
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
