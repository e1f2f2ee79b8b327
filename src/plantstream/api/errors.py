"""Every error answers ``{"error": {"code": ..., "message": ...}}`` with the right status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from plantstream.errors import (
    AuthError,
    ErrorCode,
    InvalidInputError,
    PushBackError,
    StreamUnavailableError,
)

log = logging.getLogger(__name__)

# Starlette's own refusals (no route, wrong method) answer with these codes
_CODE_BY_HTTP_STATUS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}


class ErrorDetail(BaseModel):
    code: str = Field(min_length=1, description="machine-readable; clients may match on it")
    message: str


class ErrorBody(BaseModel):
    """What every refusal answers, whatever its status (documented in the OpenAPI schema)."""

    error: ErrorDetail


def error_response(
    code: ErrorCode,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    status: int | None = None,
) -> JSONResponse:
    """The error body of ``code``, answered with the code's status unless ``status`` is given."""
    return JSONResponse(
        {"error": {"code": str(code), "message": message}},
        status_code=status if status is not None else code.status,
        headers=dict(headers) if headers else None,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.code, exc.message, headers, status=exc.status)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        # a refusal may carry headers of its own (``Connection: close`` after an unread body)
        return error_response(exc.code, exc.message, getattr(exc, "headers", None))

    @app.exception_handler(PushBackError)
    async def _pushed_back(_: Request, exc: PushBackError) -> JSONResponse:
        retry = max(1, round(exc.retry_after))
        return error_response(exc.code, str(exc), {"Retry-After": str(retry)})

    @app.exception_handler(StreamUnavailableError)
    async def _unavailable(_: Request, exc: StreamUnavailableError) -> JSONResponse:
        log.warning("stream unavailable: %s", exc)
        return error_response(
            ErrorCode.STREAM_UNAVAILABLE,
            "the stream is unavailable; nothing was accepted",
            {"Retry-After": "5"},
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("PostgreSQL unavailable: %s", type(exc).__name__)
        return error_response(
            ErrorCode.DATABASE_UNAVAILABLE,
            "the database is unavailable; retry shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_unavailable(_: Request, exc: Exception) -> JSONResponse:
        # latest values and alert feeds live in Redis: away or slow, that is a 503, not a 500
        log.warning("Redis unavailable: %s", type(exc).__name__)
        return error_response(
            ErrorCode.REDIS_UNAVAILABLE,
            "live values are unavailable; retry shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ErrorCode.INVALID_REQUEST, f"{where}: {first.get('msg')}")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, ErrorCode.HTTP_ERROR)
        return error_response(code, str(exc.detail), exc.headers, status=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")
