"""The one decoder of a refusal a vitalchain client receives.

Whatever answered, a gateway, a proxy's HTML 502 or a server that is no gateway at all, the
caller gets a ``kind`` (a :class:`~vitalchain.edge.codes.Refused`) with a code, a message and
the status received, never a JSON or key error from inside the decoding.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from vitalchain.edge.codes import Refused

__all__ = ["HTTP_ERROR", "NOT_JSON", "raise_for_refusal", "refusal"]

R = TypeVar("R", bound=Refused)
MAX_MESSAGE = 200  # characters of a refusal's message kept (a hostile server's is unbounded)
# The codes of an answer that is no vitalchain refusal: not JSON at all (a proxy's HTML page,
# another web server), or JSON without ``error.code`` (the status line is then the message).
NOT_JSON = "not_json"
HTTP_ERROR = "http_error"


def refusal(response: httpx.Response, kind: type[R]) -> R:
    """``response`` (a 4xx or 5xx) as a ``kind``: the body's ``error.code`` and
    ``error.message`` (and its other members as ``details``) when it has them, else
    :data:`HTTP_ERROR` or :data:`NOT_JSON` and the status line."""
    status = response.status_code
    line = f"HTTP {status} {response.reason_phrase or 'error'}".strip()
    try:
        body: Any = response.json()
    except ValueError:  # not JSON (an HTML page from a proxy), or not UTF-8
        return kind(NOT_JSON, f"{line}: the answer is not JSON", status=status)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code, message = error.get("code"), error.get("message")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    return kind(
        code[:MAX_MESSAGE] if isinstance(code, str) and code else HTTP_ERROR,
        (message if isinstance(message, str) else line)[:MAX_MESSAGE],
        status=status,
        details=details,
    )


def raise_for_refusal(response: httpx.Response, kind: type[R]) -> Any:
    """The JSON body of a 2xx or 3xx ``response``; a 4xx or 5xx raises its :func:`refusal`."""
    if response.status_code >= 400:
        raise refusal(response, kind) from None
    try:
        return response.json()
    except ValueError:
        message = f"HTTP {response.status_code}: the answer is not JSON"
        raise kind(NOT_JSON, message, status=response.status_code) from None
