"""Liveness, readiness (stream, PostgreSQL, Redis) and Prometheus metrics."""

from __future__ import annotations

import os
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from plantstream.api.auth import State
from plantstream.api.state import AppState, ping_postgres
from plantstream.store.redis_client import redis_ready

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _checks(state: AppState) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, check in (
        ("postgres", lambda: ping_postgres(state.pool)),
        ("redis", lambda: redis_ready(state.redis)),  # a cluster's state and every primary
        ("stream", state.stream.list_shards),
    ):
        try:
            problem = check()
        except Exception as exc:  # readiness reports any failure, it never raises
            results[name] = f"unavailable: {type(exc).__name__}"
            continue
        results[name] = f"unavailable: {problem}" if isinstance(problem, str) else "ok"
    return results


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
)
async def readyz(state: State) -> JSONResponse:
    """Ready when the stream, PostgreSQL and Redis all answer; 503 otherwise."""
    results = await run_in_threadpool(_checks, state)
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
def prometheus() -> Response:
    """Prometheus metrics of this process, or of every process of the layout (``serve all``
    runs web workers and a processor apart; their values meet in PROMETHEUS_MULTIPROC_DIR)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
