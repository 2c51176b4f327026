"""The portal's HTTP edge: sessions, pages, refusals; routes stay thin and call the views.

Why a login token: the portal serves health data on a loopback port, which any local process
(or a web page through DNS rebinding) could reach.  So, as Jupyter does, it prints a random
token at start; ``/?token=…`` (or the login form) exchanges it once for a session cookie
(:mod:`vitalchain.edge.websession`), and the address bar is cleared of it by a redirect.
Only ``127.0.0.1`` and ``localhost`` are accepted as ``Host`` (rebinding), a WebSocket
must come from the portal's own origin (it has no CORS to protect it), and every page
carries a CSP that lets scripts and connections come from the portal only.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection

from vitalchain.edge.codes import status_for
from vitalchain.edge.websession import Session, Sessions, page_headers, templates
from vitalchain.errors import VitalchainError
from vitalchain.logs import safe_error
from vitalchain.portal.core import Portal, PortalError, Role

__all__ = ["COOKIE", "SESSION_S", "Text", "Web"]

COOKIE = "vitalchain_portal"
SESSION_S = 12 * 3600  # a clinician's shift; then the printed token again
ALLOWED_HOSTS = ("127.0.0.1", "localhost")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = page_headers(CSP)
Text = Annotated[str, Form()]  # a form field; missing is "" so the view refuses it by code

_ENV = templates(Path(__file__).parent / "templates")


class NotSignedIn(Exception):
    """A page asked without a session: the browser is sent to the login form."""


class Web:
    """Sessions and rendering for the portal's routes."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.sessions = Sessions(
            lambda: portal.login_token.encode(),
            cookie=COOKIE,
            path="/",
            lifetime_s=SESSION_S,
            label=b"care portal",
            clock=portal.clock,
            random=portal.random,
        )

    def token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.portal.login_token.encode())

    def session(self, request: HTTPConnection) -> Session:
        """The request's session; NotSignedIn (a redirect to the login form) otherwise."""
        session = self.sessions.of(request)
        if session is None:
            raise NotSignedIn
        return session

    def form(self, request: Request, csrf: str) -> Session:
        """A state-changing form: 401 ``unauthorized`` or 403 ``csrf_failed``."""
        return self.sessions.authorise(request, csrf)

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        notice: str | None = None,
    ) -> HTMLResponse:
        """A template with what every page shows (who is signed in, the navigation)."""
        session = self.sessions.of(request)
        base = {
            "role": self.portal.role.value,
            "me": self.portal.my_pseudonym,
            "csrf": None if session is None else session.csrf,
            "path": request.url.path,
            "notice": notice,
        }
        html = _ENV.get_template(template).render(**base, **context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def refused(self, request: Request, exc: VitalchainError) -> HTMLResponse:
        """A refusal as a page: the edge table's status, the code and the message."""
        status = status_for(exc.code)
        code, message = (exc.code, str(exc)) if status is not None else ("internal_error", "")
        return self.page(
            request,
            "refused.html",
            {"code": code, "message": message or "internal error"},
            status=status or 500,
        )

    def install(self, app: FastAPI) -> None:
        """The login and logout routes, the host check and the error pages on ``app``."""
        web = self

        @app.middleware("http")
        async def only_loopback_hosts(request: Request, call_next: Any) -> Response:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0]
            if host not in ALLOWED_HOSTS:
                return Response("unknown host", status_code=400, headers=HEADERS)
            response: Response = await call_next(request)
            return response

        @app.exception_handler(NotSignedIn)
        def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
            return RedirectResponse("/login", status_code=303, headers=HEADERS)

        @app.exception_handler(VitalchainError)
        def refused(request: Request, exc: VitalchainError) -> Response:
            return web.refused(request, exc)

        @app.get("/login", include_in_schema=False)
        def login_form(request: Request, token: str = "") -> Response:
            """``/login?token=…`` as printed at start signs in; otherwise the form."""
            if token:
                return web._sign_in(request, token)
            return web.page(request, "login.html", {"code": None})

        @app.post("/login", include_in_schema=False)
        def login(request: Request, token: Text = "") -> Response:
            return web._sign_in(request, token)

        @app.post("/logout", include_in_schema=False)
        def logout(request: Request, csrf: Text = "") -> Response:
            web.sessions.end(web.form(request, csrf))
            response = RedirectResponse("/login", status_code=303, headers=HEADERS)
            web.sessions.clear_cookie(request, response)
            return response

    def _sign_in(self, request: Request, token: str) -> Response:
        if not self.token_ok(token.strip()):
            page = self.page(request, "login.html", {"code": "unauthorized"}, status=401)
            self.sessions.clear_cookie(request, page)
            return page
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        self.sessions.set_cookie(request, response, self.sessions.issue())
        return response


def home_of(role: Role) -> str:
    """Where a signed-in user lands."""
    return "/inbox" if role is Role.PROVIDER else "/me"


def problem(exc: BaseException) -> PortalError:
    """An unexpected failure of a backend as a refusal the page can show by code."""
    return PortalError(safe_error(exc), "a backend failed; see the portal's log")
