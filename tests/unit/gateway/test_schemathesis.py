"""Property-based API testing with schemathesis against the gateway's own OpenAPI.

Generated requests (valid and invalid, per operation) hit the real app on an embedded
chain; none may produce a 5xx, and every response must match the documented schema.
schemathesis's strategies are driven by hypothesis directly: its pytest plugin does not
run under pytest 9.  Every check runs except ``positive_data_acceptance``: a schema can say a
key is 66 hex characters but not that it is a point on secp256k1, nor that a ciphertext
decrypts, so schema-valid requests are rightly refused with a coded 4xx.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.gateway_fixtures import ADMIN_TOKEN, make_harness, next_id
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.app import create_app
from vitalchain.ledger import EmbeddedBackend, Ledger

EXAMPLES_PER_OPERATION = 60


def _fuzz(operation: schemathesis.APIOperation, statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        # Give some enrolments the admin token, so the authorised path is fuzzed too.
        if case.path == "/v1/enrolments" and hash(repr(case.body)) % 2 == 0:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = case.call()
        statuses[response.status_code] += 1
        assert response.status_code < 500, (case.path, response.status_code, response.text[:300])
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    run()


def test_no_server_errors_and_documented_responses(tmp_path: Path) -> None:
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    for harness in make_harness(ledger, tmp_path / "fuzz", next_id()):
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(harness.gateway))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.label for op in operations} >= {
            "POST /v1/enrolments",
            "POST /v1/sessions",
            "POST /v1/tickets",
            "POST /v1/associations",
            "POST /v1/telemetry",
            "GET /v1/health",
        }
        statuses: Counter[int] = Counter()
        for operation in operations:
            _fuzz(operation, statuses)
        assert not [s for s in statuses if s >= 500]
        assert sum(statuses.values()) >= EXAMPLES_PER_OPERATION  # it really ran
        print(dict(statuses))


@pytest.mark.parametrize(
    "path", ["/v1/sessions", "/v1/tickets", "/v1/associations", "/v1/enrolments"]
)
def test_non_json_bodies_are_422_not_500(tmp_path: Path, path: str) -> None:
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    for harness in make_harness(ledger, tmp_path / "gw", next_id()):
        for body in (b"", b"{", b"[]", b"null", b"\xff\xfe"):
            r = harness.client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code in (401, 422), (body, r.status_code, r.text)
