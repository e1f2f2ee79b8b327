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
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    # a compressed body is inflated as it arrives: its compressed bytes are never joined
    inflater = _Inflater(encoding, limit, max_members) if encoding in ("gzip", "deflate") else None
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > drain_limit and size > limit:
                    raise BodyTooLargeError(limit, close=True)
                if size > limit:
                    continue  # drained, not kept
                if inflater is not None:
                    inflater.feed(chunk)
                else:
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
    if encoding not in ("", "identity", "gzip", "deflate"):  # refused once read, like a 413
        raise InvalidInputError(
            ErrorCode.UNSUPPORTED_ENCODING, "Content-Encoding must be gzip or deflate"
        )
    if inflater is not None:
        return inflater.finish()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length", "").strip()
    return int(declared) if declared.isdigit() else None


class _Inflater:
    """A gzip or deflate body decompressed as its chunks arrive: every gzip member, nothing
    after the end, at most ``limit`` bytes out.

    A gzip body may hold several members (RFC 1952); each is read, so a second member is
    never silently ignored. Bytes after the last member (or after a deflate stream) are
    refused: they are not part of the body and would otherwise be dropped unseen. A refusal
    found mid-body is kept until the body has arrived, so the client can read the answer.
    """

    def __init__(self, encoding: str, limit: int, max_members: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.max_members = max_members
        self._wbits = 31 if encoding == "gzip" else 15
        self._stream = zlib.decompressobj(wbits=self._wbits)
        self._members = 1
        self._after = b""  # bytes after a finished member, too few yet to tell what they are
        self._out: list[bytes] = []
        self._size = 0
        self._error: InvalidInputError | None = None

    def feed(self, data: bytes) -> None:
        if self._error is None:
            try:
                self._feed(data)
            except InvalidInputError as exc:
                self._error = exc

    def _feed(self, data: bytes) -> None:
        while data:
            if self._stream.eof:  # a member ended: only another gzip member may follow
                data = self._after + data
                if self.encoding != "gzip" or data[:2] != _GZIP_MAGIC[: len(data)]:
                    raise self._trailing()
                if len(data) < len(_GZIP_MAGIC):
                    self._after = data
                    return
                self._members += 1
                if self._members > self.max_members:
                    raise InvalidInputError(
                        ErrorCode.INVALID_BODY,
                        f"body has more than {self.max_members} gzip members",
                    )
                self._stream, self._after = zlib.decompressobj(wbits=self._wbits), b""
            try:
                # bounded output: a small body that expands into gigabytes is refused
                part = self._stream.decompress(data, self.limit + 1 - self._size)
            except zlib.error:
                raise InvalidInputError(
                    ErrorCode.INVALID_BODY, f"body is not valid {self.encoding}"
                ) from None
            self._size += len(part)
            if self._size > self.limit or self._stream.unconsumed_tail:
                raise InvalidInputError(
                    ErrorCode.BODY_TOO_LARGE, f"decompressed body exceeds {self.limit} bytes"
                )
            if part:
                self._out.append(part)
            data = self._stream.unused_data if self._stream.eof else b""

    def _trailing(self) -> InvalidInputError:
        return InvalidInputError(
            ErrorCode.INVALID_BODY,
            f"body is not valid {self.encoding}: bytes follow the compressed data",
        )

    def finish(self) -> bytes:
        """The whole decompressed body, or the refusal found on the way."""
        if self._error is None and not self._stream.eof:
            self.feed(b"")  # an empty body: let the decompressor judge it
            if self._error is None and not self._stream.eof:
                self._error = InvalidInputError(
                    ErrorCode.INVALID_BODY, f"body is not valid {self.encoding}: it ends too early"
                )
        if self._error is None and self._after:
            self._error = self._trailing()
        if self._error is not None:
            raise self._error
        return self._out[0] if len(self._out) == 1 else b"".join(self._out)


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
            # decoded on the loop (IngestService.prepare says why); put on the loop too while
            # the stream answers fast, else from a thread (IngestService.commit_on_loop)
            fmt = state.ingest.codecs.for_media_type(request.headers.get("content-type", ""))
            prepared = state.ingest.prepare(who, body, fmt)
            if state.ingest.commit_inline():
                answer = state.ingest.commit_on_loop(prepared)
            else:
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
