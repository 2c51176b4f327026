"""``create_app``: the portal's FastAPI app for one provider or one patient; ``serve`` runs it.

The routes live beside their views (``provider.py``, ``patient.py``, ``inbox.py``); this
module only puts them together for the user's role and serves the vendored assets.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from vitalchain.portal import inbox, patient, provider
from vitalchain.portal.core import Portal, Role
from vitalchain.portal.web import HEADERS, Web, home_of

__all__ = ["create_app", "login_url", "serve"]

STATIC = Path(__file__).parent / "static"


def create_app(portal: Portal) -> FastAPI:
    """The portal's app: no OpenAPI (pages, not an API), no CORS middleware at all."""
    app = FastAPI(title="vitalchain care portal", docs_url=None, redoc_url=None, openapi_url=None)
    web = Web(portal)
    web.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def home(request: Request, token: str = "") -> Response:
        """``/?token=…`` as printed at start signs in (and drops the token from the address
        bar); a signed-in user lands on their first view, anyone else on the login form."""
        if token:
            return web._sign_in(request, token)
        if web.sessions.of(request) is None:
            return RedirectResponse("/login", status_code=303, headers=HEADERS)
        return RedirectResponse(home_of(portal.role), status_code=303, headers=HEADERS)

    if portal.role is Role.PROVIDER:
        app.include_router(inbox.router(web))
        app.include_router(provider.router(web))
    else:
        app.include_router(patient.router(web))
    return app


def login_url(port: int, token: str) -> str:
    return f"http://127.0.0.1:{port}/?token={token}"


def bound(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (loopback only; port 0 picks a free one); the caller
    closes it (a socket is its own context manager)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(portal: Portal, sock: socket.socket, on_started: Callable[[str], None]) -> None:
    """Serve ``portal`` on ``sock`` until SIGINT/SIGTERM; ``on_started`` gets the login URL."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            on_started(login_url(sock.getsockname()[1], portal.login_token))

    config = uvicorn.Config(create_app(portal), log_level="warning", ws="websockets")
    Server(config).run(sockets=[sock])
