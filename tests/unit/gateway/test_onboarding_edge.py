"""The HTTP edge: addresses normalised to EIP-55 or refused, path and range checks in the
schema, and the admin token (issue 12, items 9, 12 and 17).

Before: a lowercase patient address at enrolment stopped sealing for its whole group, a
non-address device ID in the revocation route and a group ID of 2**63 in the proof routes
were answered 500, and a one-letter admin token was accepted.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from tests.support.access import raw_access, sealed_patient
from tests.support.gateway import ADMIN_TOKEN, Harness, error_code, post_signed, signed_request
from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.service import _code_hash
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.vitals import Vital
from vitalchain.wire.access import ACCESS_CONTEXT, access_message

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _bad_checksum(address: str) -> str:
    """``address`` with the case of one letter flipped: mixed case, wrong checksum."""
    for i, ch in enumerate(address[2:], start=2):
        if ch.isalpha():
            return address[:i] + ch.swapcase() + address[i + 1 :]
    raise AssertionError("an address with no letter")


# -- addresses at enrolment -------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [str.lower, lambda a: "0x" + a[2:].upper()])
def test_enrolment_normalises_a_single_case_patient_to_eip55(
    harness: Harness, spelling: object
) -> None:
    patient = PrivateKey.generate().address
    given = spelling(patient)  # type: ignore[operator]
    assert given != patient
    r = harness.client.post("/v1/enrolments", json={"v": 1, "patient": given}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["patient"] == patient
    code = r.json()["pairing_code"]
    enrolment = harness.gateway.state.enrolment(_code_hash(code))
    assert enrolment is not None
    assert enrolment.patient == patient
    device = harness.device()
    device.onboard(code)
    (session,) = [s for s in harness.gateway.state.active_sessions() if s.device == device.address]
    assert session.patient == patient  # what the sealer groups by


def test_enrolment_refuses_a_bad_checksum_and_stores_nothing(harness: Harness) -> None:
    before = harness.gateway.state.counts()
    wrong = _bad_checksum(PrivateKey.generate().address)
    r = harness.client.post("/v1/enrolments", json={"v": 1, "patient": wrong}, headers=ADMIN)
    assert (r.status_code, error_code(r)) == (422, "invalid_request")
    assert "checksum" in r.json()["error"]["message"]
    assert harness.gateway.state.counts() == before


def test_a_patient_may_sign_with_a_lowercase_address(harness: Harness) -> None:
    patient = PrivateKey.generate()
    r = post_signed(harness.client, *signed_request(patient, address=patient.address.lower()))
    assert r.status_code == 201, r.text
    assert r.json()["patient"] == patient.address


# -- device revocation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device", ["nope", "0x123", "0x" + "zz" * 20, "0x" + "11" * 21, "12" * 21, "%00"]
)
def test_revocation_of_a_non_address_is_422(harness: Harness, device: str) -> None:
    r = harness.client.post(f"/v1/devices/{device}/revocation", headers=ADMIN)
    assert (r.status_code, error_code(r)) == (422, "invalid_request"), r.text


def test_revocation_refuses_a_bad_checksum_and_normalises_lowercase(harness: Harness) -> None:
    device = harness.onboarded()
    r = harness.client.post(
        f"/v1/devices/{_bad_checksum(device.address)}/revocation", headers=ADMIN
    )
    assert (r.status_code, error_code(r)) == (422, "invalid_request")
    assert harness.ledger.device(device.address).status is DeviceStatus.ACTIVE
    r = harness.client.post(f"/v1/devices/{device.address.lower()}/revocation", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["device"] == device.address
    assert harness.ledger.device(device.address).status is DeviceStatus.REVOKED


def test_revocation_still_needs_the_admin_token(harness: Harness) -> None:
    address = PrivateKey.generate().address
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = harness.client.post(f"/v1/devices/{address}/revocation", headers=headers)
        assert (r.status_code, error_code(r)) == (401, "unauthorized")


# -- the admin token ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "t", "fifteen-bytes!!", "é" * 7])
def test_short_admin_tokens_are_refused_without_echoing_them(token: str) -> None:
    with pytest.raises(ValidationError) as err:
        GatewaySettings(admin_token=SecretStr(token))
    assert "at least 16 bytes" in str(err.value)
    assert "input_value" not in str(err.value)
    if len(token) > 1:
        assert token not in str(err.value)


def test_a_short_admin_token_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VITALCHAIN_GATEWAY_ADMIN_TOKEN", "short-secret")
    with pytest.raises(ValidationError) as err:
        GatewaySettings()
    assert "at least 16 bytes" in str(err.value)
    assert "short-secret" not in str(err.value)
    monkeypatch.setenv("VITALCHAIN_GATEWAY_ADMIN_TOKEN", "x" * 16)
    assert GatewaySettings().admin_token == SecretStr("x" * 16)


def test_the_admin_token_is_an_openapi_security_scheme(harness: Harness) -> None:
    spec = harness.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["adminToken"]["type"] == "http"
    assert schemes["adminToken"]["scheme"] == "bearer"
    for path in ("/v1/enrolments", "/v1/devices/{device}/revocation"):
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"adminToken": []}], path
        # the header is the scheme's, not a loose parameter besides it
        names = {p["name"].lower() for p in operation.get("parameters", [])}
        assert "authorization" not in names, path
    device = spec["paths"]["/v1/devices/{device}/revocation"]["post"]["parameters"][0]
    assert device["schema"]["pattern"] == "^0x[0-9a-fA-F]{40}$"
    # routes anyone may call carry no security requirement
    assert "security" not in spec["paths"]["/v1/sessions"]["post"]
    assert "docs" in harness.client.get("/docs").text.lower()


# -- the access API (access/service.py) ----------------------------------------------------------


@pytest.mark.parametrize(
    "route", ["proofs/inclusion?leaf_index=0&tree_size=1", "proofs/consistency?size1=1&size2=1"]
)
@pytest.mark.parametrize("group_id", [2**63, 2**64, 10**30, 0, -1])
def test_proof_routes_refuse_group_ids_out_of_range(
    world: World, route: str, group_id: int
) -> None:
    r = world.client.get(f"/v1/store/groups/{group_id}/{route}")
    assert (r.status_code, error_code(r)) == (422, "invalid_request"), r.text


def test_proof_routes_still_answer_in_range(world: World) -> None:
    r = world.client.get(f"/v1/store/groups/{2**63 - 1}/proofs/inclusion?leaf_index=0&tree_size=1")
    assert r.status_code == 404, r.text


def test_access_normalises_addresses_and_refuses_bad_checksums(world: World) -> None:
    patient, _ = sealed_patient(world, Vital.SPO2)
    lower = patient.address.lower()
    r = world.client.post("/v1/store/challenges", json={"v": 1, "provider": lower})
    assert r.status_code == 201, r.text
    nonce = bytes.fromhex(r.json()["nonce"])  # issued to the EIP-55 form
    assert raw_access(world, patient, patient.address, nonce=nonce).status_code == 200
    for body in (
        {"v": 1, "provider": _bad_checksum(patient.address)},
        {"v": 1, "provider": "0x" + "g" * 40},
    ):
        r = world.client.post("/v1/store/challenges", json=body)
        assert (r.status_code, error_code(r)) == (422, "invalid_request")
    # a patient's own request, with both addresses in lowercase, is the same request
    r = world.client.post("/v1/store/challenges", json={"v": 1, "provider": patient.address})
    nonce = bytes.fromhex(r.json()["nonce"])

    sig = patient.sign(
        access_message(nonce, world.group_id, patient.address, 0, None), ACCESS_CONTEXT
    )
    r = world.client.post(
        "/v1/store/access",
        json={"v": 1, "provider": lower, "group_id": world.group_id, "patient": lower,
              "after_number": 0, "number": None, "nonce": nonce.hex(),
              "signature": sig.to_rsv().hex()},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["blocks"]
