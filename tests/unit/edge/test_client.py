"""The one client-side decoder: whatever answered, a refusal with a code, never a traceback."""

from __future__ import annotations

import httpx
import pytest

from vitalchain.edge.client import HTTP_ERROR, NOT_JSON, raise_for_refusal, refusal
from vitalchain.edge.codes import Refused
from vitalchain.sdk.provider import AccessError
from vitalchain.sdk.subscriber import GatewayRefusal

HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def _response(status: int, content: bytes, media_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=content, headers={"content-type": media_type})


@pytest.mark.parametrize(
    ("status", "content", "code", "message"),
    [
        (502, HTML_502, NOT_JSON, "HTTP 502 Bad Gateway: the answer is not JSON"),
        (
            500,
            b"\xff\xfe not utf-8",
            NOT_JSON,
            "HTTP 500 Internal Server Error: the answer is not JSON",
        ),
        (503, b"", NOT_JSON, "HTTP 503 Service Unavailable: the answer is not JSON"),
        (404, b'{"detail": "Not Found"}', HTTP_ERROR, "HTTP 404 Not Found"),
        (400, b'["error"]', HTTP_ERROR, "HTTP 400 Bad Request"),
        (401, b'{"error": "nope"}', HTTP_ERROR, "HTTP 401 Unauthorized"),
        (409, b'{"error": {"code": 7, "message": null}}', HTTP_ERROR, "HTTP 409 Conflict"),
        (403, b'{"error": {"message": "who?"}}', HTTP_ERROR, "who?"),
        (403, b'{"error": {"code": "no_consent"}}', "no_consent", "HTTP 403 Forbidden"),
    ],
)
def test_a_malformed_refusal_still_has_a_code(
    status: int, content: bytes, code: str, message: str
) -> None:
    refused = refusal(_response(status, content), Refused)
    assert (refused.code, refused.message, refused.status) == (code, message, status)


def test_a_refusal_keeps_the_status_received_and_its_details() -> None:
    body = b'{"error": {"code": "invalid_snooze", "message": "choose", "choices_s": [60, 300]}}'
    refused = refusal(_response(418, body), GatewayRefusal)
    assert (refused.code, refused.status, refused.choices) == ("invalid_snooze", 418, (60.0, 300.0))


def test_a_hostile_message_is_cut() -> None:
    body = b'{"error": {"code": "x", "message": "' + b"a" * 10_000 + b'"}}'
    assert len(refusal(_response(400, body), Refused).message) == 200


def test_raise_for_refusal() -> None:
    assert raise_for_refusal(_response(200, b'{"v": 1}'), AccessError) == {"v": 1}
    with pytest.raises(AccessError) as refused:
        raise_for_refusal(_response(502, HTML_502, "text/html"), AccessError)
    assert (refused.value.code, refused.value.status) == (NOT_JSON, 502)
    with pytest.raises(AccessError) as refused:
        raise_for_refusal(_response(200, HTML_502, "text/html"), AccessError)
    assert (refused.value.code, refused.value.status) == (NOT_JSON, 200)
