"""The telemetry body before authentication (issue 12 items 7 and 10): its media type, and its
size enforced while it is read, whatever the framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import Harness, error_code
from vitalchain.vitals import Vital

MIB = 1 << 20


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_300_mb_chunked_body_is_refused_while_it_is_read(harness: Harness) -> None:
    """No Content-Length to trust: the gateway stops reading one byte past the limit, so a
    300 MB stream costs it almost nothing (it used to be read whole, +277 MB)."""
    chunk = bytes(MIB)  # one buffer, yielded again and again: the client holds 1 MiB
    total = 300 * MIB
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += len(chunk)
            yield chunk

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=harness.client.app, client=("198.51.100.4", 9000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.post(
                "/v1/telemetry",
                content=body(),
                headers={"content-type": "application/octet-stream"},
            )

    before = rss_bytes()
    response = asyncio.run(post())
    grown = rss_bytes() - before
    assert "content-length" not in response.request.headers  # really streamed
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert (response.status_code, error_code(response)) == (413, "message_too_large")
    assert grown < 20 * MIB, f"RSS grew by {grown / MIB:.0f} MiB"
    assert sent <= 2 * MIB  # the rest of the stream was never pulled


def test_a_declared_length_over_the_limit_is_refused_unread(harness: Harness) -> None:
    r = harness.client.post(
        "/v1/telemetry",
        content=b"VCm\x01" + bytes(70_000),
        headers={"content-type": "application/octet-stream"},
    )
    assert (r.status_code, error_code(r)) == (413, "message_too_large")


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "octet"],
)
def test_telemetry_must_be_sent_as_octet_stream(harness: Harness, content_type: str | None) -> None:
    """A good data message under another media type is refused 415, and nothing is stored."""
    device = harness.onboarded()
    message = device.prepare([(Vital.SPO2, 97)])
    headers = {"content-type": content_type} if content_type else {}
    before = harness.gateway.store.count_readings()
    # httpx adds no Content-Type for raw bytes, so None really sends none
    r = harness.client.post("/v1/telemetry", content=message, headers=headers)
    assert (r.status_code, error_code(r)) == (415, "unsupported_media_type")
    assert harness.gateway.store.count_readings() == before
    # the same bytes as application/octet-stream are stored
    assert device.send(message)["accepted"] == 1


@pytest.mark.parametrize(
    "content_type", ["Application/Octet-Stream", "application/octet-stream; charset=binary"]
)
def test_the_media_type_is_case_insensitive_and_parameters_are_ignored(
    harness: Harness, content_type: str
) -> None:
    device = harness.onboarded()
    r = harness.client.post(
        "/v1/telemetry",
        content=device.prepare([(Vital.SPO2, 97)]),
        headers={"content-type": content_type},
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/v1/sessions", "/v1/tickets", "/v1/enrolments"])
def test_invalid_utf8_in_a_json_body_is_an_invalid_request(harness: Harness, path: str) -> None:
    """Not 400 http_error: the same 422 invalid_request as any other malformed JSON body."""
    r = harness.client.post(
        path, content=b'{"v": 1, "x": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert (r.status_code, error_code(r)) == (422, "invalid_request")
