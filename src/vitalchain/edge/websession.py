"""Browser sessions for the HTML pages: the gateway's status page and the care portal.

Why here: both pages log a browser in once with a secret (the gateway's admin token, the
portal's printed login token) and then need the same three things, which had one copy each:

* a **cookie** that never holds the secret.  It is ``expires.nonce.mac`` with
  ``mac = HMAC(key, expires.nonce)``, where ``key`` is an HMAC of the secret under a salt
  drawn at start: a restart or a new secret ends every session, logout ends one (its nonce is
  remembered until it would have expired anyway).  It is HttpOnly, SameSite=Strict, scoped to
  the page's path, and Secure when the page is served over https;
* a **CSRF token** per session (an HMAC of its nonce), which every state-changing form
  carries and which is compared in constant time; a form without it is refused with 403
  ``csrf_failed``;
* the **security headers** of a page: a CSP that names what may load, no framing, no
  sniffing, no referrer, no caching, and no CORS header at all (so no other origin may read
  a page or call a form with the cookie).

Time and randomness are injected (``clock``, ``random``), as everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from starlette.requests import HTTPConnection
from starlette.responses import Response

from vitalchain.errors import VitalchainError

__all__ = ["Session", "Sessions", "page_headers", "templates"]

_NONCE_BYTES = 16


def page_headers(csp: str) -> dict[str, str]:
    """The headers of every page: ``csp`` plus what no page here ever relaxes."""
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",  # a framed form invites clickjacking
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",  # pages hold CSRF tokens and health data
    }


def templates(folder: Path) -> jinja2.Environment:
    """The pages' templates: escaped by default, and a missing variable is an error rather
    than an empty string (a page that silently drops a value could hide a warning)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: its nonce, until when it holds, and its forms' CSRF token."""

    nonce: bytes
    expires_at: int
    csrf: str


class Sessions:
    """Sessions of one page under one secret.

    ``secret`` is read on each use (None: nothing verifies, so no session exists), so a
    changed secret ends the sessions it made.  ``label`` separates the keys of two pages
    that might share a secret.
    """

    def __init__(
        self,
        secret: Callable[[], bytes | None],
        *,
        cookie: str,
        path: str,
        lifetime_s: int,
        label: bytes,
        clock: Callable[[], float],
        random: Callable[[int], bytes],
    ) -> None:
        self.cookie = cookie
        self.path = path
        self.lifetime_s = lifetime_s
        self._secret = secret
        self._label = label
        self._clock = clock
        self._random = random
        self._salt = random(32)
        self._ended: dict[bytes, int] = {}  # logged-out nonce -> when its cookie expires anyway
        self._lock = threading.Lock()

    def _key(self) -> bytes | None:
        secret = self._secret()
        if secret is None:
            return None
        return hmac.new(secret, self._label + b": session key" + self._salt, "sha256").digest()

    def _mac(self, key: bytes, expires_at: int, nonce: bytes) -> str:
        return hmac.new(key, str(expires_at).encode() + b"." + nonce, hashlib.sha256).hexdigest()

    def _csrf(self, key: bytes, nonce: bytes) -> str:
        return hmac.new(key, self._label + b": csrf" + nonce, hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new session's cookie value; the caller has checked the secret already."""
        key = self._key()
        if key is None:
            raise VitalchainError("no secret to sign a session with", code="unauthorized")
        nonce = self._random(_NONCE_BYTES)
        expires_at = int(self._clock()) + self.lifetime_s
        return f"{expires_at}.{nonce.hex()}.{self._mac(key, expires_at, nonce)}"

    def session(self, value: str | None) -> Session | None:
        """The session a cookie value proves, or None (absent, forged, expired, logged out)."""
        key = self._key()
        if not value or key is None:
            return None
        expires, _, rest = value.partition(".")
        nonce_hex, _, mac = rest.partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return None
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return None
        expires_at = int(expires)
        if len(nonce) != _NONCE_BYTES or not hmac.compare_digest(
            mac.encode(), self._mac(key, expires_at, nonce).encode()
        ):
            return None
        if expires_at <= self._clock():
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        return Session(nonce, expires_at, self._csrf(key, nonce))

    def of(self, request: HTTPConnection) -> Session | None:
        """The session of a request's (or a WebSocket's) cookie."""
        return self.session(request.cookies.get(self.cookie))

    def authorise(self, request: HTTPConnection, csrf: str) -> Session:
        """A state-changing form: 401 ``unauthorized`` without a session, 403 ``csrf_failed``
        without the session's CSRF token."""
        session = self.of(request)
        if session is None:
            raise VitalchainError("sign in first", code="unauthorized")
        if not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            raise VitalchainError("the form's CSRF token is missing or wrong", code="csrf_failed")
        return session

    def end(self, session: Session) -> None:
        """End ``session`` here too: a copy of its cookie no longer works."""
        now = self._clock()
        with self._lock:
            for nonce in [n for n, until in self._ended.items() if until <= now]:
                del self._ended[nonce]
            self._ended[session.nonce] = session.expires_at

    def set_cookie(self, request: HTTPConnection, response: Response, value: str) -> None:
        response.set_cookie(
            self.cookie,
            value,
            max_age=self.lifetime_s,
            path=self.path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear_cookie(self, request: HTTPConnection, response: Response) -> None:
        response.delete_cookie(
            self.cookie,
            path=self.path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
