"""The backend-neutral access suite (consent-gated fetch, FHIR, break-glass), on the embedded EVM
and on anvil: the ``world`` fixture is parametrised over the chains."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.access import _reading, raw_access, sealed_patient
from tests.support.node import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import share_block
from vitalchain.crypto.keys import keccak256
from vitalchain.fhir import bundle_from_messages
from vitalchain.ledger import Ledger
from vitalchain.sdk.provider import AccessError
from vitalchain.sdk.verify import Outcome, verify_patient
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.store import Message
from vitalchain.vitals import Vital


@pytest.fixture
def world(any_chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from make_world(any_chain, tmp_path / "node")


class TestAccess:
    def test_consented_provider_fetches_decrypts_and_exports_fhir(self, world: World) -> None:
        patient, numbers = sealed_patient(world, Vital.SPO2, Vital.HEART_RATE)
        doctor = world.provider()
        world.consent(patient, doctor, Vital.SPO2, Vital.HEART_RATE)
        # blocks sealed before the grant carry no stanza for this provider: the patient adds one
        store = world.running.gateway.store
        for block in store.blocks(world.group_id, patient.address):
            ring = store.stanzas(world.group_id, block.leaf_index)
            entry = share_block(block, ring, patient, doctor.public_key, block.vitals)
            store.add_stanza(world.group_id, block.leaf_index, entry)
        fetched = world.reader(doctor).fetch(world.group_id, patient.address)
        assert [f.block.number for f in fetched] == numbers
        entries = [e for f in fetched for e in f.open(doctor)]
        readings = [r for e in entries for r in json.loads(e.payload)["readings"]]
        assert len(readings) == 8
        messages = [
            Message(b"", e.device, world.group_id, patient.address, 0, e.payload, e.signature,
                    tuple(_reading(r) for r in json.loads(e.payload)["readings"]))
            for e in entries
        ]  # fmt: skip
        bundle = bundle_from_messages(messages)
        assert bundle["resourceType"] == "Bundle"
        assert len(bundle["entry"]) == 8
        codes = {c["code"] for e in bundle["entry"] for c in e["resource"]["code"]["coding"]}
        assert {"59408-5", "8867-4"} <= codes

    def test_spo2_only_consent_gives_spo2_readings_and_no_bp_bytes(self, world: World) -> None:
        """Issue 14 item 3: a block holds one section per vital class, each under its own key;
        a provider consented to SpO2 gets exactly the SpO2 readings, not a byte of the
        blood pressure section, and verify still proves every block complete and anchored."""
        patient = world.patient()
        device = world.device(patient)
        nurse = world.provider()
        world.consent(patient, nurse, Vital.SPO2)
        readings = [(Vital.SYSTOLIC_BP, 121.0), (Vital.DIASTOLIC_BP, 79.0), (Vital.SPO2, 97.0),
                    (Vital.HEART_RATE, 72.0)]  # fmt: skip
        messages = device.prepare_by_class(readings)
        assert len(messages) == 3  # BP's halves together; SpO2 and heart rate alone
        for message in messages:
            device.send(message)
        assert world.running.sealer.seal(patient.address) is not None
        world.running.sealer.anchor()
        store = world.running.gateway.store
        (full,) = store.blocks(world.group_id, patient.address)
        assert sorted(s.scope for s in full.sections) == sorted(
            [Vital.SYSTOLIC_BP.bit | Vital.DIASTOLIC_BP.bit, Vital.SPO2.bit, Vital.HEART_RATE.bit]
        )
        bp = next(s for s in full.sections if s.scope & Vital.SYSTOLIC_BP.bit)
        assert bp.payload is not None

        raw = raw_access(world, nurse, patient.address)
        assert raw.status_code == 200
        assert bp.payload.hex() not in raw.text  # no BP ciphertext leaves the store
        reader = world.reader(nurse)
        (fetched,) = reader.fetch(world.group_id, patient.address)
        assert [s.scope for s in fetched.block.sections if s.payload is not None] == [
            Vital.SPO2.bit
        ]
        assert fetched.block.hash == full.hash  # withheld sections keep the block's proofs
        got = fetched.readings(nurse)
        assert [(r.vital, r.value) for _, r in got] == [(Vital.SPO2, 97.0)]

        report = verify_patient(
            reader.source, world.ledger, world.group_id, patient.address, reader=nurse,
            opened=reader.opened,
        )  # fmt: skip
        assert report.ok, report.failures
        names = {(c.name, c.outcome) for c in report.checks}
        assert ("inclusion", Outcome.OK) in names
        assert ("payload", Outcome.OK) in names
        # The patient, owner of the data, still gets every section.
        (own,) = world.reader(patient).fetch(world.group_id, patient.address)
        assert len(own.readings(patient)) == 4

    def test_a_store_that_withholds_a_consented_section_fails_verify(self, world: World) -> None:
        patient = world.patient()
        device = world.device(patient)
        nurse = world.provider()
        world.consent(patient, nurse, Vital.SPO2, Vital.HEART_RATE)
        for message in device.prepare_by_class([(Vital.SPO2, 97.0), (Vital.HEART_RATE, 72.0)]):
            device.send(message)
        assert world.running.sealer.seal(patient.address) is not None
        reader = world.reader(nurse)
        (fetched,) = reader.fetch(world.group_id, patient.address)
        assert len(fetched.readings(nurse)) == 2
        # A store that drops one section the nurse holds a key for: verify names it.
        cut = fetched.block.redacted([0])
        ring = reader.source.stanzas(world.group_id, cut.leaf_index)
        reader.source.remember(world.group_id, cut.leaf_index, cut, cut.encode(), ring[0])
        report = verify_patient(
            reader.source, world.ledger, world.group_id, patient.address, reader=nurse
        )
        (failure,) = report.failures
        assert failure.name == "payload"
        assert "withheld" in failure.detail

    def test_refusals_release_nothing(self, world: World) -> None:
        patient, _ = sealed_patient(world, Vital.SPO2)
        consented, stranger, narrow, lapsed = (world.provider() for _ in range(4))
        world.consent(patient, consented, Vital.SPO2)
        world.consent(patient, narrow, Vital.GLUCOSE)
        world.consent(patient, lapsed, Vital.SPO2, hours=1)
        world.ledger.advance_time(2 * 3600)  # lapsed's consent expires; the others last 24 h
        used = bytes.fromhex(
            world.client.post(
                "/v1/store/challenges", json={"v": 1, "provider": consented.address}
            ).json()["nonce"]
        )
        assert raw_access(world, consented, patient.address, nonce=used).status_code == 200
        cases = [
            ("forged challenge", raw_access(world, consented, patient.address, signer=stranger), 401, "invalid_signature"),
            ("replayed challenge", raw_access(world, consented, patient.address, nonce=used), 401, "challenge_invalid"),
            ("made-up nonce", raw_access(world, consented, patient.address, nonce=b"\x01" * 32), 401, "challenge_invalid"),
            ("someone else's nonce", raw_access(world, stranger, patient.address, nonce=bytes.fromhex(
                world.client.post("/v1/store/challenges", json={"v": 1, "provider": consented.address}).json()["nonce"]
            )), 401, "challenge_invalid"),
            ("provider without consent", raw_access(world, stranger, patient.address), 403, "no_consent"),
            ("expired consent", raw_access(world, lapsed, patient.address), 403, "consent_expired"),
            ("out-of-scope vital", raw_access(world, narrow, patient.address), 403, "out_of_scope"),
            ("unknown block", raw_access(world, consented, patient.address, number=99), 404, "unknown_block"),
            ("unknown patient", raw_access(world, consented, PrivateKey.generate().address), 404, "unknown_block"),
        ]  # fmt: skip
        for desc, response, status, code in cases:
            body = response.json()
            assert (response.status_code, body["error"]["code"]) == (status, code), desc
            assert "blocks" not in body, desc

    def test_revoked_provider_is_refused_from_the_next_request(self, world: World) -> None:
        patient, _ = sealed_patient(world, Vital.SPO2)
        doctor = world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        assert world.reader(doctor).fetch(world.group_id, patient.address)
        world.ledger.revoke(patient, doctor.address)
        with pytest.raises(AccessError) as err:
            world.reader(doctor).fetch(world.group_id, patient.address)
        assert err.value.code == "no_consent"

    def test_break_glass_is_on_chain_with_its_reason_before_anything_is_released(
        self, world: World
    ) -> None:
        patient, _ = sealed_patient(world, Vital.SPO2)
        medic = world.provider()
        with pytest.raises(AccessError):
            world.reader(medic).fetch(world.group_id, patient.address)
        reason = b"unresponsive patient brought to ER, no consent possible"
        fetched = world.reader(medic).fetch(
            world.group_id, patient.address, break_glass=(world.ledger, Vital.SPO2.bit, 1, reason)
        )
        assert fetched
        (record,) = world.ledger.events.query(
            "BreakGlassAccessed", patient=patient.address, provider=medic.address
        )
        assert record.args["reasonHash"] == keccak256(reason)
        assert record.block_number <= world.ledger.block_number()
        assert fetched[0].stanza is None  # sealed before the emergency: ciphertext only, no key

    def test_malformed_access_requests_are_422(self, world: World) -> None:
        for body in (
            {"v": 1},
            {"v": 1, "provider": "nope"},
            {"v": 2, "provider": "0x" + "11" * 20},
        ):
            r = world.client.post("/v1/store/challenges", json=body)
            assert r.status_code == 422
            assert r.json()["error"]["code"] == "invalid_request"
        r = world.client.post("/v1/store/access", json={"v": 1})
        assert r.json()["error"]["code"] == "invalid_request"

    def test_proofs_are_public_and_refuse_unknown_positions(self, world: World) -> None:
        r = world.client.get(
            f"/v1/store/groups/{world.group_id}/proofs/inclusion?leaf_index=5&tree_size=6"
        )
        assert (r.status_code, r.json()["error"]["code"]) == (404, "unknown_block")
        r = world.client.get(
            f"/v1/store/groups/{world.group_id}/proofs/consistency?size1=3&size2=1"
        )
        assert r.status_code == 404

    def test_abnormal_reading_is_sealed_at_once(
        self, any_chain: tuple[Ledger, PrivateKey], tmp_path: Path
    ) -> None:
        """With sealing in the background and large limits, a low SpO2 still reaches a block now."""
        ledger, admin = any_chain
        for world in make_world((ledger, admin), tmp_path / "bg", SealingPolicy(max_readings=10_000, max_age_s=3600),
                                background=True):  # fmt: skip
            patient = world.patient()
            device = world.device(patient)
            device.send(device.prepare([(Vital.SPO2, 97)]))
            time.sleep(1.5)
            assert (
                world.running.gateway.store.blocks(world.group_id, patient.address) == []
            )  # normal: waits
            device.send(device.prepare([(Vital.SPO2, 84)]))  # below the default 92 %
            deadline = time.time() + 10
            while time.time() < deadline and not world.running.gateway.store.blocks(
                world.group_id, patient.address
            ):
                time.sleep(0.1)
            (block,) = world.running.gateway.store.blocks(world.group_id, patient.address)
            assert block.readings == 2

    def test_patients_fetch_their_own_blocks_without_a_consent_record(self, world: World) -> None:
        patient, numbers = sealed_patient(world, Vital.SPO2)
        fetched = world.reader(patient).fetch(world.group_id, patient.address)
        assert [f.block.number for f in fetched] == numbers
        assert fetched[0].open(patient)
        other = world.patient()
        with pytest.raises(AccessError) as err:  # but not someone else's
            world.reader(other).fetch(world.group_id, patient.address)
        assert err.value.code == "no_consent"
