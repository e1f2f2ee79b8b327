"""Request authentication: ``Authorization: Bearer <key>`` (or ``X-API-Key``), then scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plantstream.api.state import AppState
from plantstream.errors import AuthError
from plantstream.store.keys import Principal, Role


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.plantstream
    return state


def principal(request: Request) -> Principal:
    """The principal of the request's key; 401 when there is none or it is not valid."""
    header = request.headers.get("authorization", "")
    key = header[7:].strip() if header[:7].lower() == "bearer " else ""
    key = key or request.headers.get("x-api-key", "").strip()
    if not key:
        raise AuthError("missing_key", "an API key is required (Authorization: Bearer <key>)")
    return app_state(request).verify(key)


def reader(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """A key that may read: ``read`` or ``admin``."""
    if who.role not in (Role.READ, Role.ADMIN):
        raise AuthError("forbidden_role", f"a {who.role} key cannot read", status=403)
    return who


def writer(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """A key that may send readings: ``ingest`` or ``admin``."""
    if who.role not in (Role.INGEST, Role.ADMIN):
        raise AuthError("forbidden_role", f"a {who.role} key cannot send readings", status=403)
    return who


def check_facility(who: Principal, facility: str) -> None:
    """403 unless ``who`` may act on ``facility``."""
    if not who.may_access(facility):
        raise AuthError(
            "forbidden_facility", "this key does not belong to that facility", status=403
        )


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
State = Annotated[AppState, Depends(app_state)]
