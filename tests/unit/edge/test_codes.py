"""The one table of error codes: each code has one status, and every code a route raises is
in it (else the edge would answer that refusal with a 500)."""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

from vitalchain.edge.codes import (
    BY_STATUS,
    COMPONENTS,
    OUTAGE_MESSAGES,
    STATUS,
    openapi_refusals,
    status_for,
)

SRC = Path(__file__).resolve().parents[3] / "src" / "vitalchain"
# What a route reaches: the gateway, sealing, access and alert services (and the sdk, whose
# refusal types they raise), the edge itself, and the JSON formats
# of wire/ whose parse errors (a model's ``_code``) a route relays.  Not start-up: no route.
SCANNED = ("gateway", "sealing", "access", "alerts", "sdk", "edge", "wire")
NOT_SCANNED = {"gateway/startup.py"}
# Raised with the code as first argument (the Refused family and the ingest core's helper).
CODE_FIRST = {"GatewayError", "AccessError", "AlertError", "Refused", "_refuse"}
# Codes a client makes up for what answered it, never answered by a route.
CLIENT_ONLY = {"not_json", "http_error"}


def _codes_raised(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in CODE_FIRST and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
            for keyword in node.keywords:
                if path.parts[-2] == "wire":
                    break  # the byte formats' codes: no route parses them
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                    found.add(keyword.value.value)
        elif isinstance(node, ast.Assign) and path.parts[-2] == "wire":
            # wire's per-format codes: ``_code = "..."`` (a model's) and ``_CODE = "..."``
            names = {getattr(t, "id", None) for t in node.targets}
            if names & {"_code", "_CODE"} and isinstance(node.value, ast.Constant):
                found.add(node.value.value)
    return {code for code in found if isinstance(code, str)}


def _route_codes() -> dict[str, set[str]]:
    where: dict[str, set[str]] = collections.defaultdict(set)
    for layer in SCANNED:
        for path in sorted((SRC / layer).rglob("*.py")):
            if str(path.relative_to(SRC)) in NOT_SCANNED:
                continue
            for code in _codes_raised(path):
                where[code].add(str(path.relative_to(SRC)))
    return where


def test_every_code_has_one_status() -> None:
    listed = [code for codes in BY_STATUS.values() for code in codes]
    twice = sorted(code for code, n in collections.Counter(listed).items() if n > 1)
    assert not twice, f"codes under two statuses: {twice}"
    assert len(STATUS) == len(listed)


def test_every_code_a_route_raises_is_in_the_table() -> None:
    raised = _route_codes()
    assert {"unknown_session", "invalid_payload", "no_consent", "unknown_alert"} <= set(raised)
    missing = {
        code: sorted(paths)
        for code, paths in raised.items()
        if status_for(code) is None and code not in CLIENT_ONLY
    }
    assert not missing, f"codes raised but not in vitalchain.edge.codes: {missing}"


def test_outages_report_to_a_component_and_are_503() -> None:
    assert set(COMPONENTS) == set(OUTAGE_MESSAGES)
    for code in COMPONENTS:
        assert STATUS[code] == 503


@pytest.mark.parametrize(
    ("code", "status"),
    [("trust_groups.object_id_taken", 409), ("no_such_code", None), ("wrong_device", 401)],
)
def test_status_for(code: str, status: int | None) -> None:
    assert status_for(code) == status


def test_openapi_refusals_documents_each_code_under_its_status() -> None:
    """A route's ``responses=`` come from the table: a code's status is never restated."""
    model = type("Body", (), {})
    responses = openapi_refusals(
        400,
        "invalid_signature",
        "challenge_invalid",
        "unknown_alert",
        notes={400: "a malformed request line", "challenge_invalid": "spent"},
        model=model,
    )
    assert list(responses) == [400, 401, 404]
    assert responses[401] == {
        "description": "refused: `invalid_signature`, `challenge_invalid` (spent)",
        "model": model,
    }
    assert responses[404]["description"] == "refused: `unknown_alert`"
    assert responses[400]["description"] == (
        "Bad Request: refused with {error: {code, message}}; a malformed request line"
    )
    assert "model" not in openapi_refusals("no_consent")[403]


@pytest.mark.parametrize("refusal", ["no_such_code", 418])
def test_openapi_refusals_refuses_what_the_table_does_not_hold(refusal: str | int) -> None:
    with pytest.raises(ValueError, match=r"is not a (code|status) of"):
        openapi_refusals(refusal)
