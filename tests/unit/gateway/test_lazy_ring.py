"""Anonymity at a wearable's cost (issue 16, item 1): a device ring-signs only what an alert
can be raised from.

Before, a device with anonymity on ring-signed every message (about 37 times the cost of its
ECDSA signature with a ring of 9), and a device without a ring set (every CLI path) never
did.  Now a device learns its patient's bands from the gateway (``GET
/v1/sessions/{id}/bands``, the same policy the alarms use), proves a message only when a
reading is outside them, fetches a ring itself when it first needs one, and the gateway keeps
no proof on an in-band message (docs/spec/telemetry.md, "Who ring-signs").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import Harness, error_code, make_harness, next_id
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey, ring
from vitalchain.crypto.ring import RingProof
from vitalchain.device.client import BANDS_MAX_AGE_S, DeviceClient
from vitalchain.ledger import Ledger
from vitalchain.store import Message
from vitalchain.vitals import Vital, to_fixed
from vitalchain.wire.alert import alert_context
from vitalchain.wire.bands import Bands

IN_BAND, OUT_OF_BAND = 97.0, 85.0  # SpO2, against the adult default of 92-100 %


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def h(ledger: Ledger, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(ledger, tmp_path / "gw", next_id(), revocation_poll_s=0.05)


def spo2(device: DeviceClient, value: float) -> bytes:
    return device.prepare([(Vital.SPO2, value)])


def handed_on(h: Harness) -> list[Message]:
    """The stored messages as the ingest core hands them on (to the alarms: the ring proof
    is kept with a message in memory for them, never in the journal)."""
    seen: list[Message] = []
    h.gateway.ingest_core.on_stored(seen.append)
    return seen


def last_ring(seen: list[Message], count: int) -> RingProof | None:
    wait_for(lambda: len(seen) >= count, f"{count} stored messages")
    return seen[count - 1].ring


def bands_of(h: Harness, device: DeviceClient) -> dict[str, dict[str, float]]:
    r = h.client.get(f"/v1/sessions/{device.session_id.hex()}/bands")
    assert r.status_code == 200, r.text
    assert r.json()["v"] == 1
    return dict(r.json()["bands"])


def test_the_gateway_serves_the_patients_bands_and_the_device_learns_them(h: Harness) -> None:
    device = h.onboarded()
    bands = bands_of(h, device)
    assert set(bands) == {v.info.short for v in Vital}
    for vital in Vital:
        low, high = vital.info.normal
        assert bands[vital.info.short] == {"low": low, "high": high}
    assert device.bands is not None  # learned at onboarding
    low, high = Vital.SPO2.info.normal
    assert device.bands.fixed()[Vital.SPO2] == (to_fixed(low), to_fixed(high))


def test_an_in_band_message_has_no_proof_and_an_out_of_band_one_a_valid_proof(
    h: Harness,
) -> None:
    others = [h.onboarded() for _ in range(2)]
    device = h.onboarded(ring_others=2)
    seen = handed_on(h)
    calm = spo2(device, IN_BAND)
    assert calm[:4] == b"VCm\x01"  # one ECDSA signature, no ring
    device.send(calm)
    assert last_ring(seen, 1) is None
    low = spo2(device, OUT_OF_BAND)
    assert low[:4] == b"VCm\x02"  # the ring was fetched for it: no use_ring needed
    device.send(low)
    proof = last_ring(seen, 2)
    assert proof is not None
    members = set(proof.members)
    assert members == {device.key.public_key, *(o.key.public_key for o in others)}
    digest = hashlib.sha256(seen[1].payload).digest()
    ring.verify(digest, proof.members, proof.signature, alert_context(h.gateway.group_id, digest))
    # a blood pressure message with one half out of band is proved too
    assert device.prepare([(Vital.SYSTOLIC_BP, 185), (Vital.DIASTOLIC_BP, 80)])[:4] == b"VCm\x02"


def test_the_gateway_keeps_no_proof_on_an_in_band_message(h: Harness) -> None:
    """A device that proves too much (its bands unknown) costs itself time, not the store."""
    h.onboarded()
    device = h.onboarded(ring_others=1)
    seen = handed_on(h)
    device.bands = Bands.of({})  # knows no band: proves everything
    message = spo2(device, IN_BAND)
    assert message[:4] == b"VCm\x02"
    device.send(message)
    assert last_ring(seen, 1) is None
    device.send(spo2(device, OUT_OF_BAND))
    assert last_ring(seen, 2) is not None


def test_a_changed_band_is_learned_and_proved_by(h: Harness, ledger: Ledger) -> None:
    patient = PrivateKey.generate()
    ledger.fund(patient.address)
    h.onboarded()
    clock = Clock()
    device = h.onboarded(patient.address, ring_others=1, clock=clock)
    assert spo2(device, 93)[:4] == b"VCm\x01"
    ledger.set_threshold(patient, patient.address, int(Vital.SPO2), to_fixed(94), to_fixed(100))
    wait_for(lambda: bands_of(h, device)["spo2"]["low"] == 94, "the gateway to see the new band")
    assert spo2(device, 93)[:4] == b"VCm\x01"  # the device's bands are still the old ones
    clock.now += BANDS_MAX_AGE_S + 1  # or an acknowledgement says they changed
    assert spo2(device, 93)[:4] == b"VCm\x02"
    assert device.bands is not None
    assert device.bands.fixed()[Vital.SPO2] == (to_fixed(94), to_fixed(100))
    device.forget_bands()
    assert spo2(device, 95)[:4] == b"VCm\x01"


def test_the_gateway_asks_for_a_proof_when_a_band_changed(h: Harness, ledger: Ledger) -> None:
    """An out-of-band reading without a proof is acknowledged with ``prove``: the device
    learns its bands again at once, and proves the next one (not 300 s later)."""
    patient = PrivateKey.generate()
    ledger.fund(patient.address)
    h.onboarded()
    device = h.onboarded(patient.address, ring_others=1)
    calm = device.send(spo2(device, 93))
    assert "prove" not in calm
    ledger.set_threshold(patient, patient.address, int(Vital.SPO2), to_fixed(94), to_fixed(100))
    wait_for(lambda: bands_of(h, device)["spo2"]["low"] == 94, "the gateway to see it")
    stale = spo2(device, 93)
    assert stale[:4] == b"VCm\x01"  # judged by the old band: in it
    assert device.send(stale)["prove"] is True  # the gateway's band: out of it
    assert spo2(device, 93)[:4] == b"VCm\x02"  # learned again, proved
    proved = device.send(spo2(device, 93))
    assert "prove" not in proved


def test_without_a_ring_or_with_anonymity_off_messages_still_flow(h: Harness) -> None:
    alone = h.onboarded()  # the group's only device: no ring can be had
    message = spo2(alone, OUT_OF_BAND)
    assert message[:4] == b"VCm\x01"
    assert alone.send(message)["accepted"] == 1
    plain = h.onboarded(anonymity=False)
    assert spo2(plain, OUT_OF_BAND)[:4] == b"VCm\x01"
    assert plain.bands is None  # and it never asked


def test_the_bands_refusals(h: Harness) -> None:
    device = h.onboarded()
    unknown = h.client.get(f"/v1/sessions/{'00' * 16}/bands")
    assert (unknown.status_code, error_code(unknown)) == (401, "unknown_session")
    for bad in ("00" * 15, "zz" * 16, "00" * 17, device.session_id.hex().upper()):
        r = h.client.get(f"/v1/sessions/{bad}/bands")
        assert r.status_code == 422, bad
        assert "Traceback" not in r.text
    h.gateway.revoke(device.address)
    revoked = h.client.get(f"/v1/sessions/{device.session_id.hex()}/bands")
    assert error_code(revoked) == "device_revoked"
