"""Onboarding end to end on the embedded chain, and every refusal of docs/spec/onboarding.md."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.gateway import (
    ADMIN_TOKEN,
    Harness,
    error_code,
    next_id,
    post_signed,
    signed_request,
)
from vitalchain.crypto import PrivateKey, Suite
from vitalchain.crypto.keys import message_digest
from vitalchain.device.client import DeviceError
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.wire.onboarding import (
    AAD_ASSOCIATION_REQUEST,
    AAD_TICKET,
    AAD_TICKET_REQUEST,
    ENROLMENT_CONTEXT,
)


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
def test_onboarding_end_to_end(harness: Harness, suite: Suite) -> None:
    device = harness.device(suite=suite)
    onboarded = device.onboard(harness.enrol())
    assert onboarded.device == device.address
    assert onboarded.gateway == harness.gateway.master.address
    record = harness.ledger.device(device.address)
    assert record.status is DeviceStatus.ACTIVE
    assert record.group_id == harness.gateway.group_id
    assert record.object_id == device.object_id
    assert harness.ledger.device_public_key(device.address) == device.key.public_key


def test_patient_can_enrol_with_own_signature(harness: Harness) -> None:
    r = post_signed(harness.client, *signed_request(PrivateKey.generate()))
    assert r.status_code == 201, r.text
    harness.device().onboard(r.json()["pairing_code"])


def test_enrolment_refusals(harness: Harness) -> None:
    patient, other = PrivateKey.generate(), PrivateKey.generate()
    good = {"v": 1, "patient": patient.address}
    cases = [
        ({}, good, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, good, "unauthorized"),
        ({"Authorization": "Basic abc"}, good, "unauthorized"),
        (
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            {"v": 2, "patient": patient.address},
            "invalid_request",
        ),
        (
            {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            {"v": 1, "patient": "0x123"},
            "invalid_request",
        ),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {**good, "ttl_seconds": 5}, "invalid_request"),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {**good, "extra": 1}, "invalid_request"),
    ]
    for headers, body, code in cases:
        r = harness.client.post("/v1/enrolments", json=body, headers=headers)
        assert r.status_code in (401, 422)
        assert error_code(r) == code, (headers, body, r.text)
    # signed by someone else, and a stale signed request
    for signer, issued_at in (
        (other, int(time.time())),
        (patient, int(time.time()) - 3600),
        (patient, None),
    ):
        raw = json.dumps({"v": 1, "patient": patient.address, "issued_at": issued_at}).encode()
        sig = signer.sign_digest(message_digest(raw, ENROLMENT_CONTEXT)).to_rsv().hex()
        r = harness.client.post(
            "/v1/enrolments",
            content=raw,
            headers={"x-vitalchain-signature": sig, "content-type": "application/json"},
        )
        assert r.status_code == 401
        assert error_code(r) == "unauthorized"


def test_pairing_code_reuse_expiry_and_guessing(harness: Harness) -> None:
    code = harness.enrol()
    harness.device().onboard(code)
    with pytest.raises(DeviceError) as err:
        harness.device().onboard(code)
    assert err.value.code == "pairing_code_used"
    with pytest.raises(DeviceError) as err:
        harness.device().onboard("AAAA-BBBB-CCCC")
    assert err.value.code == "pairing_code_invalid"


def test_expired_pairing_code(fresh_harness: Harness) -> None:
    h = fresh_harness
    code = h.enrol(ttl=60)
    start = time.time()
    h.gateway.clock = lambda: start + 61
    with pytest.raises(DeviceError) as err:
        h.device().onboard(code)
    assert err.value.code == "pairing_code_expired"


def test_too_many_bad_codes_burn_the_session(harness: Harness) -> None:
    session = harness.raw_session(harness.device())
    codes = []
    for _ in range(5):
        r = session.post("/v1/tickets", session.ticket_request("WRONG"), AAD_TICKET_REQUEST)
        codes.append(error_code(r))
    assert codes == ["pairing_code_invalid"] * 4 + ["too_many_attempts"]
    good = session.ticket_request(harness.enrol())
    r = session.post("/v1/tickets", good, AAD_TICKET_REQUEST)
    assert error_code(r) == "unknown_session"


def test_session_refusals(harness: Harness) -> None:
    device = harness.device()
    key = device.key.public_key.compressed.hex()
    taken = harness.onboarded()
    cases = [
        ({"v": 1, "device_key": "02" + "ff" * 32, "object_id": 1}, "invalid_key"),
        ({"v": 1, "device_key": "zz" * 33, "object_id": 1}, "invalid_request"),
        ({"v": 1, "device_key": key, "object_id": -1}, "invalid_request"),
        ({"v": 1, "device_key": key, "object_id": 2**64}, "invalid_request"),
        ({"v": 1, "device_key": key, "object_id": 1, "suite": "rot13"}, "invalid_request"),
        ({"v": 1, "device_key": key, "object_id": taken.object_id}, "object_id_taken"),
        (
            {"v": 1, "device_key": taken.key.public_key.compressed.hex(), "object_id": next_id()},
            "device_known",
        ),
    ]
    for body, code in cases:
        r = harness.client.post("/v1/sessions", json=body)
        assert 400 <= r.status_code < 500
        assert error_code(r) == code, (body, r.text)


def test_sealed_request_refusals(harness: Harness) -> None:
    sid = harness.offer(harness.device())["session_id"]
    cases = [
        ({"v": 1, "session_id": "00" * 16, "ciphertext": "00"}, "/v1/tickets", "unknown_session"),
        ({"v": 1, "session_id": sid, "ciphertext": "00" * 40}, "/v1/tickets", "decryption_failed"),
        ({"v": 1, "session_id": sid[:-2], "ciphertext": "00"}, "/v1/tickets", "invalid_request"),
        (
            {"v": 1, "session_id": sid, "ciphertext": "00" * 40},
            "/v1/associations",
            "decryption_failed",
        ),
    ]
    for body, path, code in cases:
        r = harness.client.post(path, json=body)
        assert error_code(r) == code, (path, body, r.text)


def test_association_before_ticket_and_with_another_token(harness: Harness) -> None:
    session = harness.raw_session(harness.device())
    fake = PrivateKey.generate().sign_digest(bytes(32)).to_rsv().hex()
    body = {"v": 1, "object_id": session.device.object_id, "token": fake, "request": fake}
    r = session.post("/v1/associations", body, AAD_ASSOCIATION_REQUEST)
    assert error_code(r) == "no_ticket"
    # after the ticket, another token is still refused
    session.post("/v1/tickets", session.ticket_request(harness.enrol()), AAD_TICKET_REQUEST)
    r = session.post("/v1/associations", body, AAD_ASSOCIATION_REQUEST)
    assert error_code(r) == "no_ticket"


def test_chain_refusal_is_passed_through(harness: Harness) -> None:
    """A request signature by the wrong key reaches the contract, which refuses it."""
    from vitalchain.ledger.eip712 import Domain, request_digest

    device, impostor = harness.device(), PrivateKey.generate()
    session = harness.raw_session(device)
    offer, sid = session.offer, session.sid
    r = session.post("/v1/tickets", session.ticket_request(harness.enrol()), AAD_TICKET_REQUEST)
    ticket = session.aead.open(bytes.fromhex(r.json()["ciphertext"]), AAD_TICKET + sid)
    token = json.loads(ticket)["token"]
    digest = request_digest(
        Domain(offer["chain_id"], offer["trust_groups"]),
        offer["group_id"],
        device.object_id,
        device.address,
        bytes.fromhex(token),
    )
    wrong = impostor.sign_digest(digest).to_rsv().hex()
    ab = {"v": 1, "object_id": device.object_id, "token": token, "request": wrong}
    r = session.post("/v1/associations", ab, AAD_ASSOCIATION_REQUEST)
    assert r.status_code == 409
    assert error_code(r) == "trust_groups.invalid_device_signature"
    assert harness.ledger.device(device.address).status is DeviceStatus.NONE


def test_unknown_route_and_method(harness: Harness) -> None:
    assert error_code(harness.client.get("/v1/nothing")) == "not_found"
    assert error_code(harness.client.get("/v1/sessions")) == "method_not_allowed"
    assert harness.client.get("/v1/health").json()["status"] == "ok"
