"""Request authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key``), then scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from plantstream.api.state import AppState
from plantstream.errors import AuthError, ErrorCode
from plantstream.ingest import authorize_writer
from plantstream.store.keys import Principal, Role


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.plantstream
    return state


# Declared as security schemes so the OpenAPI document says how to authenticate; either works.
_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer ps_<id>_<secret>`")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, bare")


async def principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
    api_key: Annotated[str | None, Security(_API_KEY)],
) -> Principal:
    """The principal of the request's key; 401 when there is none or it is not valid.

    The dependencies here are ``async``: FastAPI runs a plain ``def`` dependency in a worker
    thread, and three such hops per request cost more CPU than the rest of the route's
    framework (bench/results/redesign_ab.json). Only a key not in the cache goes to a thread
    (its PostgreSQL lookup blocks).
    """
    key = (bearer.credentials if bearer else "").strip() or (api_key or "").strip()
    if not key:
        raise AuthError(
            ErrorCode.MISSING_KEY, "an API key is required (Authorization: Bearer <key>)"
        )
    if not (key.isascii() and key.isprintable()):
        # keys are printable ASCII; anything else (NUL above all) must not reach the database
        raise AuthError(ErrorCode.MALFORMED_KEY, "the API key is malformed")
    state = app_state(request)
    cached = state.keys.get(key)
    if cached is not None:
        return cached
    return await run_in_threadpool(state.verify, key)


async def reader(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """A key that may read: ``read`` or ``admin``."""
    if who.role not in (Role.READ, Role.ADMIN):
        raise AuthError(ErrorCode.FORBIDDEN_ROLE, f"a {who.role} key cannot read")
    return who


async def writer(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """A key that may send readings: ``ingest`` or ``admin``."""
    authorize_writer(who)  # the ingest service's rule, checked before the body is read
    return who


def check_facility(who: Principal, facility: str) -> None:
    """403 unless ``who`` may act on ``facility``."""
    if not who.may_access(facility):
        raise AuthError(ErrorCode.FORBIDDEN_FACILITY, "this key does not belong to that facility")


async def _state(request: Request) -> AppState:
    return app_state(request)


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
State = Annotated[AppState, Depends(_state)]
