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
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from plantstream.api.auth import State, Writer
from plantstream.errors import ErrorCode, InvalidInputError
from plantstream.ingest import Accepted
from plantstream.model.readings import BatchIn

router = APIRouter(tags=["ingest"])

_GZIP_MAGIC = b"\x1f\x8b"

REFUSED = Counter(
    "plantstream_ingest_requests_refused",
    "Ingest requests refused whole with a 4xx (bad body, too large, wrong key scope), by code.",
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


class BodyTooLargeError(InvalidInputError):
    """413 ``body_too_large``; ``close`` when the rest of the body was left unread."""

    def __init__(self, limit: int, *, close: bool) -> None:
        super().__init__(ErrorCode.BODY_TOO_LARGE, f"body exceeds {limit} bytes")
        self.headers = {"Connection": "close"} if close else {}


async def read_body(
    request: Request,
    limit: int,
    timeout: float,
    *,
    drain_limit: int = 0,
    max_members: int = 16,
) -> bytes:
    """The request body, decompressed if gzip/deflate, refused past ``limit`` bytes either way.

    A client that has not sent the whole body within ``timeout`` seconds is answered 408: a
    trickle of bytes must not hold one of the few ingest slots for ever. A body past ``limit``
    is still read and discarded up to ``drain_limit`` bytes in all before the 413 goes out: a
    client that writes its whole body before it reads (urllib, many gateways) then sees the
    413 instead of a connection reset. Past ``drain_limit`` (or when the client waits for
    ``100 Continue``) the 413 goes out at once and the connection is closed. A gzip body of
    more than ``max_members`` members is refused (each member costs a pass over the rest).
    """
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        waits = request.headers.get("expect", "").strip().lower() == "100-continue"
        if waits or declared > drain_limit:
            raise BodyTooLargeError(limit, close=not waits)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > drain_limit and size > limit:
                    raise BodyTooLargeError(limit, close=True)
                if size <= limit:
                    chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidInputError(
            ErrorCode.CLIENT_DISCONNECTED, "the client went away before its body arrived"
        ) from None
    except TimeoutError:
        if size > limit:
            raise BodyTooLargeError(limit, close=True) from None
        raise InvalidInputError(
            ErrorCode.BODY_TIMEOUT, f"the body did not arrive within {timeout:g} s"
        ) from None
    if size > limit:
        raise BodyTooLargeError(limit, close=False)  # read to its end: the connection may stay
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidInputError(
            ErrorCode.UNSUPPORTED_ENCODING, "Content-Encoding must be gzip or deflate"
        )
    return _inflate(body, encoding, limit, max_members)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "").strip()
    return int(declared) if declared.isdigit() else None


def _inflate(body: bytes, encoding: str, limit: int, max_members: int) -> bytes:
    """``body`` decompressed whole: every gzip member, nothing after the end, at most ``limit``.

    A gzip body may hold several members (RFC 1952); each is read, so a second member is
    never silently ignored. Bytes after the last member (or after a deflate stream) are
    refused: they are not part of the body and would otherwise be dropped unseen.
    """
    wbits = 31 if encoding == "gzip" else 15
    out: list[bytes] = []
    size, rest = 0, body
    for _ in range(max_members):
        # bounded output: a small body that expands into gigabytes is refused, not inflated
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            part = inflater.decompress(rest, limit + 1 - size)
        except zlib.error:
            raise InvalidInputError(
                ErrorCode.INVALID_BODY, f"body is not valid {encoding}"
            ) from None
        size += len(part)
        if size > limit or inflater.unconsumed_tail:
            raise InvalidInputError(
                ErrorCode.BODY_TOO_LARGE, f"decompressed body exceeds {limit} bytes"
            )
        out.append(part)
        if not inflater.eof:
            raise InvalidInputError(
                ErrorCode.INVALID_BODY, f"body is not valid {encoding}: it ends too early"
            )
        rest = inflater.unused_data
        if not rest:
            return b"".join(out)
        if encoding != "gzip" or rest[:2] != _GZIP_MAGIC:
            raise InvalidInputError(
                ErrorCode.INVALID_BODY,
                f"body is not valid {encoding}: {len(rest)} bytes follow the compressed data",
            )
    raise InvalidInputError(
        ErrorCode.INVALID_BODY, f"body has more than {max_members} gzip members"
    )


@router.post(
    "/v1/readings",
    status_code=202,
    openapi_extra={
        # MessagePack (``application/msgpack``, the same fields) is said in the description:
        # listed here, the API fuzzer would need a MessagePack serializer for it
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
    """Send a batch of readings for one facility: JSON, or the same fields in MessagePack
    (``Content-Type: application/msgpack``).

    Answers 202 once the stream holds the accepted readings durably; each refused reading is
    listed by its index with a machine-readable code. A reading is identified by (device,
    metric, ts): sending it again is harmless, it is stored once.
    """
    with state.ingest.admit(who):
        try:
            body = await read_body(
                request,
                state.settings.max_body_bytes,
                state.settings.body_timeout_seconds,
                drain_limit=state.settings.max_drain_bytes,
                max_members=state.settings.max_gzip_members,
            )
            # decoded on the loop, put from a thread (IngestService.prepare says why)
            fmt = state.ingest.codecs.for_media_type(request.headers.get("content-type", ""))
            prepared = state.ingest.prepare(who, body, fmt)
            answer = await run_in_threadpool(state.ingest.commit, prepared)
        except InvalidInputError as exc:
            REFUSED.labels(str(exc.code)).inc()  # the codes are a closed set: bounded labels
            raise
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
