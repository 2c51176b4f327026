"""The one set of exception handlers of a vitalchain FastAPI app.

Every refusal leaves as ``{"error": {"code", "message", ...details}}`` with the status of
:mod:`vitalchain.edge.codes`; an outage (``chain_unavailable``, ``store_unavailable``) is a 503
with ``Retry-After`` and is reported to the health monitor, never a 500; anything unexpected is
a 500 ``internal_error`` that tells the client nothing of its cause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitalchain.edge.codes import COMPONENTS, OUTAGE_MESSAGES, Refused, status_for
from vitalchain.errors import VitalchainError

__all__ = [
    "DOCS_ASSETS",
    "RETRY_AFTER_S",
    "Reporter",
    "error_response",
    "install_error_handlers",
    "refusal_response",
    "serve_docs",
]

# Swagger UI, vendored by `make setup` from npm's swagger-ui-dist (pinned in package-lock.json).
DOCS_ASSETS = Path(__file__).parent / "static" / "swagger-ui"
_ASSETS_URL = "/static/swagger-ui"

RETRY_AFTER_S = 5
# (component, exception): the health monitor's report_failure, which logs once per outage.
Reporter = Callable[[str, BaseException], None]


def error_response(
    status: int, code: str, message: str, details: Mapping[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **(details or {})}}, status_code=status
    )


def _outage(
    code: str, exc: BaseException, message: str | None, report: Reporter | None
) -> JSONResponse:
    if report is not None:
        report(COMPONENTS[code], exc)
    response = error_response(503, code, message or OUTAGE_MESSAGES[code])
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def refusal_response(exc: VitalchainError, report: Reporter | None = None) -> JSONResponse:
    """The answer to a refusal: its code's status from the one table, an outage's 503 with
    Retry-After.  The handler set below answers with it, and so does an app that is not a
    FastAPI app (the ingest workers' bare telemetry route, gateway/workers.py)."""
    if exc.code in COMPONENTS:
        # A service's own refusal keeps its message; a raw outage tells no cause.
        return _outage(exc.code, exc, exc.message if isinstance(exc, Refused) else None, report)
    status = status_for(exc.code)
    if status is None:
        return error_response(500, "internal_error", "internal error")
    return error_response(status, exc.code, exc.message, getattr(exc, "details", None))


def install_error_handlers(
    app: FastAPI,
    *,
    report: Reporter | None = None,
    outages: Mapping[type[Exception], str] | None = None,
) -> None:
    """Install the handlers on ``app`` (once, where the app is built).

    ``report`` is told of every outage a route meets; ``outages`` names foreign exceptions
    that mean one (the embedded store's ``sqlite3.OperationalError`` is ``store_unavailable``).
    """

    def outage(code: str, exc: BaseException) -> JSONResponse:
        return _outage(code, exc, None, report)

    @app.exception_handler(VitalchainError)
    async def refused(_: Request, exc: VitalchainError) -> JSONResponse:
        return refusal_response(exc, report)

    for kind, code in (outages or {}).items():

        async def foreign(_: Request, exc: Exception, code: str = code) -> JSONResponse:
            return outage(code, exc)

        app.add_exception_handler(kind, foreign)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}"
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a JSON body
            return error_response(422, "invalid_request", "body: not valid UTF-8 JSON")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", "internal error")


def serve_docs(app: FastAPI) -> None:
    """``/docs`` from this package's own copy of Swagger UI, never from a CDN.

    Why: FastAPI's default page loads Swagger UI from jsDelivr, so on a hospital network with
    no internet access it was blank.  Build the app with ``docs_url=None, redoc_url=None``
    (ReDoc is CDN-only too) and call this.  If the assets were not vendored (an install that
    skipped ``make setup``), ``/docs`` says so in one line instead of a blank page.
    """
    app.mount(_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS, check_dir=False), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if not (DOCS_ASSETS / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(
                "Swagger UI is not installed here: run `make setup` (docs_assets_missing)",
                status_code=503,
            )
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API docs",
            swagger_js_url=f"{_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSETS_URL}/favicon-32x32.png",
        )
