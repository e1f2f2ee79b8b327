"""The FastAPI application: ingest, query, health and the dashboard, by role."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from plantstream import __version__
from plantstream.api import detection, errors, health, ingest, query
from plantstream.api.state import AppState

STATIC = Path(__file__).parent / "static"


def create_app(state: AppState, *, role: str = "all") -> FastAPI:
    """An app serving ``role``: ``ingest``, ``api`` (query + dashboard) or ``all``."""
    app = FastAPI(
        title="plantstream",
        version=__version__,
        description="Industrial sensor data: send readings, query history and latest values, "
        'manage alerts. Every error is `{"error": {"code", "message"}}`.',
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.plantstream = state
    errors.install(app)
    app.include_router(health.router)
    if role in ("ingest", "all"):
        app.include_router(ingest.router)
    if role in ("api", "all"):
        app.include_router(query.router)
        app.include_router(detection.router)
        if (STATIC / "index.html").exists():
            app.mount("/static", StaticFiles(directory=STATIC), name="static")

            @app.get("/", include_in_schema=False)
            def dashboard() -> FileResponse:
                return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.middleware("http")
    async def security_headers(request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        )
        return response

    return app
