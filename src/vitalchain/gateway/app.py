"""The API Edge: FastAPI routes that parse, authorise and call :class:`Gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from vitalchain.edge.codes import openapi_refusals
from vitalchain.edge.server import install_error_handlers, serve_docs
from vitalchain.gateway import schemas
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.health import ChainProbe, HealthMonitor, OutboxProbe, StoreProbe
from vitalchain.gateway.metrics import CONTENT_TYPE, exposition
from vitalchain.gateway.preauth import PreAuthLimit
from vitalchain.gateway.service import Gateway
from vitalchain.gateway.status import add_status_page
from vitalchain.gateway.telemetry_http import read_data_message
from vitalchain.wire.bands import Bands
from vitalchain.wire.onboarding import RekeyResponse, SessionResponse
from vitalchain.wire.telemetry import AckBody

MAX_RING_SIZE = 64

__all__ = ["create_app"]

# What the routes may refuse with, by status (the codes behind each are the ingest's and the
# onboarding service's; telemetry alone checks the media type).
_ERRORS = openapi_refusals(400, 401, 403, 409, 413, 422, 429, 503, model=schemas.ErrorResponse)
_TELEMETRY_ERRORS = {
    **_ERRORS,
    **openapi_refusals("unsupported_media_type", model=schemas.ErrorResponse),
}
_TELEMETRY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def _gateway(request: Request) -> Gateway:
    """Async on purpose: a sync dependency would cost every request a threadpool hop."""
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]
# The admin token as an OpenAPI security scheme (an Authorize button in /docs).  auto_error is
# off: the dependencies below read the header, so a missing or malformed one keeps its coded
# 401 (``unauthorized``), and a patient-signed enrolment needs no token at all.
_ADMIN_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The gateway operator's admin token (`Authorization: Bearer <token>`).",
)
_AdminToken = Annotated[HTTPAuthorizationCredentials | None, Security(_ADMIN_TOKEN)]


async def _admin(request: Request, gw: GatewayDep, _token: _AdminToken) -> None:
    """The operator's admin token, required (401 ``unauthorized`` without it)."""
    gw.require_admin(request.headers.get("authorization"))


async def _bearer(request: Request, _token: _AdminToken) -> str | None:
    """An admin token if one is offered (else the request must carry a patient signature);
    an ``Authorization`` header that is not ``Bearer <token>`` is refused, not ignored."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value:
        raise GatewayError("unauthorized", "use Authorization: Bearer <admin token>")
    return value


AdminDep = Annotated[None, Depends(_admin)]
BearerDep = Annotated[str | None, Depends(_bearer)]


def default_monitor(gateway: Gateway) -> HealthMonitor:
    """Chain and store probes for ``gateway``, checked once now so health has an answer."""
    settings = gateway.settings
    monitor = HealthMonitor(
        {
            "chain": ChainProbe(gateway.ledger, settings.health_timeout_s),
            "store": StoreProbe(gateway.store, gateway.group_id),
        },
        interval_s=settings.health_interval_s,
    )
    monitor.probe_once()
    return monitor


def create_app(
    gateway: Gateway,
    health: HealthMonitor | None = None,
    metrics: Sequence[CollectorRegistry] = (),
) -> FastAPI:
    """The API Edge of ``gateway``.  ``health`` is the node's running monitor; without one the
    app makes its own (chain and store) and runs it while the app is served.  ``metrics``:
    further registries ``/metrics`` serves (the node's alarm service's)."""
    monitor = health or default_monitor(gateway)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if health is None:
            monitor.start()
        try:
            yield
        finally:
            if health is None:
                monitor.stop()

    app = FastAPI(
        title="vitalchain gateway",
        version="1.0.0",
        summary="API Edge of a vitalchain trust group: device onboarding and telemetry.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own Swagger UI (serve_docs), not a CDN
        redoc_url=None,
    )
    serve_docs(app)

    app.state.gateway = gateway
    # Pre-authentication limit per client on routes that create state (gateway/preauth.py).
    app.add_middleware(PreAuthLimit, limiter=gateway.preauth)
    app.state.health = monitor

    # One set of handlers for the gateway's routes and the access and alert routers the node
    # mounts on this app: a route's outage is reported to the monitor, which logs it once.
    install_error_handlers(
        app,
        report=monitor.report_failure,
        outages={sqlite3.OperationalError: "store_unavailable"},  # the embedded store
    )

    def backlog() -> dict[str, Any] | None:
        """The chain outbox's backlog from its probe's last check (a node has one)."""
        outbox = monitor.probes.get("outbox")
        return outbox.backlog if isinstance(outbox, OutboxProbe) else None

    @app.get("/v1/health", response_model=schemas.Health, tags=["gateway"])
    async def liveness(gw: GatewayDep) -> dict[str, Any]:
        """Liveness from the probes' cache: never calls the chain or the store, never blocks.
        ``status`` is ``degraded`` while a component is down; the answer is still 200."""
        components = monitor.components()
        chain, store = monitor.probes.get("chain"), monitor.probes.get("store")
        waiting = backlog()
        listed = {name: c.to_json() for name, c in components.items()}
        if waiting is not None and "outbox" in listed:
            listed["outbox"]["backlog"] = waiting
        sealing = dict(monitor.sealing()) if monitor.sealing is not None else None
        healthy = (
            all(c.up for c in components.values())
            and not (sealing and (sealing.get("failing") or sealing.get("errors")))
            and not (waiting and waiting["waiting"])  # chain writes wait: degraded too
        )
        return {
            "status": "ok" if healthy else "degraded",
            "group_id": gw.group_id,
            "gateway": gw.master.address,
            "chain_id": gw.ledger.chain_id,
            "block_number": chain.block_number if isinstance(chain, ChainProbe) else None,
            "readings": store.readings if isinstance(store, StoreProbe) else None,
            "components": listed,
            "sealing": sealing,
        }

    @app.get(
        "/v1/ready",
        response_model=schemas.Readiness,
        responses={503: {"model": schemas.Readiness}},
        tags=["gateway"],
    )
    async def readiness() -> JSONResponse:
        """Readiness: 503 naming the failing components while any is down, else 200."""
        components = monitor.components()
        failing = [name for name, c in components.items() if not c.up]
        body = {
            "status": "not_ready" if failing else "ready",
            "failing": failing,
            "components": {name: c.to_json() for name, c in components.items()},
        }
        return JSONResponse(body, status_code=503 if failing else 200)

    # The onboarding steps share their refusals and tag; included in place, so the routes
    # (and the OpenAPI paths) keep their order.
    onboarding = APIRouter(responses=_ERRORS, tags=["onboarding"])

    @onboarding.post("/v1/enrolments", status_code=201, response_model=schemas.EnrolmentResponse)
    async def enrol(
        body: schemas.EnrolmentRequest,
        request: Request,
        gw: GatewayDep,
        bearer: BearerDep,
        x_vitalchain_signature: Annotated[str | None, Header()] = None,
    ) -> schemas.EnrolmentResponse:
        """A patient or an admin creates a one-time pairing code for a new device."""
        raw = await request.body()
        enrolment = await run_in_threadpool(
            lambda: gw.create_enrolment(
                raw,
                patient=body.patient,
                label=body.label,
                ttl_seconds=body.ttl_seconds,
                issued_at=body.issued_at,
                bearer=bearer,
                signature=x_vitalchain_signature,
            )
        )
        return schemas.EnrolmentResponse(
            v=1,
            pairing_code=enrolment.pairing_code,
            patient=enrolment.patient,
            expires_at=enrolment.expires_at,
        )

    @onboarding.post("/v1/sessions", status_code=201, response_model=SessionResponse)
    def open_session(body: schemas.SessionRequest, gw: GatewayDep) -> SessionResponse:
        """keySession: the device's key and object ID in, a session key wrapped for it out."""
        return gw.open_session(body.device_key, body.object_id, body.suite)

    @onboarding.post("/v1/sessions/rekey", response_model=RekeyResponse)
    def rekey(body: schemas.RekeyRequest, gw: GatewayDep) -> RekeyResponse:
        """Re-key: a new session key for an active session, signed for by the device key."""
        return gw.rekey(body.session_id, body.issued_at, body.signature)

    @onboarding.post("/v1/tickets", response_model=schemas.SealedResponse)
    def ticket(body: schemas.SealedRequest, gw: GatewayDep) -> schemas.SealedResponse:
        """getTicket: the pairing code in, the master's token out, both under the session key."""
        sealed = gw.issue_ticket(body.session_id, body.ciphertext)
        return schemas.SealedResponse(v=1, ciphertext=sealed.hex())

    @onboarding.post("/v1/associations", response_model=schemas.SealedResponse)
    def associate(body: schemas.SealedRequest, gw: GatewayDep) -> schemas.SealedResponse:
        """associate: relayed to the chain; answers once the chain accepted the device."""
        sealed = gw.associate(body.session_id, body.ciphertext)
        return schemas.SealedResponse(v=1, ciphertext=sealed.hex())

    app.include_router(onboarding)

    @app.post(
        "/v1/telemetry",
        response_model=AckBody,
        response_model_exclude_none=True,  # optional fields (receipt, prove) only when set
        responses=_TELEMETRY_ERRORS,
        openapi_extra=_TELEMETRY_BODY,
        tags=["telemetry"],
    )
    async def telemetry(request: Request, gw: GatewayDep) -> dict[str, Any]:
        """A signed, encrypted data message (docs/spec/telemetry.md); acknowledged once stored,
        with the master's receipt for it (docs/spec/receipt.md, signed by the ingest core).
        The body is read as every telemetry route reads it (gateway/telemetry_http.py)."""
        core = gw.ingest_core
        body, client = await read_data_message(request, core.clients, core.max_message_bytes)
        # The checks run here on the event loop (about 0.2 ms of CPU); only the durable commit
        # is waited for, as a future the store's writer thread resolves: no threadpool hop.
        ack = await asyncio.wrap_future(core.submit(body, client=client))
        return ack.to_json()

    @app.get("/v1/ring", response_model=schemas.Ring, responses=_ERRORS, tags=["telemetry"])
    def ring(
        gw: GatewayDep, size: Annotated[int, Query(ge=2, le=MAX_RING_SIZE)] = 9
    ) -> dict[str, Any]:
        """Up to ``size`` active devices of the group, from the chain: members for a ring."""
        return {"v": 1, "group_id": gw.group_id, "members": gw.ring_members(size)}

    @app.get(
        "/v1/sessions/{session_id}/bands",
        response_model=Bands,
        responses=_ERRORS,
        tags=["telemetry"],
    )
    def bands(
        session_id: Annotated[
            str,
            Path(pattern=r"^[0-9a-f]{32}$", description="The session's ID, 16 bytes hex."),
        ],
        gw: GatewayDep,
    ) -> Bands:
        """The bands of the session's patient: a device ring-signs a message only when a
        reading is outside them (docs/spec/telemetry.md, "Bands")."""
        return gw.bands(bytes.fromhex(session_id))

    @app.get("/metrics", tags=["admin"], response_class=Response, responses=_ERRORS)
    def prometheus(gw: GatewayDep, _admin: AdminDep) -> Response:
        """Prometheus metrics (admin token required): ingest, refusals by code, the outbox's
        depth, the anchor's lag, alert latency (gateway/metrics.py).  Scrape with
        ``bearer_token``."""
        body = exposition(gw.ingest_core.metrics, backlog, monitor.sealing, metrics)
        return Response(body, media_type=CONTENT_TYPE)

    @app.post(
        "/v1/devices/{device}/revocation",
        response_model=schemas.AdminRevocation,
        responses=_ERRORS,
        tags=["admin"],
    )
    def revoke(
        device: Annotated[schemas.Address, Path(description="The device's address.")],
        gw: GatewayDep,
        _admin: AdminDep,
    ) -> dict[str, Any]:
        """The master revokes a device on chain (admin token required)."""
        result = gw.revoke(device)
        return {
            "v": 1,
            "device": device,
            "block_number": result.block_number,
            "tx_hash": result.tx_hash.hex(),
        }

    add_status_page(app, gateway, monitor, backlog)  # /status: the operator's page (status.py)
    return app
