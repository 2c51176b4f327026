"""Reading a data message off an HTTP request (docs/spec/telemetry.md, "HTTP"): the one
body reader of ``POST /v1/telemetry``, in the node's app and in each ingest worker's.

Before the message authenticates, its cost is the client address's: its media type and size
are checked, and the body read at most one byte past the limit, whatever the framing (a
chunked body has no Content-Length to trust)."""

from __future__ import annotations

from fastapi import Request

from vitalchain.gateway.ingest import ClientBudget

__all__ = ["TELEMETRY_MEDIA_TYPE", "read_data_message"]

TELEMETRY_MEDIA_TYPE = "application/octet-stream"  # parameters are ignored (telemetry.md)


async def read_data_message(
    request: Request, clients: ClientBudget, limit: int
) -> tuple[bytes, str]:
    """The request's body and the client it is charged to (``http:<address>``), or a refusal
    charged to that client (unsupported_media_type, message_too_large, too_many_requests)."""
    client = f"http:{request.client.host if request.client else 'unknown'}"
    clients.admit(client)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != TELEMETRY_MEDIA_TYPE:
        clients.refuse(
            client,
            "unsupported_media_type",
            f"a data message is sent as Content-Type: {TELEMETRY_MEDIA_TYPE}",
        )
    too_large = f"data messages are at most {limit} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        clients.refuse(client, "message_too_large", too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            clients.refuse(client, "message_too_large", too_large)
    return bytes(body), client
