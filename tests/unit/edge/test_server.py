"""The one set of handlers, on an app of its own: status from the code, outages reported."""

from __future__ import annotations

import sqlite3

from fastapi import FastAPI
from fastapi.testclient import TestClient

from vitalchain.edge.codes import Refused
from vitalchain.edge.server import install_error_handlers
from vitalchain.errors import DecodeError, VitalchainError


def _client() -> tuple[TestClient, list[tuple[str, str]]]:
    reported: list[tuple[str, str]] = []
    app = FastAPI()
    install_error_handlers(
        app,
        report=lambda component, exc: reported.append((component, type(exc).__name__)),
        outages={sqlite3.OperationalError: "store_unavailable"},
    )
    raised: dict[str, Exception] = {
        "refused": Refused("no_consent", "no valid consent"),
        "snooze": Refused("invalid_snooze", "choose", details={"choices_s": [60.0]}),
        "contract": VitalchainError("taken", code="trust_groups.object_id_taken"),
        "decode": DecodeError("bad JSON", code="invalid_payload"),
        "unknown": VitalchainError("secret detail", code="no_such_code"),
        "chain": VitalchainError("rpc http://10.0.0.1 refused", code="chain_unavailable"),
        "store": Refused("store_unavailable", "the store could not write"),
        "sqlite": sqlite3.OperationalError("disk I/O error"),
        "bug": KeyError("secret"),
    }

    @app.get("/{what}")
    def route(what: str) -> None:
        raise raised[what]

    return TestClient(app, raise_server_exceptions=False), reported


def test_each_refusal_is_answered_by_its_code() -> None:
    client, reported = _client()
    expected = {
        "refused": (403, "no_consent"),
        "snooze": (422, "invalid_snooze"),
        "contract": (409, "trust_groups.object_id_taken"),
        "decode": (422, "invalid_payload"),
        "unknown": (500, "internal_error"),
        "bug": (500, "internal_error"),
    }
    for what, (status, code) in expected.items():
        r = client.get(f"/{what}")
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), what
        assert "secret" not in r.text
    assert client.get("/snooze").json()["error"]["choices_s"] == [60.0]
    assert reported == []


def test_outages_are_503_with_retry_after_and_reported() -> None:
    client, reported = _client()
    for what, code in (
        ("chain", "chain_unavailable"),
        ("store", "store_unavailable"),
        ("sqlite", "store_unavailable"),
    ):
        r = client.get(f"/{what}")
        assert (r.status_code, r.json()["error"]["code"]) == (503, code)
        assert r.headers["retry-after"] == "5"
    assert "10.0.0.1" not in client.get("/chain").text  # the cause is not the client's
    assert client.get("/store").json()["error"]["message"] == "the store could not write"
    assert [c for c, _ in reported][:3] == ["chain", "store", "store"]


def test_validation_and_routing_errors_keep_their_codes() -> None:
    client, _ = _client()
    r = client.post("/refused")
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    r = client.get("/a/b")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
