"""Alerts on the embedded chain: the shared suite, plus what needs the node's own settings."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alert_suite import RING_K, AlertSuite, low_spo2, signed_post, wait_for, ward
from tests.node_fixtures import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.crypto import ring as blsag
from vitalchain.crypto.ring import RingProof, alert_context
from vitalchain.device.client import DeviceError
from vitalchain.gateway.sealer import SealingPolicy
from vitalchain.ledger import Ledger
from vitalchain.vitals import Vital

SEALING = SealingPolicy(max_readings=1000, max_age_s=3600)


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    ledger, admin = chain
    yield from make_world(
        ledger, admin, tmp_path / "node", SEALING, alert_ring_k=RING_K, alert_ack_timeout_s=0.5
    )


class TestAlertsEmbedded(AlertSuite):
    pass


def test_ring_below_k_is_delivered_but_not_recorded(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    ledger, admin = chain
    for world in make_world(ledger, admin, tmp_path / "n", SEALING, alert_ring_k=8):
        w = ward(world, others=2)
        alert = low_spo2(world, w)
        world.running.alerts.drain()
        assert world.running.alerts.refused[-1] == ("ring_too_small", alert.alert_id.hex())
        assert ledger.alert_count(world.group_id) == 0
        state = world.running.alerts.escalator.state(alert.alert_id.hex())
        assert {d.recipient for d in state.deliveries} == {w.patient.address, w.doctor.address}


def test_a_message_whose_ring_leaves_out_the_device_is_refused(world: World) -> None:
    """A device that attaches another member's ring proof (it cannot be the signer)."""
    w = ward(world, ring=False)
    other = world.device(world.patient())
    third = world.device(world.patient())
    members = (other.key.public_key, third.key.public_key)
    payload_message = w.device.prepare([(Vital.SPO2, 97.0)])
    assert w.device._aead is not None
    plain = w.device._aead.open(payload_message[20:], payload_message[:20])
    digest = hashlib.sha256(plain[:-65]).digest()
    proof = RingProof(
        members, blsag.sign(digest, members, other.key, alert_context(world.group_id, digest))
    )
    header = b"VCm\x02" + payload_message[4:20]
    for body, code in ((proof.to_bytes() + plain, "invalid_ring"), (b"\x00\x05" + plain,
                       "malformed_message")):  # fmt: skip
        data = header + w.device._aead.seal(body, header)
        r = world.client.post(
            "/v1/telemetry", content=data, headers={"content-type": "application/octet-stream"}
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, code)
    time.sleep(0.1)
    assert w.stored == []
    with pytest.raises(DeviceError) as refused:
        w.device.use_ring(members)
    assert refused.value.code == "not_in_ring"


def test_escalation_acknowledge_and_snooze_through_the_api(world: World) -> None:
    w = ward(world)
    second = world.provider()
    world.consent(w.patient, second, Vital.SPO2)
    alert_id = low_spo2(world, w).alert_id.hex()
    alerts = world.running.alerts
    tiers = lambda: [(d.recipient, d.tier) for d in alerts.escalator.state(alert_id).deliveries]  # noqa: E731
    assert set(tiers()) == {(w.patient.address, 0), (w.doctor.address, 0)}
    time.sleep(0.6)  # past the 0.5 s acknowledgement timeout
    alerts.tick()
    assert (second.address, 1) in tiers()
    # refusals: a stranger, a bad signature, a reused challenge, an unknown alert
    path = f"/v1/alerts/{alert_id}/acknowledgements"
    r = signed_post(world, w.stranger, path, "ack", alert_id, body={})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_a_recipient")
    r = signed_post(world, w.doctor, path, "ack", alert_id, body={}, signer=w.stranger)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_signature")
    r = signed_post(world, w.doctor, f"/v1/alerts/{'00' * 16}/acknowledgements", "ack", "00" * 16,
                    body={})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_alert")
    r = signed_post(world, w.doctor, path, "ack", alert_id, body={})
    assert r.status_code == 200
    assert alerts.escalator.state(alert_id).acknowledged_by == w.doctor.address
    # snooze: the doctor snoozes SpO2 for this patient; the next episode skips the doctor
    fields = (w.patient.address, "spo2", repr(60.0))
    body = {"patient": w.patient.address, "vital": "spo2", "duration_s": 60.0}
    r = signed_post(world, w.stranger, "/v1/alerts/snoozes", "snooze", *fields, body=body)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_a_recipient")
    bad = {**body, "duration_s": 0.0}
    r = signed_post(world, w.doctor, "/v1/alerts/snoozes", "snooze", *fields, body=bad)
    assert r.status_code == 422
    r = signed_post(world, w.doctor, "/v1/alerts/snoozes", "snooze", *fields, body=body)
    assert r.status_code == 200
    w.device.send(w.device.prepare([(Vital.SPO2, 97.0)] * 3))  # back to normal (hysteresis)
    nxt = low_spo2(world, w).alert_id.hex()
    recipients = {d.recipient for d in alerts.escalator.state(nxt).deliveries}
    assert w.doctor.address not in recipients
    assert second.address in recipients


def test_a_reused_challenge_is_refused(world: World) -> None:
    w = ward(world)
    alert_id = low_spo2(world, w).alert_id.hex()
    nonce = bytes.fromhex(
        world.client.post(
            "/v1/alerts/challenges", json={"v": 1, "address": w.doctor.address}
        ).json()["nonce"]
    )
    from vitalchain.care.delivery import sign_action

    body = {"v": 1, "by": w.doctor.address, "nonce": nonce.hex(),
            "signature": sign_action(w.doctor, "ack", nonce, alert_id)}  # fmt: skip
    path = f"/v1/alerts/{alert_id}/acknowledgements"
    assert world.client.post(path, json=body).status_code == 200
    r = world.client.post(path, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "challenge_invalid")


def test_a_silent_device_raises_a_stale_alarm_not_recorded_on_chain(world: World) -> None:
    w = ward(world, ring=False)
    alerts = world.running.alerts
    alerts.rules.set(w.patient.address, Vital.SPO2, stale_after_s=0.3)
    w.device.send(w.device.prepare([(Vital.SPO2, 97.0)]))
    wait_for(lambda: w.stored)
    time.sleep(0.5)
    alerts.tick()
    stale = [a for a in alerts.raised if a.kind == "stale"]
    assert len(stale) == 1
    alerts.tick()  # once per silence
    assert len([a for a in alerts.raised if a.kind == "stale"]) == 1
    alerts.drain()
    assert world.ledger.alert_count(world.group_id) == 0
    from vitalchain.care.alerts import open_alert, verify_alert

    verify_alert(stale[0], world.ledger)  # relay-signed by the master
    assert open_alert(stale[0], w.patient)["device"] == w.device.address
