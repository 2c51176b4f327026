"""The backend-neutral ledger suite, on the in-process EVM (eth-tester + py-evm) and on a real
anvil node over JSON-RPC: ``ledger`` and ``admin`` are parametrised over the chains."""

from __future__ import annotations

import pytest

from tests.support.ledger import GroupFixture, associate, fresh_id, funded, new_group, refused
from vitalchain.crypto import PrivateKey, keccak256
from vitalchain.ledger import (
    AlertError,
    AnchorError,
    ConsentError,
    ConsentStatus,
    Deployment,
    DeviceStatus,
    KeyDirectoryError,
    Ledger,
    LedgerError,
    TrustGroupsError,
    TxResult,
    eip712,
)
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.events import CONSENT_GRANTED, Event
from vitalchain.ledger.ledger import history_hash
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.vitals import Vital, scope_of


@pytest.fixture
def ledger(any_chain: tuple[Ledger, PrivateKey]) -> Ledger:
    return any_chain[0]


@pytest.fixture
def admin(any_chain: tuple[Ledger, PrivateKey]) -> PrivateKey:
    return any_chain[1]


class TestLedger:
    # -- trust groups -----------------------------------------------------------------------------

    def test_onboarding_end_to_end(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        group = ledger.group(g.gid)
        assert group is not None
        assert group.master == g.master.address
        assert group.master_public_key == g.master.public_key
        devices = [associate(ledger, g)[0] for _ in range(3)]
        assert ledger.devices_of(g.gid) == [d.address for d in devices]
        for d in devices:
            assert ledger.is_active_device(d.address)
            assert ledger.device_public_key(d.address) == d.public_key
            assert ledger.device(d.address).status is DeviceStatus.ACTIVE
        events = ledger.events.query("DeviceAssociated", groupId=g.gid)
        assert [e.args["device"] for e in events] == [d.address for d in devices]
        assert (
            ledger.events.query("GroupCreated", groupId=g.gid)[0].args["master"] == g.master.address
        )

    def test_digests_match_the_contract(self, ledger: Ledger) -> None:
        device = PrivateKey.generate().address
        tg = ledger._contracts["TrustGroups"]
        assert bytes(tg.functions.tokenDigest(5, 6, device).call()) == eip712.token_digest(
            ledger.domain, 5, 6, device
        )
        assert bytes(
            tg.functions.requestDigest(5, 6, device, keccak256(b"t")).call()
        ) == eip712.request_digest(ledger.domain, 5, 6, device, b"t")
        assert bytes(tg.functions.rotationDigest(5, device).call()) == eip712.rotation_digest(
            ledger.domain, 5, device
        )
        assert bytes(tg.functions.domainSeparator().call()) == ledger.domain.separator

    def test_duplicate_group_id(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        with refused(TrustGroupsError, "trust_groups.group_id_taken"):
            ledger.create_group(funded(ledger), g.gid, fresh_id())

    def test_group_id_zero(self, ledger: Ledger) -> None:
        with refused(TrustGroupsError, "trust_groups.invalid_group_id"):
            ledger.create_group(funded(ledger), 0, fresh_id())

    def test_duplicate_object_ids(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        group = ledger.group(g.gid)
        assert group is not None
        _, oid = associate(ledger, g)
        with refused(TrustGroupsError, "trust_groups.object_id_taken"):
            associate(ledger, g, oid=oid)  # device vs device
        with refused(TrustGroupsError, "trust_groups.object_id_taken"):
            associate(ledger, g, oid=group.master_object_id)  # device vs master
        with refused(TrustGroupsError, "trust_groups.object_id_taken"):
            ledger.create_group(funded(ledger), fresh_id(), oid)  # master vs device

    def test_duplicate_addresses(self, ledger: Ledger) -> None:
        g, h = new_group(ledger), new_group(ledger)
        device, _ = associate(ledger, g)
        with refused(TrustGroupsError, "trust_groups.address_taken"):
            associate(ledger, h, device=device)  # a device in two groups
        with refused(TrustGroupsError, "trust_groups.address_taken"):
            ledger.create_group(g.master, fresh_id(), fresh_id())  # a master twice
        ledger.fund(device.address)
        with refused(TrustGroupsError, "trust_groups.address_taken"):
            ledger.create_group(device, fresh_id(), fresh_id())  # a device becoming master

    def test_token_signed_by_someone_else(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        device, oid = PrivateKey.generate(), fresh_id()
        forged = ledger.issue_token(PrivateKey.generate(), g.gid, oid, device.address)
        request = ledger.sign_association(device, g.gid, oid, forged)
        with refused(TrustGroupsError, "trust_groups.invalid_token"):
            ledger.associate(g.master, g.gid, oid, device.public_key, forged, request)

    def test_token_for_another_group(self, ledger: Ledger) -> None:
        g, h = new_group(ledger), new_group(ledger)
        device, oid = PrivateKey.generate(), fresh_id()
        token = ledger.issue_token(g.master, g.gid, oid, device.address)  # valid for g
        request = ledger.sign_association(device, h.gid, oid, token)
        with refused(TrustGroupsError, "trust_groups.invalid_token"):
            ledger.associate(h.master, h.gid, oid, device.public_key, token, request)

    def test_token_for_another_device_or_object(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        device, oid = PrivateKey.generate(), fresh_id()
        token = ledger.issue_token(g.master, g.gid, oid, PrivateKey.generate().address)
        with refused(TrustGroupsError, "trust_groups.invalid_token"):
            ledger.associate(
                g.master,
                g.gid,
                oid,
                device.public_key,
                token,
                ledger.sign_association(device, g.gid, oid, token),
            )
        token = ledger.issue_token(g.master, g.gid, oid, device.address)
        with refused(TrustGroupsError, "trust_groups.invalid_token"):
            ledger.associate(
                g.master,
                g.gid,
                oid + 1,
                device.public_key,
                token,
                ledger.sign_association(device, g.gid, oid + 1, token),
            )

    def test_request_not_signed_by_the_device(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        device, oid = PrivateKey.generate(), fresh_id()
        token = ledger.issue_token(g.master, g.gid, oid, device.address)
        wrong = ledger.sign_association(PrivateKey.generate(), g.gid, oid, token)
        with refused(TrustGroupsError, "trust_groups.invalid_device_signature"):
            ledger.associate(g.master, g.gid, oid, device.public_key, token, wrong)

    def test_master_cannot_associate(self, ledger: Ledger) -> None:
        g, h = new_group(ledger), new_group(ledger)
        with refused(TrustGroupsError, "trust_groups.master_cannot_associate"):
            associate(ledger, h, device=g.master)

    def test_replayed_request(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        device, oid = PrivateKey.generate(), fresh_id()
        token = ledger.issue_token(g.master, g.gid, oid, device.address)
        request = ledger.sign_association(device, g.gid, oid, token)
        ledger.associate(g.master, g.gid, oid, device.public_key, token, request)
        with refused(TrustGroupsError, "trust_groups.request_already_used"):
            ledger.associate(g.master, g.gid, oid, device.public_key, token, request)

    def test_revoked_device(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        device, _ = associate(ledger, g)
        with refused(TrustGroupsError, "trust_groups.not_master"):
            ledger.revoke_device(funded(ledger), g.gid, device.address)
        ledger.revoke_device(g.master, g.gid, device.address)
        assert not ledger.is_active_device(device.address)
        assert ledger.device(device.address).status is DeviceStatus.REVOKED
        with refused(TrustGroupsError, "trust_groups.device_already_revoked"):
            ledger.revoke_device(g.master, g.gid, device.address)
        with refused(TrustGroupsError, "trust_groups.address_taken"):
            associate(ledger, g, device=device)  # a fresh token cannot bring it back
        assert ledger.events.query("DeviceRevoked", device=device.address)

    def test_revoking_a_device_of_another_group(self, ledger: Ledger) -> None:
        g, h = new_group(ledger), new_group(ledger)
        device, _ = associate(ledger, g)
        with refused(TrustGroupsError, "trust_groups.device_not_in_group"):
            ledger.revoke_device(h.master, h.gid, device.address)

    def test_master_rotation(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        new_master = funded(ledger)
        with refused(TrustGroupsError, "trust_groups.not_master"):
            ledger.rotate_master(new_master, g.gid, PrivateKey.generate())
        ledger.rotate_master(g.master, g.gid, new_master)
        group = ledger.group(g.gid)
        assert group is not None
        assert group.master == new_master.address
        with refused(TrustGroupsError, "trust_groups.invalid_token"):
            associate(ledger, g)  # tokens from the old key stop working
        associate(ledger, GroupFixture(g.gid, new_master))
        with refused(TrustGroupsError, "trust_groups.not_master"):
            ledger.revoke_device(g.master, g.gid, PrivateKey.generate().address)

    def test_rotation_needs_the_new_keys_signature_and_a_fresh_address(
        self, ledger: Ledger
    ) -> None:
        g, h = new_group(ledger), new_group(ledger)
        with refused(TrustGroupsError, "trust_groups.address_taken"):
            ledger.rotate_master(g.master, g.gid, h.master)
        newcomer = PrivateKey.generate()
        with refused(TrustGroupsError, "trust_groups.invalid_rotation_signature"):
            ledger._send(
                g.master,
                "TrustGroups",
                "rotateMaster",
                g.gid,
                newcomer.public_key.xy,
                PrivateKey.generate()
                .sign_digest(eip712.rotation_digest(ledger.domain, g.gid, newcomer.address))
                .to_rsv(),
            )

    def test_public_key_must_belong_to_the_caller(self, ledger: Ledger) -> None:
        with refused(TrustGroupsError, "trust_groups.public_key_mismatch"):
            ledger._send(
                funded(ledger),
                "TrustGroups",
                "createGroup",
                fresh_id(),
                fresh_id(),
                PrivateKey.generate().public_key.xy,
            )
        with refused(TrustGroupsError, "trust_groups.invalid_public_key_length"):
            ledger._send(
                funded(ledger), "TrustGroups", "createGroup", fresh_id(), fresh_id(), b"\x01" * 33
            )

    def test_unknown_group(self, ledger: Ledger) -> None:
        assert ledger.group(fresh_id()) is None
        g = GroupFixture(fresh_id(), funded(ledger))
        with refused(TrustGroupsError, "trust_groups.unknown_group"):
            associate(ledger, g)

    # -- key directory ----------------------------------------------------------------------------

    def test_key_directory(self, ledger: Ledger) -> None:
        person = funded(ledger)
        assert not ledger.has_key(person.address)
        with refused(KeyDirectoryError, "key_directory.no_key"):
            ledger.public_key_of(person.address)
        ledger.publish_key(person)
        assert ledger.public_key_of(person.address) == person.public_key
        with refused(KeyDirectoryError, "key_directory.already_published"):
            ledger.publish_key(person)
        with refused(KeyDirectoryError, "key_directory.public_key_mismatch"):
            ledger._send(
                funded(ledger), "KeyDirectory", "publishKey", PrivateKey.generate().public_key.xy
            )

    # -- consent ----------------------------------------------------------------------------------

    def _provider(self, ledger: Ledger, admin: PrivateKey) -> PrivateKey:
        provider = funded(ledger)
        ledger.register_provider(admin, provider.address)
        return provider

    def test_consent_grant_scope_expiry_revoke(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, doctor = funded(ledger), self._provider(ledger, admin)
        bp = scope_of(Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP)
        assert not ledger.has_access(patient.address, doctor.address, bp)
        ledger.grant(patient, doctor.address, bp, ledger.timestamp() + 3600)
        assert ledger.has_access(patient.address, doctor.address, bp)
        assert ledger.has_access(patient.address, doctor.address, Vital.SYSTOLIC_BP.bit)
        assert not ledger.has_access(
            patient.address, doctor.address, Vital.GLUCOSE.bit
        )  # out of scope
        assert ledger.consent_of(patient.address, doctor.address).status is ConsentStatus.GRANTED
        assert doctor.address in ledger.providers_of(patient.address)
        ledger.advance_time(3601)
        assert not ledger.has_access(patient.address, doctor.address, bp)  # expired
        ledger.grant(patient, doctor.address, bp, ledger.timestamp() + 3600)
        assert ledger.has_access(patient.address, doctor.address, bp)
        ledger.revoke(patient, doctor.address)
        assert not ledger.has_access(patient.address, doctor.address, bp)  # revoked
        assert ledger.consent_of(patient.address, doctor.address).status is ConsentStatus.REVOKED
        with refused(ConsentError, "consent_registry.not_granted"):
            ledger.revoke(patient, doctor.address)

    def test_consent_refusals(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, doctor = funded(ledger), self._provider(ledger, admin)
        stranger = funded(ledger)
        now = ledger.timestamp()
        with refused(ConsentError, "consent_registry.not_provider"):
            ledger.grant(patient, stranger.address, Vital.SPO2.bit, now + 100)
        with refused(ConsentError, "consent_registry.invalid_scope"):
            ledger.grant(patient, doctor.address, 0, now + 100)
        with refused(ConsentError, "consent_registry.expiry_not_in_future"):
            ledger.grant(patient, doctor.address, Vital.SPO2.bit, now - 1)
        with refused(ConsentError, "consent_registry.not_provider"):
            ledger.request_access(stranger, patient.address, Vital.SPO2.bit)

    def test_request_and_deny(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, doctor = funded(ledger), self._provider(ledger, admin)
        with refused(ConsentError, "consent_registry.no_pending_request"):
            ledger.deny(patient, doctor.address)
        ledger.request_access(doctor, patient.address, Vital.HEART_RATE.bit)
        assert ledger.consent_of(patient.address, doctor.address).status is ConsentStatus.REQUESTED
        ledger.deny(patient, doctor.address)
        assert ledger.consent_of(patient.address, doctor.address).status is ConsentStatus.DENIED
        assert not ledger.has_access(patient.address, doctor.address, Vital.HEART_RATE.bit)

    def test_only_the_admin_registers_providers(self, ledger: Ledger, admin: PrivateKey) -> None:
        stranger = funded(ledger)
        with pytest.raises(ConsentError) as err:
            ledger.register_provider(stranger, stranger.address)
        assert err.value.reason == "AccessControlUnauthorizedAccount"
        doctor = self._provider(ledger, admin)
        assert ledger.is_provider(doctor.address)
        with refused(ConsentError, "consent_registry.already_provider"):
            ledger.register_provider(admin, doctor.address)

    def test_break_glass(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, medic = funded(ledger), self._provider(ledger, admin)
        stranger = funded(ledger)
        with refused(ConsentError, "consent_registry.not_provider"):
            ledger.break_glass(stranger, patient.address, Vital.SPO2.bit, 1, b"unconscious in ER")
        with refused(ConsentError, "consent_registry.reason_required"):
            ledger.break_glass(medic, patient.address, Vital.SPO2.bit, 0, b"")
        assert not ledger.has_access(patient.address, medic.address, Vital.SPO2.bit)
        ledger.break_glass(medic, patient.address, Vital.SPO2.bit, 1, b"unconscious in ER")
        assert ledger.has_access(patient.address, medic.address, Vital.SPO2.bit)
        assert not ledger.has_access(patient.address, medic.address, Vital.GLUCOSE.bit)
        event = ledger.events.query("BreakGlassAccessed", patient=patient.address)[-1]
        assert event.args["reasonHash"] == keccak256(b"unconscious in ER")
        assert event.args["reasonCode"] == 1
        ledger.advance_time(5 * 3600)
        assert not ledger.has_access(patient.address, medic.address, Vital.SPO2.bit)

    def test_the_watcher_and_the_consent_view_follow_the_chain(
        self, ledger: Ledger, admin: PrivateKey
    ) -> None:
        """The event names match the contracts' events, and the one "who may read now" rule
        agrees with ``hasAccess``: a grant, an emergency access, a revocation."""
        patient, doctor, medic = funded(ledger), *(self._provider(ledger, admin) for _ in "ab")
        watcher = ChainWatcher(ledger.events)
        consent = ConsentView(ledger, watcher)
        watcher.poll()  # what the chain holds so far is not news for the subscriber below
        granted: list[Event] = []
        watcher.subscribe(CONSENT_GRANTED, granted.append)
        ledger.grant(patient, doctor.address, Vital.SPO2.bit, ledger.timestamp() + 3600)
        ledger.break_glass(medic, patient.address, Vital.SPO2.bit, 1, b"unconscious in ER")
        consent.refresh()
        assert [(e.args["patient"], e.args["provider"]) for e in granted] == [
            (patient.address, doctor.address)
        ]
        assert consent.readers(patient.address, Vital.SPO2.bit) == [doctor.address, medic.address]
        assert consent.readers(patient.address, Vital.GLUCOSE.bit) == []
        ledger.revoke(patient, doctor.address)
        assert doctor.address in consent.readers(patient.address, Vital.SPO2.bit)  # not polled
        consent.refresh()
        assert consent.readers(patient.address, Vital.SPO2.bit) == [medic.address]

    # -- anchors ----------------------------------------------------------------------------------

    def test_anchors_grow(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        assert ledger.latest_anchor(g.gid) is None
        r1, r2 = keccak256(b"root-1"), keccak256(b"root-2")
        ledger.anchor(g.master, g.gid, r1, 3, 0)
        ledger.anchor(g.master, g.gid, r2, 10, 3)
        latest = ledger.latest_anchor(g.gid)
        assert latest is not None
        assert (latest.root, latest.tree_size, latest.anchor_count) == (r2, 10, 2)
        assert ledger.root_at(g.gid, 3) == r1
        assert ledger.root_at(g.gid, 4) is None
        assert ledger.anchor_history(g.gid) == history_hash(ledger.anchors(g.gid))
        assert ledger.anchor_history(g.gid) == keccak256(
            keccak256(bytes(32) + r1 + (3).to_bytes(8, "big")) + r2 + (10).to_bytes(8, "big")
        )
        assert [(a.root, a.tree_size) for a in ledger.anchors(g.gid)] == [(r1, 3), (r2, 10)]

    def test_anchor_refusals(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        ledger.anchor(g.master, g.gid, keccak256(b"a"), 5, 0)
        with refused(AnchorError, "anchor_log.size_not_growing"):
            ledger.anchor(g.master, g.gid, keccak256(b"b"), 4, 5)  # shrinking
        with refused(AnchorError, "anchor_log.size_not_growing"):
            ledger.anchor(g.master, g.gid, keccak256(b"b"), 5, 5)  # same size
        with refused(AnchorError, "anchor_log.invalid_range"):
            ledger.anchor(g.master, g.gid, keccak256(b"b"), 8, 6)  # skips block 5
        with refused(AnchorError, "anchor_log.not_master"):
            ledger.anchor(funded(ledger), g.gid, keccak256(b"b"), 8, 5)
        with refused(AnchorError, "anchor_log.zero_root"):
            ledger.anchor(g.master, g.gid, bytes(32), 8, 5)

    def test_anchor_gas_does_not_depend_on_blocks_covered(self, ledger: Ledger) -> None:
        """Execution gas is flat; only calldata differs (EIP-2028: 16 gas per non-zero byte)."""
        g = new_group(ledger)
        ledger.anchor(g.master, g.gid, keccak256(b"first"), 1, 0)

        def execution_gas(result: TxResult) -> int:
            data = bytes(ledger.w3.eth.get_transaction(result.tx_hash)["input"])
            intrinsic = 21_000 + sum(16 if b else 4 for b in data)
            return result.gas_used - intrinsic

        small = ledger.anchor(g.master, g.gid, keccak256(b"small"), 2, 1)
        large = ledger.anchor(g.master, g.gid, keccak256(b"large"), 100_002, 2)
        assert execution_gas(small) == execution_gas(large)
        assert abs(small.gas_used - large.gas_used) <= 12 * 8  # a few more non-zero bytes at most
        assert max(small.gas_used, large.gas_used) <= 50_000  # <= 5 gas a reading at 10k

    # -- alert policy and log ---------------------------------------------------------------------

    def test_thresholds_and_evaluate(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, doctor, stranger = funded(ledger), self._provider(ledger, admin), funded(ledger)
        with refused(AlertError, "alert_registry.no_policy"):
            ledger.evaluate(patient.address, Vital.SYSTOLIC_BP, 12000)
        ledger.set_threshold(patient, patient.address, Vital.SYSTOLIC_BP, 9000, 14000)
        assert ledger.threshold_of(patient.address, Vital.SYSTOLIC_BP) == (9000, 14000)
        assert [
            ledger.evaluate(patient.address, Vital.SYSTOLIC_BP, v)
            for v in (8999, 9000, 14000, 14001)
        ] == [
            -1,
            0,
            0,
            1,
        ]
        with refused(AlertError, "alert_registry.not_authorized"):
            ledger.set_threshold(stranger, patient.address, Vital.SYSTOLIC_BP, 1, 2)
        with refused(AlertError, "alert_registry.not_authorized"):
            ledger.set_threshold(doctor, patient.address, Vital.SYSTOLIC_BP, 1, 2)  # no consent yet
        ledger.grant(patient, doctor.address, Vital.SYSTOLIC_BP.bit, ledger.timestamp() + 3600)
        ledger.set_threshold(doctor, patient.address, Vital.SYSTOLIC_BP, 9500, 13500)
        assert ledger.threshold_of(patient.address, Vital.SYSTOLIC_BP) == (9500, 13500)
        with refused(AlertError, "alert_registry.not_authorized"):
            ledger.set_threshold(
                doctor, patient.address, Vital.GLUCOSE, 7000, 18000
            )  # outside scope
        with refused(AlertError, "alert_registry.invalid_range"):
            ledger.set_threshold(patient, patient.address, Vital.SYSTOLIC_BP, 100, 100)
        with refused(AlertError, "alert_registry.invalid_vital"):
            ledger.set_threshold(patient, patient.address, 9, 1, 2)

    def test_alert_log(self, ledger: Ledger) -> None:
        g = new_group(ledger)
        image = b"\x02" + keccak256(b"key image")
        assert not ledger.key_image_used(image)
        ledger.record_alert(g.master, g.gid, image, keccak256(b"ciphertext"), keccak256(b"locator"))
        assert ledger.key_image_used(image)
        assert ledger.alert_count(g.gid) == 1
        with refused(AlertError, "alert_registry.key_image_used"):
            ledger.record_alert(g.master, g.gid, image, keccak256(b"other"), keccak256(b"other"))
        with refused(AlertError, "alert_registry.not_master"):
            ledger.record_alert(
                funded(ledger), g.gid, b"\x03" + keccak256(b"x"), keccak256(b"c"), keccak256(b"l")
            )
        with refused(AlertError, "alert_registry.invalid_key_image"):
            ledger.record_alert(g.master, g.gid, b"\x02" * 32, keccak256(b"c"), keccak256(b"l"))
        event = ledger.events.query("AlertRecorded", groupId=g.gid)[0]
        assert event.args["keyImageHash"] == keccak256(image)

    # -- plumbing ---------------------------------------------------------------------------------

    def test_unfunded_sender_gets_a_clear_error(self, ledger: Ledger) -> None:
        if ledger.backend.funder is None:
            pytest.skip("free-gas network")  # never the case for embedded or anvil
        with pytest.raises(LedgerError) as err:
            ledger.create_group(PrivateKey.generate(), fresh_id(), fresh_id())
        assert err.value.code == "insufficient_funds"

    def test_deployment_roundtrip_and_second_client(self, ledger: Ledger) -> None:
        again = Deployment.from_json(ledger.deployment.to_json())
        assert again == ledger.deployment
        twin = Ledger(ledger.backend, again)
        g = new_group(ledger)
        group = twin.group(g.gid)
        assert group is not None
        assert group.master == g.master.address
        with pytest.raises(LedgerError) as err:
            Ledger(ledger.backend, Deployment(again.chain_id + 1, again.addresses, again.block))
        assert err.value.code == "wrong_chain"
        with pytest.raises(LedgerError) as err:
            Deployment.from_json('{"chain_id": 1, "addresses": {}, "block": 0}')
        assert err.value.code == "bad_deployment"
