"""The backend-neutral alert suite (rules, ring-signed alerts, recipients, acknowledgement,
escalation, the chain's alert log), on the embedded EVM and on anvil: ``world`` is
parametrised over the chains."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.alerts import (
    ACK_TIMEOUT_S,
    RING_K,
    _recipients,
    alert_world,
    low_spo2,
    signed_post,
    ward,
)
from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.alerts.rules import Raised
from vitalchain.crypto import PrivateKey
from vitalchain.crypto import ring as blsag
from vitalchain.crypto.ring import RingProof
from vitalchain.device.client import DeviceError
from vitalchain.errors import DecryptionError, InvalidProof, InvalidSignature, VitalchainError
from vitalchain.ledger import Ledger
from vitalchain.sdk.alert import Alert, AlertError, open_alert, verify_alert
from vitalchain.sdk.subscriber import sign_action
from vitalchain.vitals import Vital
from vitalchain.wire.alert import RELAY_CONTEXT, alert_context


@pytest.fixture
def world(any_chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from alert_world(any_chain, tmp_path / "node")


class TestAlertService:
    def test_sustained_low_spo2_raises_one_ring_signed_alert_recorded_on_chain(
        self, world: World
    ) -> None:
        w = ward(world)
        alert = low_spo2(world, w)
        world.running.alerts.drain()
        assert alert.kind == "threshold"
        assert alert.ring is not None
        assert len(alert.ring.members) == RING_K + 1
        assert world.ledger.alert_count(world.group_id) == 1
        verify_alert(alert, world.ledger)  # anyone: ring from the chain, record on chain
        for reader in (w.patient, w.doctor):
            body = open_alert(alert, reader)
            assert (body["vital"], body["value"], body["device"]) == (
                "spo2",
                85.0,
                w.device.address,
            )
            assert body["direction"] == -1
        with pytest.raises(DecryptionError):
            open_alert(alert, w.stranger)
        assert body["priority"] == "medium"  # below the band, not below urgent_low (85)
        # One alert per episode: more low readings raise nothing new ...
        w.device.send(w.device.prepare([(Vital.SPO2, 86.0)] * 3))
        wait_for(lambda: len(w.stored) >= 2)
        time.sleep(0.2)
        assert world.running.alerts.raised_total == 1
        # ... unless the episode turns urgent: one HIGH alert supersedes the open one.
        upgraded = low_spo2(world, w, value=84.0)
        assert open_alert(upgraded, w.doctor)["priority"] == "high"
        assert open_alert(upgraded, w.doctor)["upgraded"] is True
        state = world.running.alerts.escalator.state(alert.alert_id.hex())
        assert state.resolved

    def test_a_single_spike_raises_nothing(self, world: World) -> None:
        w = ward(world, ring=False)
        w.device.send(w.device.prepare([(Vital.SPO2, 85.0), (Vital.SPO2, 97.0)]))
        w.device.send(w.device.prepare([(Vital.SPO2, 86.0), (Vital.SPO2, 97.0)]))
        wait_for(lambda: len(w.stored) >= 2)
        time.sleep(0.2)
        assert world.running.alerts.raised_total == 0

    def test_a_replayed_alert_is_refused_by_its_key_image(self, world: World) -> None:
        w = ward(world)
        alert = low_spo2(world, w)
        world.running.alerts.drain()
        message = w.stored[-1]
        raised = Raised(w.patient.address, w.device.address, Vital.SPO2, -1, 85.0, 92.0, 100.0,
                        0.0, 0.0, 3)  # fmt: skip
        with pytest.raises(AlertError) as refused:
            world.running.alerts.raise_threshold(message, raised)
        assert refused.value.code == "alert_replayed"
        # The chain refuses the same key image too, whoever submits it.
        assert alert.key_image is not None
        with pytest.raises(VitalchainError) as chain_refused:
            world.ledger.record_alert(
                world.running.gateway.master, world.group_id, alert.key_image, bytes(32), bytes(32)
            )
        assert chain_refused.value.code == "alert_registry.key_image_used"
        assert world.ledger.alert_count(world.group_id) == 1

    def test_a_non_member_cannot_produce_a_valid_alert(self, world: World) -> None:
        w = ward(world)
        alert = low_spo2(world, w)
        world.running.alerts.drain()
        assert alert.ring is not None
        outsider = PrivateKey.generate()
        with pytest.raises(ValueError, match="not in the ring"):
            blsag.sign(alert.digest, alert.ring.members, outsider, b"ctx")
        # An outsider who puts itself in a ring of members: the ring is not the group's.
        members = (outsider.public_key, *alert.ring.members[1:])
        context = alert_context(world.group_id, alert.digest)
        forged_ring = RingProof(members, blsag.sign(alert.digest, members, outsider, context))
        forged = dataclasses.replace(alert, ring=forged_ring)
        with pytest.raises(InvalidSignature, match="not relayed"):
            verify_alert(forged, world.ledger)  # the relay signature covers the ring
        # Even a gateway that relays it (signs it) cannot make it a group member's alert.
        master = world.running.gateway.master
        resigned = master.sign(forged.signed_bytes(), RELAY_CONTEXT).to_rsv()
        forged = dataclasses.replace(forged, signature=resigned)
        with pytest.raises(InvalidProof, match="not a device of the group"):
            verify_alert(forged, world.ledger)
        assert world.running.alerts.record(forged) is False
        assert world.running.alerts.refused[-1][0] == "ring_member_not_active"
        assert world.ledger.alert_count(world.group_id) == 1

    def test_a_provider_without_consent_receives_nothing(self, world: World) -> None:
        w = ward(world)
        with (
            world.client.websocket_connect("/v1/alerts/ws") as doctor_ws,
            world.client.websocket_connect("/v1/alerts/ws") as stranger_ws,
        ):
            for ws, key in ((doctor_ws, w.doctor), (stranger_ws, w.stranger)):
                nonce = bytes.fromhex(ws.receive_json()["challenge"])
                signature = sign_action(key, "subscribe", nonce)
                ws.send_json({"v": 1, "address": key.address, "signature": signature})
                assert ws.receive_json()["subscribed"] == key.address
            alert = low_spo2(world, w)
            notice = doctor_ws.receive_json()
            assert notice["alert"]["alert_id"] == alert.alert_id.hex()
            assert notice["recipient"] == w.doctor.address
            assert notice["notified_at"] >= notice["received_at"] > 0
            state = world.running.alerts.escalator.state(alert.alert_id.hex())
            recipients = {d.recipient for d in state.deliveries}
            assert recipients == {w.patient.address, w.doctor.address}
            assert world.running.hub.pending(w.stranger.address) == 0
            stanzas = Alert.from_json(notice["alert"])
            assert w.stranger.public_key.address_bytes not in _recipients(stanzas)
        # A closed connection ends its subscription between alerts (no notice needed to notice).
        hub = world.running.hub
        wait_for(lambda: hub.subscribers(w.doctor.address) == 0 or None)
        assert hub.subscribers(w.stranger.address) == 0

    def test_ring_below_k_is_delivered_but_not_recorded(self, world: World) -> None:
        w = ward(world, others=RING_K - 1)  # a ring of RING_K members: one short of k + 1
        alert = low_spo2(world, w)
        world.running.alerts.drain()
        assert world.running.alerts.refused[-1] == ("ring_too_small", alert.alert_id.hex())
        assert world.ledger.alert_count(world.group_id) == 0
        state = world.running.alerts.escalator.state(alert.alert_id.hex())
        assert {d.recipient for d in state.deliveries} == {w.patient.address, w.doctor.address}

    def test_a_message_whose_ring_leaves_out_the_device_is_refused(self, world: World) -> None:
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

    def test_escalation_acknowledge_and_snooze_through_the_api(self, world: World) -> None:
        w = ward(world)
        second = world.provider()
        world.consent(w.patient, second, Vital.SPO2)
        alert_id = low_spo2(world, w).alert_id.hex()
        alerts = world.running.alerts
        tiers = lambda: [(d.recipient, d.tier) for d in alerts.escalator.state(alert_id).deliveries]  # noqa: E731
        assert set(tiers()) == {(w.patient.address, 0), (w.doctor.address, 0)}
        time.sleep(ACK_TIMEOUT_S + 0.1)  # past the acknowledgement timeout
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
        # snooze: the doctor snoozes SpO2 for this patient; the next episode skips the doctor.
        # SpO2 can raise HIGH (urgent low), so its snooze choices are HIGH's.
        choices = alerts.snooze_choices(w.patient.address, Vital.SPO2)
        assert choices == (300.0, 600.0, 900.0)
        fields = (w.patient.address, "spo2", repr(300.0))
        body = {"patient": w.patient.address, "vital": "spo2", "duration_s": 300.0}
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

    def test_a_reused_challenge_is_refused(self, world: World) -> None:
        w = ward(world)
        alert_id = low_spo2(world, w).alert_id.hex()
        nonce = bytes.fromhex(
            world.client.post(
                "/v1/alerts/challenges", json={"v": 1, "address": w.doctor.address}
            ).json()["nonce"]
        )
        body = {"v": 1, "by": w.doctor.address, "nonce": nonce.hex(),
                "signature": sign_action(w.doctor, "ack", nonce, alert_id)}  # fmt: skip
        path = f"/v1/alerts/{alert_id}/acknowledgements"
        assert world.client.post(path, json=body).status_code == 200
        r = world.client.post(path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "challenge_invalid")

    def test_a_silent_device_raises_a_stale_alarm_not_recorded_on_chain(self, world: World) -> None:
        w = ward(world, ring=False)
        alerts = world.running.alerts
        alerts.rules.set(w.patient.address, Vital.SPO2, stale_warning_s=0.3)
        w.device.send(w.device.prepare([(Vital.SPO2, 97.0)]))
        wait_for(lambda: w.stored)
        time.sleep(0.5)
        alerts.tick()
        stale = [a for a in alerts.raised if a.kind == "technical"]
        assert len(stale) == 1
        alerts.tick()  # once per silence and level
        assert len([a for a in alerts.raised if a.kind == "technical"]) == 1
        alerts.drain()
        assert world.ledger.alert_count(world.group_id) == 0
        verify_alert(stale[0], world.ledger)  # relay-signed by the master
        body = open_alert(stale[0], w.patient)
        assert (body["v"], body["condition"], body["level"], body["priority"]) == (
            2,
            "device_stale",
            "warning",
            "low",
        )
        assert body["device"] == w.device.address
        # the doctor, consented for SpO2 only, is on the patient's care team for it too
        assert open_alert(stale[0], w.doctor)["patient"] == w.patient.address

    def test_a_revoked_provider_is_left_out_of_the_next_alert(self, world: World) -> None:
        """The recipient cache, warmed on first contact, follows the chain's consent events."""
        w = ward(world, ring=False)
        first = low_spo2(world, w)
        assert w.doctor.public_key.address_bytes in _recipients(first)
        world.ledger.revoke(w.patient, w.doctor.address)
        w.device.send(w.device.prepare([(Vital.SPO2, 97.0)] * 3))  # back to normal
        world.running.alerts.refresh()  # the node does this on every tick
        second = low_spo2(world, w)
        assert _recipients(second) == [w.patient.public_key.address_bytes]
        with pytest.raises(DecryptionError):
            open_alert(second, w.doctor)
