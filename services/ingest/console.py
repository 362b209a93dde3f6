"""The web console (``/console``) and the embeddable tenant viewer (``/viewer``).

Both are static pages (``services/ingest/console/``: HTML, one script each,
CSS) that call the JSON API from the browser: the console with the API key
the user signs in with (kept in ``sessionStorage``, sent as a bearer token,
so there is no cookie to forge requests with), the viewer with its viewer
token. Everything ships with the package; no page loads anything from
another origin (the Content-Security-Policy says so to the browser).

The console may not be framed; the viewer is made to be (``frame-ancestors``
from ``CHAINLOG_VIEWER_FRAME_ANCESTORS``, every origin by default). Neither
sends a referrer, so a viewer token in the page's URL does not leak to
links it shows.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

PAGES = Path(__file__).parent / "console"

_COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors {ancestors}"
)


class _Static(StaticFiles):
    """Static files with the pages' headers; revalidated, so an upgrade shows at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.encode(), v.encode()) for k, v in _COMMON.items()),
                ]
            await send(message)

        await super().__call__(scope, receive, with_headers)


def mount(app: FastAPI, *, viewer_frame_ancestors: str) -> None:
    app.mount("/console/static", _Static(directory=PAGES / "static"), name="console-static")

    def page(name: str, ancestors: str) -> Response:
        return FileResponse(
            PAGES / name,
            media_type="text/html; charset=utf-8",
            headers={**_COMMON, "content-security-policy": _CSP.format(ancestors=ancestors)},
        )

    @app.get("/console", include_in_schema=False)
    async def console() -> Response:
        return page("index.html", "'none'")

    @app.get("/viewer", include_in_schema=False)
    async def viewer() -> Response:
        return page("viewer.html", viewer_frame_ancestors)
