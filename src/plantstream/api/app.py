"""The FastAPI application: health and metrics, plus the web surfaces a role serves."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plantstream import __version__
from plantstream.api import (
    alerts,
    assets,
    detection,
    docs,
    errors,
    health,
    history,
    ingest,
    line_protocol,
    machine_models,
    query,
    sparkplug,
)
from plantstream.api.errors import ErrorBody
from plantstream.api.state import AppState

STATIC = Path(__file__).parent / "static"


# The web surfaces a role can serve; adding one is a router module and one entry here.
# ``query`` also serves the dashboard.
SURFACES: dict[str, list[APIRouter]] = {
    "ingest": [ingest.router, line_protocol.router, history.router],
    "query": [
        query.router,
        alerts.router,
        detection.router,
        machine_models.router,
        assets.router,
        sparkplug.router,
    ],
}
ALL_SURFACES = ("ingest", "query")

# the dashboard and /docs load only what the app serves itself
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "Refused; `error.code` says why"}
}


def create_app(state: AppState, *, surfaces: Sequence[str] = ALL_SURFACES) -> FastAPI:
    """An app serving health, metrics and ``surfaces`` (keys of ``SURFACES``)."""
    unknown = set(surfaces) - set(SURFACES)
    if unknown:
        raise ValueError(f"unknown web surfaces {sorted(unknown)}; known: {sorted(SURFACES)}")
    app = FastAPI(
        title="plantstream",
        version=__version__,
        description="Industrial sensor data: send readings, query history and latest values, "
        'manage alerts. Every error is `{"error": {"code", "message"}}`.',
        # our own /docs (api/docs.py): FastAPI's loads a CDN and an inline script
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        responses=_ERRORS,
        # no redirect to the slash-less path: Starlette builds its Location from the Host
        # header, an open redirect (``Host: evil.example``); a wrong path is simply 404
        redirect_slashes=False,
    )
    app.state.plantstream = state
    errors.install(app)
    routers = [health.router, docs.docs_router("plantstream")]
    for surface in surfaces:
        routers += SURFACES[surface]
    for router in routers:
        app.include_router(router)
    routes = [route for router in routers for route in router.routes if isinstance(route, Route)]
    if "query" in surfaces and (STATIC / "index.html").exists():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")

        @app.get("/", include_in_schema=False)
        def dashboard() -> FileResponse:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete_schema(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(_SecurityHeaders, routes=routes)
    return app


class _SecurityHeaders:
    """Security headers on every answer, and a whole ``Allow`` on a 405.

    Plain ASGI, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs each
    request in a task group with memory streams, a cost every ingest request paid
    (bench/results/redesign_ab.json).
    """

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if message["status"] == 405:
                    _allow_every_method(self.routes, Request(scope), headers)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", _CSP)
                # the scheme is https when served over TLS or when a trusted proxy
                # (forwarded_allow_ips) said X-Forwarded-Proto: https
                if scope.get("scheme") == "https":
                    seconds = scope["app"].state.plantstream.settings.hsts_max_age_seconds
                    if seconds:
                        headers.setdefault(
                            "Strict-Transport-Security", f"max-age={seconds}; includeSubDomains"
                        )
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _allow_every_method(routes: list[Route], request: Request, headers: MutableHeaders) -> None:
    """``Allow`` lists the methods of every route on the path, not just the first one's.

    Starlette answers 405 from the first route whose path matches, so a path served by two
    routes (GET and PUT of the detection config) would advertise only one of them.
    """
    methods = {
        method
        for route in routes
        if route.methods and route.matches(request.scope)[0] is not Match.NONE
        for method in route.methods
    }
    if methods:
        headers["Allow"] = ", ".join(sorted(methods))


def _complete_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema, made whole where FastAPI leaves it short.

    Schemas written by hand or by msgspec (the readings body) carry their own ``$defs`` and
    refer to them as ``#/$defs/...``, which in an OpenAPI document points at nothing: they
    move to ``components/schemas``. Error responses declared without a body get the error
    shape every error answers with.
    """
    schema = copy.deepcopy(schema)  # the route definitions share these dicts
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for media in _media_types(operation):
                if "schema" in media:
                    media["schema"] = _hoist_defs(media["schema"], components)
            for status, response in operation.get("responses", {}).items():
                if str(status)[:1] in "45" and "content" not in response:
                    response["content"] = copy.deepcopy(error)
    return schema


def _media_types(operation: dict[str, Any]) -> list[dict[str, Any]]:
    bodies = [operation.get("requestBody", {}), *operation.get("responses", {}).values()]
    return [media for body in bodies for media in body.get("content", {}).values()]


def _hoist_defs(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with its ``$defs`` moved into ``components`` and its refs pointed there."""
    if isinstance(node, list):
        return [_hoist_defs(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    for name, definition in node.pop("$defs", {}).items():
        hoisted = _hoist_defs(definition, components)
        if components.setdefault(name, hoisted) != hoisted:
            raise ValueError(f"two different schemas are both called {name!r}")
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
    return {key: _hoist_defs(value, components) for key, value in node.items()}
