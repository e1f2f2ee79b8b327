"""Detector settings over HTTP: read them, change them (admin), see who changed what when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from plantstream.api.auth import Reader, State, principal
from plantstream.detect.config import DetectionConfig, config_history, current_config, save_config
from plantstream.errors import AuthError
from plantstream.store.keys import Principal, Role

router = APIRouter(tags=["detection"])


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    if who.role is not Role.ADMIN:
        raise AuthError("forbidden_role", "only an admin key can change detection", status=403)
    return who


class ConfigVersion(BaseModel):
    version: int
    config: DetectionConfig


class ConfigChange(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    comment: str
    config: dict[str, Any]


class ConfigHistory(BaseModel):
    versions: list[ConfigChange]


# What a client may do next with an answer (OpenAPI links; the fuzzer follows them too).
_AFTER_GET = {
    "Edit": {
        "operationRef": "#/paths/~1v1~1detection~1config/put",
        "requestBody": "$response.body#/config",
        "description": "change the settings in force and send them back",
    }
}
_AFTER_PUT = {
    "InForce": {
        "operationRef": "#/paths/~1v1~1detection~1config/get",
        "description": "the settings now in force carry the version just answered",
    },
    "History": {
        "operationRef": "#/paths/~1v1~1detection~1config~1history/get",
        "parameters": {"limit": 1},
        "description": "the newest entry of the history is the change just made",
    },
}


@router.get(
    "/v1/detection/config",
    response_model=ConfigVersion,
    responses={200: {"description": "The settings in force", "links": _AFTER_GET}},
)
def get_config(who: Reader, state: State) -> ConfigVersion:
    """The detector settings in force (version 0: the built-in defaults).

    A facility's key sees the tuning, the rules for every facility and its own facility's
    rules; an admin key sees every rule.
    """
    with state.pool.connection() as conn:
        version, config = current_config(conn)
    return ConfigVersion(version=version, config=visible_to(who, config))


def visible_to(who: Principal, config: DetectionConfig) -> DetectionConfig:
    """``config`` without the rules of facilities ``who`` may not see."""
    if who.role is Role.ADMIN:
        return config
    rules = [r for r in config.rules if r.facility is None or who.may_access(r.facility)]
    return config.model_copy(update={"rules": rules})


@router.put(
    "/v1/detection/config",
    response_model=ConfigVersion,
    responses={200: {"description": "The new version", "links": _AFTER_PUT}},
)
def put_config(
    config: DetectionConfig,
    who: Annotated[Principal, Depends(admin)],
    state: State,
    comment: Annotated[str, Query(max_length=500, pattern=r"^[^\x00]*$")] = "",
) -> ConfigVersion:
    """Replace the detector settings (validated); recorded as a new version with who and when.

    Processors pick the new version up within seconds.
    """
    with state.pool.connection() as conn:
        version = save_config(conn, config, author=who.key_id, comment=comment)
    return ConfigVersion(version=version, config=config)


@router.get("/v1/detection/config/history", response_model=ConfigHistory)
def history(
    _: Annotated[Principal, Depends(admin)],
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ConfigHistory:
    """Earlier versions of the settings, newest first."""
    with state.pool.connection() as conn:
        rows = config_history(conn, limit=limit)
    return ConfigHistory(versions=[ConfigChange(**row) for row in rows])
