"""The API Edge: FastAPI routes that parse, authorise and call :class:`Gateway`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from vitalchain.gateway import api
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.service import Gateway

MAX_RING_SIZE = 64

__all__ = ["create_app"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": api.ErrorResponse} for status in (400, 401, 403, 409, 413, 422, 429)
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


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="vitalchain gateway",
        version="1.0.0",
        summary="API Edge of a vitalchain trust group: device onboarding and telemetry.",
    )

    app.state.gateway = gateway

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", "internal error")

    @app.get("/v1/health", response_model=api.Health, tags=["gateway"])
    def health(gw: GatewayDep) -> dict[str, Any]:
        return {
            "status": "ok",
            "group_id": gw.group_id,
            "gateway": gw.master.address,
            "chain_id": gw.ledger.chain_id,
            "block_number": gw.ledger.block_number(),
            "readings": gw.store.count_readings(),
        }

    @app.post(
        "/v1/enrolments",
        status_code=201,
        response_model=api.EnrolmentResponse,
        responses=_ERRORS,
        tags=["onboarding"],
    )
    async def enrol(
        body: api.EnrolmentRequest,
        request: Request,
        gw: GatewayDep,
        authorization: Annotated[str | None, Header()] = None,
        x_vitalchain_signature: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """A patient or an admin creates a one-time pairing code for a new device."""
        bearer = None
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value:
                raise GatewayError(401, "unauthorized", "use Authorization: Bearer <admin token>")
            bearer = value
        raw = await request.body()
        return await run_in_threadpool(
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

    @app.post(
        "/v1/sessions",
        status_code=201,
        response_model=api.SessionResponse,
        responses=_ERRORS,
        tags=["onboarding"],
    )
    def open_session(body: api.SessionRequest, gw: GatewayDep) -> dict[str, Any]:
        """keySession: the device's key and object ID in, a session key wrapped for it out."""
        return gw.open_session(body.device_key, body.object_id, body.suite)

    @app.post(
        "/v1/tickets", response_model=api.SealedResponse, responses=_ERRORS, tags=["onboarding"]
    )
    def ticket(body: api.SealedRequest, gw: GatewayDep) -> dict[str, Any]:
        """getTicket: the pairing code in, the master's token out, both under the session key."""
        return gw.issue_ticket(body.session_id, body.ciphertext)

    @app.post(
        "/v1/associations",
        response_model=api.SealedResponse,
        responses=_ERRORS,
        tags=["onboarding"],
    )
    def associate(body: api.SealedRequest, gw: GatewayDep) -> dict[str, Any]:
        """associate: relayed to the chain; answers once the chain accepted the device."""
        return gw.associate(body.session_id, body.ciphertext)

    @app.post(
        "/v1/telemetry",
        response_model=api.Ack,
        responses=_ERRORS,
        openapi_extra=_TELEMETRY_BODY,
        tags=["telemetry"],
    )
    async def telemetry(request: Request, gw: GatewayDep) -> dict[str, Any]:
        """A signed, encrypted data message (docs/spec/telemetry.md); acknowledged once stored."""
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > gw.settings.max_message_bytes
        ):
            raise GatewayError(413, "message_too_large", "data message too large")
        data = await request.body()
        # The checks run here on the event loop (about 0.2 ms of CPU); only the durable commit
        # is waited for, as a future the store's writer thread resolves: no threadpool hop.
        ack = await asyncio.wrap_future(gw.ingest_core.submit(data))
        return ack.to_json()

    @app.get("/v1/ring", response_model=api.Ring, responses=_ERRORS, tags=["telemetry"])
    def ring(
        gw: GatewayDep, size: Annotated[int, Query(ge=2, le=MAX_RING_SIZE)] = 9
    ) -> dict[str, Any]:
        """Up to ``size`` active devices of the group, from the chain: members for a ring."""
        return {"v": 1, "group_id": gw.group_id, "members": gw.ring_members(size)}

    @app.post(
        "/v1/devices/{device}/revocation",
        response_model=api.AdminRevocation,
        responses=_ERRORS,
        tags=["admin"],
    )
    def revoke(
        device: str, gw: GatewayDep, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, Any]:
        """The master revokes a device on chain (admin token required)."""
        gw.require_admin(authorization)
        result = gw.revoke(device)
        return {
            "v": 1,
            "device": device,
            "block_number": result.block_number,
            "tx_hash": result.tx_hash.hex(),
        }

    return app
