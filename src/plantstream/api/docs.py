"""``/docs``: Swagger UI served by the app itself, so the CSP (``script-src 'self'``) holds.

FastAPI's own page loads Swagger UI from a CDN and starts it with an inline script; the CSP
rightly blocks both and an offline plant cannot reach a CDN anyway. The assets come from the
``swagger-ui-bundle-v2`` package (Apache-2.0); the page and its start-up script are ours.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from plantstream.errors import ErrorCode, InvalidInputError

try:  # the package ships no type information: its one name is a Path
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - a core dependency; said plainly if it is missing
    swagger_ui_path = None

_HERE = Path(__file__).parent / "static" / "docs"
# exactly what the page loads: nothing else of the bundle is served
_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/start.js"></script>
</body>
</html>
"""


def docs_router(title: str) -> APIRouter:
    """The ``/docs`` page and its assets for an app called ``title``."""
    page = _PAGE.format(title=title)
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def docs() -> HTMLResponse:
        _installed()
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> FileResponse:
        if name == "start.js":
            return FileResponse(_HERE / "start.js", media_type="application/javascript")
        if name not in _ASSETS:
            raise InvalidInputError(ErrorCode.NOT_FOUND, f"no asset {name[:64]!r}")
        return FileResponse(
            Path(str(_installed())) / name,
            media_type=_ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return router


def _installed() -> object:
    if swagger_ui_path is None:
        raise InvalidInputError(
            ErrorCode.NOT_FOUND, "Swagger UI is not installed: pip install swagger-ui-bundle-v2"
        )
    return swagger_ui_path
