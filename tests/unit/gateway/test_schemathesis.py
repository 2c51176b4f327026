"""Property-based API testing with schemathesis against the node's own OpenAPI.

Generated requests, schema-valid and schema-invalid (schemathesis's positive and negative
modes), hit every operation of a whole node's app (the API Edge, the store access API and the
alert API) on an embedded chain; none may produce a 5xx, and every response must match the
documented schema.  schemathesis's strategies are driven by hypothesis directly: its pytest
plugin does not run under pytest 9.  Every check runs except ``positive_data_acceptance``: a
schema can say a key is 66 hex characters but not that it is a point on secp256k1, nor that
a ciphertext decrypts, so schema-valid requests are rightly refused with a coded 4xx.

This is the short run for ``make test``; ``benchmarks/fuzz.py`` runs 1,000 cases per operation.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.gateway import ADMIN_TOKEN, make_harness, next_id
from tests.support.node import make_world
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.sealing.sealer import SealingPolicy

EXAMPLES_PER_OPERATION = 50
OPERATIONS = {
    "GET /v1/health",
    "GET /v1/ready",
    "POST /v1/enrolments",
    "POST /v1/sessions",
    "POST /v1/tickets",
    "POST /v1/associations",
    "POST /v1/telemetry",
    "GET /v1/ring",
    "POST /v1/devices/{device}/revocation",
    "POST /v1/store/challenges",
    "POST /v1/store/access",
    "GET /v1/store/groups/{group_id}/proofs/inclusion",
    "GET /v1/store/groups/{group_id}/proofs/consistency",
    "POST /v1/alerts/challenges",
    "POST /v1/alerts/snoozes",
    "POST /v1/alerts/mqtt-credentials",
    "GET /v1/alerts/{alert_id}",
    "POST /v1/alerts/{alert_id}/acknowledgements",
}
ADMIN_ROUTES = ("/v1/enrolments", "/v1/devices/{device}/revocation")


def _strategy(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    modes = [operation.as_strategy(schemathesis.GenerationMode.POSITIVE)]
    with contextlib.suppress(Exception):  # schemathesis may refuse to negate an operation
        modes.append(operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))
    return st.one_of(*modes)


def _fuzz(operation: schemathesis.APIOperation, statuses: Counter[int]) -> None:
    excluded = [positive_data_acceptance]

    @seed(12)
    @given(case=_strategy(operation))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: schemathesis.Case) -> None:
        # Give some enrolments and revocations the admin token: the authorised path runs too.
        if case.path in ADMIN_ROUTES and zlib.crc32(repr(case.body).encode()) % 2 == 0:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
        response = case.call()
        statuses[response.status_code] += 1
        assert response.status_code < 500, (case.path, response.status_code, response.text[:300])
        case.validate_response(response, excluded_checks=excluded)

    run()


def test_no_server_errors_and_documented_responses(tmp_path: Path) -> None:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(EmbeddedBackend(), admin)
    for world in make_world(
        (ledger, admin), tmp_path / "fuzz", SealingPolicy(),
        preauth_rate_per_s=1e6, preauth_burst=10**6,  # one client: not the limit under test
        telemetry_preauth_rate_per_s=1e6, telemetry_preauth_burst=10**6,
    ):  # fmt: skip
        schema = schemathesis.openapi.from_asgi("/openapi.json", world.running.app())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.label for op in operations} >= OPERATIONS
        ran: dict[str, int] = {}
        statuses: Counter[int] = Counter()
        for operation in operations:
            before = sum(statuses.values())
            _fuzz(operation, statuses)
            ran[operation.label] = sum(statuses.values()) - before
        assert not [s for s in statuses if s >= 500]
        assert all(ran.values()), ran  # every operation really ran
        assert sum(ran.values()) >= EXAMPLES_PER_OPERATION * (len(ran) - 2)
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
