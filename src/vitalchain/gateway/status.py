"""The gateway operator's status page: ``/status``, HTML rendered here, behind the admin token.

Why a page: an operator at a ward wants to see whether the chain, the store and the broker
answer, which devices the group has, to hand a nurse a pairing code as a QR code, and to
revoke a lost wearable, without composing ``curl`` calls with a Bearer header.

Why a cookie: a browser cannot send a Bearer header, so the admin token is typed once into a
login form and exchanged for a session cookie (:mod:`vitalchain.edge.websession`: the cookie
never holds the token, every state-changing form carries a CSRF token, the page may not be
framed or cached and no CORS header is sent).  No JavaScript runs: the CSP forbids scripts.

The page reads only what other parts keep: health from the :class:`HealthMonitor`'s cache,
devices from the chain's group list and the :class:`DeviceRegistry`, anchors from the block
store and the sealer's status (the facts ``/metrics`` reports as anchor lag).  Its actions
call the same :class:`Gateway` methods as ``POST /v1/enrolments`` and
``POST /v1/devices/{device}/revocation``.  Refusals use the codes of
:mod:`vitalchain.edge.codes`, as an HTML page with the table's status and the code in it;
an outage (``chain_unavailable``, ``store_unavailable``) is left to the edge's handlers, which
report it to the monitor and answer 503.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import segno
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from pydantic import ValidationError

from vitalchain.edge.codes import COMPONENTS, status_for
from vitalchain.edge.websession import Session, Sessions, page_headers, templates
from vitalchain.errors import VitalchainError
from vitalchain.gateway import schemas
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.health import ChainProbe, HealthMonitor, StoreProbe
from vitalchain.gateway.service import Enrolment, Gateway
from vitalchain.logs import pseudonym, safe_error
from vitalchain.wire.address import parse_address

__all__ = ["COOKIE", "SESSION_S", "StatusPage", "add_status_page"]

COOKIE = "vitalchain_status"
SESSION_S = 8 * 3600  # one shift; then the operator types the token again
LOGIN_PATH = "/status/login"
MAX_DEVICES = 1000  # listed on the page; a larger group says how many more there are
RECENT_ANCHORS = 10
_COMPONENT_ORDER = ("chain", "store", "broker")  # always shown, "not monitored" if absent
# No script may run, nothing is fetched from elsewhere, and forms post here only.
_HEADERS = page_headers(
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_ENV = templates(Path(__file__).parent / "templates")

Backlog = Callable[[], Mapping[str, Any] | None]
Text = Annotated[str, Form()]  # a form field; missing is "" so the route refuses it by code


def _when(seconds: float | None) -> dict[str, str] | None:
    """A Unix time as the page shows it (UTC) and as ``<time datetime>`` carries it."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return {
        "iso": moment.isoformat(timespec="seconds"),
        "text": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _short(value: bytes) -> str:
    return value.hex()[:16] + "…"


class StatusPage:
    """The page's logic; :func:`add_status_page` puts its routes on an app."""

    def __init__(self, gateway: Gateway, monitor: HealthMonitor, backlog: Backlog) -> None:
        self.gateway = gateway
        self.monitor = monitor
        self.backlog = backlog
        self.sessions = Sessions(
            self._secret,
            cookie=COOKIE,
            path="/status",
            lifetime_s=SESSION_S,
            label=b"gateway status page",
            clock=lambda: gateway.clock(),  # read each time: a test may swap the clock
            random=gateway.random,
        )

    # -- sessions ---------------------------------------------------------------------------------

    def _secret(self) -> bytes | None:
        token = self.gateway.settings.admin_token
        return None if token is None else token.get_secret_value().encode()

    def login(self, token: str) -> str:
        """The cookie value for a correct admin token; 401 ``unauthorized`` otherwise (the
        gateway's own constant-time comparison)."""
        self.gateway.require_admin(f"Bearer {token}")
        return self.sessions.issue()

    # -- actions ----------------------------------------------------------------------------------

    def enrol(self, patient: str, label: str, ttl_seconds: str) -> Enrolment:
        """A pairing code, through the same service call as ``POST /v1/enrolments`` with the
        admin token (the request is checked by the same schema)."""
        text = ttl_seconds.strip() or "900"
        if not text.isdigit():
            raise GatewayError("invalid_request", "ttl_seconds: a whole number of seconds")
        try:
            body = schemas.EnrolmentRequest.model_validate(
                {"v": 1, "patient": patient.strip(), "label": label, "ttl_seconds": int(text)}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise GatewayError("invalid_request", f"{where}: {first['msg']}") from None
        token = self.gateway.settings.admin_token
        assert token is not None  # a session exists only with a token
        return self.gateway.create_enrolment(
            b"",
            patient=body.patient,
            label=body.label,
            ttl_seconds=body.ttl_seconds,
            issued_at=None,
            bearer=token.get_secret_value(),
            signature=None,
        )

    def revoke(self, device: str) -> tuple[str, int]:
        """Revoke on chain, as ``POST /v1/devices/{device}/revocation`` does; the device's
        address and the block that recorded it."""
        try:
            address = parse_address(device.strip())
        except ValueError as exc:
            raise GatewayError("invalid_request", f"device: {exc}") from None
        return address, self.gateway.revoke(address).block_number

    # -- what the page shows ----------------------------------------------------------------------

    def _read(self, read: Callable[[], Any]) -> tuple[Any, str | None]:
        """One section's data, or the code of why it could not be read (the page still
        renders, so it can show what is down); an outage is reported to the monitor."""
        try:
            return read(), None
        except Exception as exc:  # a status page shows failures rather than failing
            code = "store_unavailable" if isinstance(exc, sqlite3.OperationalError) else None
            code = code or safe_error(exc)
            if code in COMPONENTS:
                self.monitor.report_failure(COMPONENTS[code], exc)
            return None, code

    def health(self) -> list[dict[str, Any]]:
        components = self.monitor.components()
        names = [*_COMPONENT_ORDER, *sorted(set(components) - set(_COMPONENT_ORDER))]
        rows = []
        for name in names:
            c = components.get(name)
            probe = self.monitor.probes.get(name)
            detail = ""
            if isinstance(probe, ChainProbe) and probe.block_number is not None:
                detail = f"block {probe.block_number}"
            elif isinstance(probe, StoreProbe) and probe.readings is not None:
                detail = f"{probe.readings} readings in the journal"
            rows.append(
                {
                    "name": name,
                    "state": "not monitored" if c is None else ("up" if c.up else "down"),
                    "last_success": None if c is None else _when(c.last_success),
                    "down_since": None if c is None else _when(c.down_since),
                    "error": None if c is None or c.up else c.error,
                    "detail": detail,
                }
            )
        return rows

    def devices(self) -> tuple[list[dict[str, str]], int]:
        """The group's devices on chain (up to :data:`MAX_DEVICES`), their status from the
        registry, and how many more there are beyond the list."""
        gw = self.gateway
        addresses = gw.ledger.devices_of(gw.group_id, 0, MAX_DEVICES + 1)
        listed = [
            {
                "pseudonym": pseudonym(a),
                "address": a,
                "status": gw.registry.status(a).name.lower(),
            }
            for a in addresses[:MAX_DEVICES]
        ]
        return listed, max(0, len(addresses) - MAX_DEVICES)

    def anchors(self) -> dict[str, Any]:
        """The log's size, the latest anchors (newest first) and how far they trail."""
        gw = self.gateway
        records = gw.store.anchors(gw.group_id)
        size = gw.store.next_leaf_index(gw.group_id)
        latest = records[-1] if records else None
        sealing = self.monitor.sealing() if self.monitor.sealing is not None else None
        sealed_ms = sealing.get("last_seal_at_ms") if sealing is not None else None
        anchored_ms = sealing.get("last_anchor_at_ms") if sealing is not None else None
        lag = None  # as /metrics' vitalchain_anchor_lag_seconds: undefined until both happened
        if sealed_ms is not None and anchored_ms is not None:
            lag = max(0, sealed_ms - anchored_ms) / 1000
        return {
            "log_size": size,
            "anchored_size": latest.tree_size if latest else 0,
            "unanchored": size - (latest.tree_size if latest else 0),
            "last_seal": None if sealed_ms is None else _when(sealed_ms / 1000),
            "last_anchor": None if anchored_ms is None else _when(anchored_ms / 1000),
            "lag_s": lag,
            "recent": [
                {
                    "tree_size": r.tree_size,
                    "at": _when(r.anchored_at_ms / 1000),
                    "root": _short(r.root),
                    "tx_hash": _short(r.tx_hash),
                }
                for r in reversed(records[-RECENT_ANCHORS:])
            ],
        }

    def sealing(self) -> dict[str, Any] | None:
        if self.monitor.sealing is None:
            return None
        status = self.monitor.sealing()
        return {
            "failing": dict(status.get("failing") or {}),
            "errors": dict(status.get("errors") or {}),
        }

    def render(
        self,
        session: Session | None,
        *,
        notice: str | None = None,
        enrolment: Enrolment | None = None,
    ) -> HTMLResponse:
        """The page; ``session`` None: read-only (an ``Authorization`` header, no forms)."""
        gw = self.gateway
        devices, device_error = self._read(self.devices)
        anchors, anchor_error = self._read(self.anchors)
        code = None
        if enrolment is not None:
            qr = segno.make_qr(enrolment.pairing_code, error="m")
            svg = qr.svg_inline(scale=5, border=4, dark="#000", light="#fff")
            # A labelled image for assistive technology; the code itself is printed beside it.
            label = (
                f'<svg role="img" aria-label="QR code of pairing code {enrolment.pairing_code}" '
            )
            svg = svg.replace("<svg ", label, 1)
            code = {
                "text": enrolment.pairing_code,
                "patient": enrolment.patient,
                "expires": _when(enrolment.expires_at),
                "qr": Markup(svg),  # segno's own SVG of a code this gateway made  # noqa: S704
            }
        context = {
            "csrf": None if session is None else session.csrf,
            "group_id": gw.group_id,
            "gateway": gw.master.address,
            "chain_id": gw.ledger.chain_id,
            "now": _when(gw.clock()),
            "health": self.health(),
            "sealing": self.sealing(),
            "backlog": self.backlog(),
            "devices": None if devices is None else devices[0],
            "more_devices": 0 if devices is None else devices[1],
            "device_error": device_error,
            "anchors": anchors,
            "anchor_error": anchor_error,
            "notice": notice,
            "code": code,
        }
        return page("status.html", context)

    def refused(self, exc: VitalchainError) -> HTMLResponse:
        """A refusal as a page: the table's status, the code and the message, a way back."""
        if exc.code in COMPONENTS:
            raise exc  # an outage: the edge's handler reports it and answers 503
        status = status_for(exc.code)
        code, message = (exc.code, str(exc)) if status is not None else ("internal_error", "")
        return page(
            "refused.html",
            {"code": code, "message": message or "internal error"},
            status=status or 500,
        )


def page(template: str, context: Mapping[str, Any], *, status: int = 200) -> HTMLResponse:
    """A template rendered with the page's security headers."""
    html = _ENV.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _client(request: Request) -> str:
    return f"status:{request.client.host if request.client else 'unknown'}"


def add_status_page(
    app: FastAPI, gateway: Gateway, monitor: HealthMonitor, backlog: Backlog
) -> StatusPage:
    """Put ``/status`` and its forms on ``app`` (kept out of the OpenAPI: a page, not an API)."""
    status = StatusPage(gateway, monitor, backlog)
    router = APIRouter(prefix="/status", include_in_schema=False)

    def login_form(
        request: Request, *, code: str | None = None, status_code: int = 200
    ) -> Response:
        response = page("login.html", {"code": code}, status=status_code)
        if COOKIE in request.cookies:
            status.sessions.clear_cookie(request, response)  # a stale or forged cookie is dropped
        return response

    @router.get("")
    def show(request: Request) -> Response:
        """The page for a session or an ``Authorization: Bearer`` header (read-only: a
        header is not a browser's, and forms need a session); otherwise the login form."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            gateway.require_admin(authorization)  # 401 ``unauthorized`` from the edge
            return status.render(None)
        session = status.sessions.of(request)
        if session is None:
            return login_form(request)
        return status.render(session)

    @router.post("/login")
    def login(request: Request, token: Text = "") -> Response:
        """The admin token, once, for a session cookie; limited per client like the other
        routes an unauthenticated caller may hit (gateway/preauth.py)."""
        if not gateway.preauth.allow(LOGIN_PATH, _client(request)):
            return login_form(request, code="too_many_requests", status_code=429)
        try:
            value = status.login(token)
        except GatewayError as exc:
            return login_form(request, code=exc.code, status_code=401)
        response = RedirectResponse("/status", status_code=303, headers=_HEADERS)
        status.sessions.set_cookie(request, response, value)
        return response

    @router.post("/enrolments")
    def enrol(
        request: Request,
        csrf: Text = "",
        patient: Text = "",
        label: Text = "",
        ttl_seconds: Text = "",
    ) -> Response:
        """A pairing code for ``patient``, shown as text and as a QR code."""
        try:
            session = status.sessions.authorise(request, csrf)
            enrolment = status.enrol(patient, label, ttl_seconds)
        except VitalchainError as exc:
            return status.refused(exc)
        return status.render(session, notice="A pairing code was created.", enrolment=enrolment)

    @router.post("/revocations")
    def revoke(request: Request, csrf: Text = "", device: Text = "") -> Response:
        """Revoke ``device`` on chain; the page then lists it as revoked."""
        try:
            session = status.sessions.authorise(request, csrf)
            address, block = status.revoke(device)
        except VitalchainError as exc:
            return status.refused(exc)
        notice = f"Device {pseudonym(address)} was revoked on chain (block {block})."
        return status.render(session, notice=notice)

    @router.post("/logout")
    def logout(request: Request, csrf: Text = "") -> Response:
        """End the session, here and in the browser."""
        try:
            session = status.sessions.authorise(request, csrf)
        except VitalchainError as exc:
            return status.refused(exc)
        status.sessions.end(session)
        response = RedirectResponse("/status", status_code=303, headers=_HEADERS)
        status.sessions.clear_cookie(request, response)
        return response

    app.include_router(router)
    return status
