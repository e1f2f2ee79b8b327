"""Every error answers ``{"error": {"code": ..., "message": ...}}`` with the right status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from plantstream.errors import (
    AuthError,
    InvalidInputError,
    StreamThrottledError,
    StreamUnavailableError,
)

log = logging.getLogger(__name__)

_STATUS_BY_CODE = {
    "body_too_large": 413,
    "batch_too_large": 413,
    "unsupported_encoding": 415,
    "body_timeout": 408,
    "not_found": 404,
    "conflict": 409,
}


class ErrorDetail(BaseModel):
    code: str = Field(min_length=1, description="machine-readable; clients may match on it")
    message: str


class ErrorBody(BaseModel):
    """What every refusal answers, whatever its status (documented in the OpenAPI schema)."""

    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        return error_response(_STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message)

    @app.exception_handler(StreamThrottledError)
    async def _throttled(_: Request, exc: StreamThrottledError) -> JSONResponse:
        retry = max(1, round(exc.retry_after))
        return error_response(429, exc.code, str(exc), {"Retry-After": str(retry)})

    @app.exception_handler(StreamUnavailableError)
    async def _unavailable(_: Request, exc: StreamUnavailableError) -> JSONResponse:
        log.warning("stream unavailable: %s", exc)
        return error_response(
            503,
            "stream_unavailable",
            "the stream is unavailable; nothing was accepted",
            {"Retry-After": "5"},
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("PostgreSQL unavailable: %s", type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the database is unavailable; retry shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an unexpected error occurred")
