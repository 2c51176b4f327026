"""A patient-signed enrolment request is single use, across restarts (issue 12, item 5).

Before, a captured request could be replayed within its ±300 s window: three replays gave
three pairing codes, and a rogue device onboarded with one of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from tests.support.gateway import (
    ADMIN_TOKEN,
    Harness,
    chain_outbox,
    error_code,
    post_signed,
    settings_for,
    signed_request,
    started_gateway,
)
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.keys import Signature
from vitalchain.gateway.app import create_app
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import Ledger

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def malleated(signature: Signature) -> Signature:
    """The other valid ECDSA signature of the same digest: ``(r, n - s)``, recovery id flipped."""
    r, s = signature.compact[:32], signature.s
    return Signature(r + (SECP256K1_N - s).to_bytes(32, "big"), signature.recovery_id ^ 1)


def test_a_signed_request_gives_one_code_and_a_replay_is_409(fresh_harness: Harness) -> None:
    h = fresh_harness
    patient = PrivateKey.generate()
    body, signature = signed_request(patient)
    first = post_signed(h.client, body, signature)
    assert first.status_code == 201, first.text
    before = h.gateway.state.counts()
    for _ in range(3):
        r = post_signed(h.client, body, signature)
        assert r.status_code == 409, r.text
        assert error_code(r) == "enrolment_replayed"
    # The second valid signature (r, n - s) is refused too: high s does not verify, and the
    # single-use key is the signer and body, never the signature bytes.
    r = post_signed(h.client, body, malleated(signature))
    assert (r.status_code, error_code(r)) in ((401, "unauthorized"), (409, "enrolment_replayed"))
    assert h.gateway.state.counts() == before
    assert before["enrolments"] == 1
    # the one code still works; a new request by the same patient (a new body) is fine too
    h.device().onboard(first.json()["pairing_code"])
    again, sig = signed_request(patient, int(time.time()) + 1)
    assert post_signed(h.client, again, sig).status_code == 201


def test_the_admin_token_path_is_not_single_use(harness: Harness) -> None:
    patient = PrivateKey.generate().address
    for _ in range(2):
        r = harness.client.post(
            "/v1/enrolments",
            json={"v": 1, "patient": patient},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text


@contextmanager
def served(settings: GatewaySettings, master: PrivateKey, ledger: Ledger) -> Iterator[TestClient]:
    with (
        chain_outbox(ledger, master, settings.data_dir / "outbox.db") as outbox,
        started_gateway(settings, master, ledger, outbox) as gateway,
        TestClient(create_app(gateway)) as client,
    ):
        yield client


def test_a_replay_is_refused_after_a_restart(ledger: Ledger, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "gw")
    master = PrivateKey.generate()
    body, signature = signed_request(PrivateKey.generate())
    with served(settings, master, ledger) as client:
        assert post_signed(client, body, signature).status_code == 201
    with served(settings, master, ledger) as client:
        r = post_signed(client, body, signature)
        assert r.status_code == 409, r.text
        assert error_code(r) == "enrolment_replayed"


def test_used_requests_are_kept_for_their_window_then_purged(fresh_harness: Harness) -> None:
    h = fresh_harness
    start = time.time()
    h.gateway.clock = lambda: start
    body, signature = signed_request(PrivateKey.generate(), int(start))
    assert post_signed(h.client, body, signature).status_code == 201
    skew = h.gateway.settings.clock_skew_s
    h.gateway.clock = lambda: start + skew  # still inside the window: kept, and refused
    assert h.gateway.purge_expired()["enrolment_requests"] == 0
    assert error_code(post_signed(h.client, body, signature)) == "enrolment_replayed"
    h.gateway.clock = lambda: start + 2 * skew + 1  # past the window (and its margin)
    assert h.gateway.purge_expired()["enrolment_requests"] == 1
    assert h.gateway.state.counts()["enrolment_requests"] == 0
    r = post_signed(h.client, body, signature)  # now stale: refused by the window instead
    assert (r.status_code, error_code(r)) == (401, "unauthorized")
