// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TrustGroups} from "../src/TrustGroups.sol";
import {ITrustGroups} from "../src/interfaces/ITrustGroups.sol";
import {TrustGroupsFixture} from "./utils/Fixtures.sol";

contract TrustGroupsTest is TrustGroupsFixture {
    event GroupCreated(uint64 indexed groupId, address indexed master, uint64 masterObjectId, bytes masterPublicKey);
    event DeviceAssociated(uint64 indexed groupId, address indexed device, uint64 objectId);
    event DeviceRevoked(uint64 indexed groupId, address indexed device);
    event MasterRotated(uint64 indexed groupId, address indexed oldMaster, address indexed newMaster);

    function setUp() public {
        setUpGroups();
        createGroupAs(MASTER_KEY, GID, MASTER_OID);
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Calls associate expecting `err`; every argument is computed before the expectation.
    function expectAssociateRevert(
        bytes memory err,
        uint64 groupId,
        uint64 objectId,
        bytes memory key,
        bytes memory tok,
        bytes memory req
    ) internal {
        vm.expectRevert(err);
        vm.prank(stranger);
        groups.associate(groupId, objectId, key, tok, req);
    }

    function associateRevert(bytes memory err, uint256 masterKey, uint64 groupId, uint64 objectId, uint256 deviceKey)
        internal
    {
        bytes memory tok = token(masterKey, groupId, objectId, vm.addr(deviceKey));
        bytes memory req = request(deviceKey, groupId, objectId, tok);
        expectAssociateRevert(err, groupId, objectId, publicKey(deviceKey), tok, req);
    }

    function rotationSignature(uint256 newKey, uint64 groupId) internal view returns (bytes memory) {
        return signDigest(newKey, groups.rotationDigest(groupId, vm.addr(newKey)));
    }

    // ------------------------------------------------------------------ createGroup

    function test_CreateGroup_StoresGroupAndEmits() public {
        bytes memory key = publicKey(OTHER_MASTER_KEY);
        vm.expectEmit(true, true, true, true, address(groups));
        emit GroupCreated(OTHER_GID, otherMaster, OTHER_MASTER_OID, key);
        vm.prank(otherMaster);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, key);

        (address m, uint64 moid, uint32 count, bytes memory mkey) = groups.groupOf(OTHER_GID);
        vm.assertEq(m, otherMaster, "master");
        vm.assertEq(uint256(moid), OTHER_MASTER_OID, "master oid");
        vm.assertEq(uint256(count), 0, "device count");
        vm.assertEq(mkey, key, "master key");
        vm.assertEq(groups.masterOf(OTHER_GID), otherMaster, "masterOf");
        vm.assertTrue(groups.objectIdTaken(OTHER_MASTER_OID), "master oid taken");
        vm.assertFalse(groups.isActiveDevice(otherMaster), "a master is not a device");
    }

    function test_GroupOf_UnknownGroupIsEmpty() public view {
        (address m, uint64 moid, uint32 count, bytes memory mkey) = groups.groupOf(99);
        vm.assertEq(m, address(0), "master");
        vm.assertEq(uint256(moid), 0, "oid");
        vm.assertEq(uint256(count), 0, "count");
        vm.assertEq(mkey.length, 0, "key");
        vm.assertEq(groups.masterOf(99), address(0), "masterOf");
    }

    function test_RevertWhen_CreateGroup_GroupIdZero() public {
        bytes memory key = publicKey(OTHER_MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidGroupId.selector));
        vm.prank(otherMaster);
        groups.createGroup(0, OTHER_MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_DuplicateGroupId() public {
        bytes memory key = publicKey(OTHER_MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__GroupIdTaken.selector, GID));
        vm.prank(otherMaster);
        groups.createGroup(GID, OTHER_MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_MasterOidUsedByMaster() public {
        bytes memory key = publicKey(OTHER_MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__ObjectIdTaken.selector, MASTER_OID));
        vm.prank(otherMaster);
        groups.createGroup(OTHER_GID, MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_MasterOidUsedByDevice() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        bytes memory key = publicKey(OTHER_MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__ObjectIdTaken.selector, OID));
        vm.prank(otherMaster);
        groups.createGroup(OTHER_GID, OID, key);
    }

    function test_RevertWhen_CreateGroup_CallerAlreadyMaster() public {
        bytes memory key = publicKey(MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, master));
        vm.prank(master);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_CallerIsDevice() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        bytes memory key = publicKey(DEVICE_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device));
        vm.prank(device);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_KeyNotCallers() public {
        bytes memory key = publicKey(STRANGER_KEY);
        vm.expectRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__PublicKeyMismatch.selector, otherMaster, stranger)
        );
        vm.prank(otherMaster);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, key);
    }

    function test_RevertWhen_CreateGroup_KeyWrongLength() public {
        bytes memory key = abi.encodePacked(bytes1(0x04), publicKey(OTHER_MASTER_KEY));
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidPublicKeyLength.selector, 65));
        vm.prank(otherMaster);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, key);
    }

    // ------------------------------------------------------------------ associate

    function test_Associate_StoresDeviceAndEmits() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        bytes memory key = publicKey(DEVICE_KEY);
        vm.expectEmit(true, true, true, true, address(groups));
        emit DeviceAssociated(GID, device, OID);
        vm.prank(stranger); // anyone may relay
        groups.associate(GID, OID, key, tok, req);

        (uint64 gid, uint64 oid, ITrustGroups.DeviceStatus status) = groups.deviceOf(device);
        vm.assertEq(uint256(gid), GID, "group");
        vm.assertEq(uint256(oid), OID, "oid");
        vm.assertEq(uint256(status), uint256(ITrustGroups.DeviceStatus.Active), "status");
        vm.assertTrue(groups.isActiveDevice(device), "active");
        vm.assertTrue(groups.objectIdTaken(OID), "oid taken");
        vm.assertEq(groups.devicePublicKey(device), compressedKey(DEVICE_KEY), "compressed key");
        (,, uint32 count,) = groups.groupOf(GID);
        vm.assertEq(uint256(count), 1, "count");
        address[] memory list = groups.devicesOf(GID, 0, 10);
        vm.assertEq(list.length, 1, "list length");
        vm.assertEq(list[0], device, "list[0]");
    }

    function test_Associate_KeepsBothKeyParities() public {
        // 0xD1 and 0xD2 are chosen in the fixture; make sure both parities round-trip whatever they are.
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        associateWith(MASTER_KEY, GID, OID2, DEVICE2_KEY);
        for (uint64 k = 3; k < 12; ++k) {
            associateWith(MASTER_KEY, GID, OID2 + k, 0xD0 + k);
        }
        for (uint64 k = 3; k < 12; ++k) {
            vm.assertEq(groups.devicePublicKey(vm.addr(0xD0 + k)), compressedKey(0xD0 + k), "key round-trip");
        }
        vm.assertEq(groups.devicePublicKey(device2), compressedKey(DEVICE2_KEY), "device2 key");
    }

    function test_DeviceOf_NeverAssociatedIsNone() public view {
        (uint64 gid, uint64 oid, ITrustGroups.DeviceStatus status) = groups.deviceOf(stranger);
        vm.assertEq(uint256(gid) + uint256(oid) + uint256(status), 0, "empty");
        (gid, oid, status) = groups.deviceOf(master);
        vm.assertEq(uint256(gid) + uint256(oid) + uint256(status), 0, "masters are not devices");
    }

    function test_RevertWhen_DevicePublicKey_Unknown() public {
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__UnknownDevice.selector, stranger));
        groups.devicePublicKey(stranger);
    }

    function test_RevertWhen_Associate_UnknownGroup() public {
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__UnknownGroup.selector, OTHER_GID),
            MASTER_KEY,
            OTHER_GID,
            OID,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_TokenSignedBySomeoneElse() public {
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            STRANGER_KEY,
            GID,
            OID,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_TokenSignedByAnotherGroupsMaster() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            OTHER_MASTER_KEY,
            GID,
            OID,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_TokenForAnotherGroup() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        // A genuine token of group GID, presented to group OTHER_GID.
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, OTHER_GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, OTHER_GID, OID, device),
            OTHER_GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_TokenForAnotherObjectId() public {
        bytes memory tok = token(MASTER_KEY, GID, OID2, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_TokenForAnotherDevice() public {
        // The token names device2; device presents it with its own key.
        bytes memory tok = token(MASTER_KEY, GID, OID, device2);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_TokenMalformed() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory shortTok = new bytes(64);
        for (uint256 i = 0; i < 64; ++i) {
            shortTok[i] = tok[i];
        }
        bytes memory req = request(DEVICE_KEY, GID, OID, shortTok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            shortTok,
            req
        );
    }

    function test_RevertWhen_Associate_TokenHighS() public {
        // The malleable twin (r, n - s, v ^ 1) of a valid token is refused: one encoding per token.
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(MASTER_KEY, groups.tokenDigest(GID, OID, device));
        bytes memory twin = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        bytes memory req = request(DEVICE_KEY, GID, OID, twin);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            twin,
            req
        );
    }

    function test_RevertWhen_Associate_RequestNotSignedByDevice() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(STRANGER_KEY, GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidDeviceSignature.selector, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_RequestBindsAnotherToken() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory otherTok = token(MASTER_KEY, GID, OID2, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, otherTok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidDeviceSignature.selector, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_KeyWrongLength() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidPublicKeyLength.selector, 33),
            GID,
            OID,
            compressedKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_ReplayedRequest() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        bytes memory key = publicKey(DEVICE_KEY);
        groups.associate(GID, OID, key, tok, req);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__RequestAlreadyUsed.selector, GID, OID, device),
            GID,
            OID,
            key,
            tok,
            req
        );
    }

    function test_RevertWhen_Associate_ReplayedRequestAfterRevocation() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        bytes memory key = publicKey(DEVICE_KEY);
        groups.associate(GID, OID, key, tok, req);
        vm.prank(master);
        groups.revokeDevice(GID, device);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__RequestAlreadyUsed.selector, GID, OID, device),
            GID,
            OID,
            key,
            tok,
            req
        );
        vm.assertFalse(groups.isActiveDevice(device), "still revoked");
    }

    function test_RevertWhen_Associate_OidTakenByDevice() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__ObjectIdTaken.selector, OID),
            MASTER_KEY,
            GID,
            OID,
            DEVICE2_KEY
        );
    }

    function test_RevertWhen_Associate_OidTakenByDeviceOfAnotherGroup() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateWith(OTHER_MASTER_KEY, OTHER_GID, OID, DEVICE_KEY);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__ObjectIdTaken.selector, OID),
            MASTER_KEY,
            GID,
            OID,
            DEVICE2_KEY
        );
    }

    function test_RevertWhen_Associate_OidTakenByMaster() public {
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__ObjectIdTaken.selector, MASTER_OID),
            MASTER_KEY,
            GID,
            MASTER_OID,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_AddressTakenSameGroup() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device),
            MASTER_KEY,
            GID,
            OID2,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_AddressTakenOtherGroup() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device),
            OTHER_MASTER_KEY,
            OTHER_GID,
            OID2,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_RevokedDeviceComesBack() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.prank(master);
        groups.revokeDevice(GID, device);
        // Same group, fresh object ID: the tombstone holds.
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device),
            MASTER_KEY,
            GID,
            OID2,
            DEVICE_KEY
        );
        // Another group: still refused.
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device),
            OTHER_MASTER_KEY,
            OTHER_GID,
            OID2,
            DEVICE_KEY
        );
    }

    function test_RevertWhen_Associate_MasterAsDeviceOfOwnGroup() public {
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__MasterCannotAssociate.selector, master),
            MASTER_KEY,
            GID,
            OID,
            MASTER_KEY
        );
    }

    function test_RevertWhen_Associate_MasterAsDeviceOfAnotherGroup() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__MasterCannotAssociate.selector, otherMaster),
            MASTER_KEY,
            GID,
            OID,
            OTHER_MASTER_KEY
        );
    }

    function test_RevertWhen_Associate_FormerMasterAsDevice() public {
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, GID);
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__MasterCannotAssociate.selector, master),
            NEW_MASTER_KEY,
            GID,
            OID,
            MASTER_KEY
        );
    }

    // ------------------------------------------------------------------ revokeDevice

    function test_RevokeDevice_MarksRevokedAndEmits() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.expectEmit(true, true, true, true, address(groups));
        emit DeviceRevoked(GID, device);
        vm.prank(master);
        groups.revokeDevice(GID, device);

        vm.assertFalse(groups.isActiveDevice(device), "inactive");
        (uint64 gid, uint64 oid, ITrustGroups.DeviceStatus status) = groups.deviceOf(device);
        vm.assertEq(uint256(gid), GID, "group kept");
        vm.assertEq(uint256(oid), OID, "oid kept");
        vm.assertEq(uint256(status), uint256(ITrustGroups.DeviceStatus.Revoked), "revoked");
        vm.assertTrue(groups.objectIdTaken(OID), "oid stays taken");
        vm.assertEq(groups.devicePublicKey(device), compressedKey(DEVICE_KEY), "key kept for old rings");
        vm.assertEq(groups.devicesOf(GID, 0, 10).length, 1, "stays listed");
    }

    function test_RevertWhen_RevokeDevice_Twice() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.prank(master);
        groups.revokeDevice(GID, device);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__DeviceAlreadyRevoked.selector, device));
        vm.prank(master);
        groups.revokeDevice(GID, device);
    }

    function test_RevertWhen_RevokeDevice_NotMaster() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__NotMaster.selector, GID, device));
        vm.prank(device);
        groups.revokeDevice(GID, device);
    }

    function test_RevertWhen_RevokeDevice_OtherGroupsMaster() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__NotMaster.selector, GID, otherMaster));
        vm.prank(otherMaster);
        groups.revokeDevice(GID, device);
        // ...and through its own group, the device is not its to revoke.
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__DeviceNotInGroup.selector, OTHER_GID, device));
        vm.prank(otherMaster);
        groups.revokeDevice(OTHER_GID, device);
    }

    function test_RevertWhen_RevokeDevice_NotADevice() public {
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__DeviceNotInGroup.selector, GID, stranger));
        vm.prank(master);
        groups.revokeDevice(GID, stranger);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__DeviceNotInGroup.selector, GID, master));
        vm.prank(master);
        groups.revokeDevice(GID, master);
    }

    function test_RevertWhen_RevokeDevice_UnknownGroup() public {
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__UnknownGroup.selector, OTHER_GID));
        vm.prank(master);
        groups.revokeDevice(OTHER_GID, device);
    }

    // ------------------------------------------------------------------ rotateMaster

    function test_RotateMaster_HandsOverTheGroup() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        address newMaster = vm.addr(NEW_MASTER_KEY);
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, GID);
        vm.expectEmit(true, true, true, true, address(groups));
        emit MasterRotated(GID, master, newMaster);
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);

        (address m, uint64 moid, uint32 count, bytes memory mkey) = groups.groupOf(GID);
        vm.assertEq(m, newMaster, "new master");
        vm.assertEq(uint256(moid), MASTER_OID, "object ID kept");
        vm.assertEq(uint256(count), 1, "devices kept");
        vm.assertEq(mkey, newKey, "new key");
        vm.assertTrue(groups.isActiveDevice(device), "devices stay active");

        // Old master's tokens stop verifying.
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID2, device2),
            MASTER_KEY,
            GID,
            OID2,
            DEVICE2_KEY
        );
        // The new master's work.
        associateWith(NEW_MASTER_KEY, GID, OID2, DEVICE2_KEY);
        vm.assertTrue(groups.isActiveDevice(device2), "new master admits");
        // Only the new master revokes.
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__NotMaster.selector, GID, master));
        vm.prank(master);
        groups.revokeDevice(GID, device);
        vm.prank(newMaster);
        groups.revokeDevice(GID, device);
        // The old master cannot found a new group either: its address is tombstoned.
        bytes memory oldKey = publicKey(MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, master));
        vm.prank(master);
        groups.createGroup(OTHER_GID, OTHER_MASTER_OID, oldKey);
    }

    function test_RevertWhen_RotateMaster_NotMaster() public {
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, GID);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__NotMaster.selector, GID, stranger));
        vm.prank(stranger);
        groups.rotateMaster(GID, newKey, sig);
    }

    function test_RevertWhen_RotateMaster_NewKeyIsADevice() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        bytes memory newKey = publicKey(DEVICE_KEY);
        bytes memory sig = rotationSignature(DEVICE_KEY, GID);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, device));
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
    }

    function test_RevertWhen_RotateMaster_NewKeyIsAnotherMaster() public {
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        bytes memory newKey = publicKey(OTHER_MASTER_KEY);
        bytes memory sig = rotationSignature(OTHER_MASTER_KEY, GID);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, otherMaster));
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
    }

    function test_RevertWhen_RotateMaster_BackToAStaleKey() public {
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, GID);
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
        // Rotating back to the former master's key is refused.
        bytes memory oldKey = publicKey(MASTER_KEY);
        bytes memory oldSig = rotationSignature(MASTER_KEY, GID);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, master));
        vm.prank(vm.addr(NEW_MASTER_KEY));
        groups.rotateMaster(GID, oldKey, oldSig);
    }

    function test_RevertWhen_RotateMaster_NotSignedByNewKey() public {
        address newMaster = vm.addr(NEW_MASTER_KEY);
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = signDigest(STRANGER_KEY, groups.rotationDigest(GID, newMaster));
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidRotationSignature.selector, newMaster));
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
    }

    function test_RevertWhen_RotateMaster_SignatureForAnotherGroup() public {
        address newMaster = vm.addr(NEW_MASTER_KEY);
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, OTHER_GID);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidRotationSignature.selector, newMaster));
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
    }

    function test_RevertWhen_RotateMaster_KeyWrongLength() public {
        bytes memory sig = rotationSignature(NEW_MASTER_KEY, GID);
        bytes memory key = compressedKey(NEW_MASTER_KEY);
        vm.expectRevert(abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidPublicKeyLength.selector, 33));
        vm.prank(master);
        groups.rotateMaster(GID, key, sig);
    }

    // ------------------------------------------------------------------ digests

    /// @dev The digests, recomputed here from the EIP-712 definition (docs/spec/token.md).
    function test_Digests_MatchEip712Definition() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("vitalchain"),
                keccak256("1"),
                block.chainid,
                address(groups)
            )
        );
        vm.assertEq(groups.domainSeparator(), domain, "domain");
        bytes32 tokenStruct = keccak256(
            abi.encode(keccak256("DeviceToken(uint64 groupId,uint64 objectId,address device)"), GID, OID, device)
        );
        vm.assertEq(
            groups.tokenDigest(GID, OID, device),
            keccak256(abi.encodePacked(hex"1901", domain, tokenStruct)),
            "token digest"
        );
        bytes32 tokenHash = keccak256("a token");
        bytes32 requestStruct = keccak256(
            abi.encode(
                keccak256("AssociationRequest(uint64 groupId,uint64 objectId,address device,bytes32 tokenHash)"),
                GID,
                OID,
                device,
                tokenHash
            )
        );
        vm.assertEq(
            groups.requestDigest(GID, OID, device, tokenHash),
            keccak256(abi.encodePacked(hex"1901", domain, requestStruct)),
            "request digest"
        );
        bytes32 rotationStruct =
            keccak256(abi.encode(keccak256("MasterRotation(uint64 groupId,address newMaster)"), GID, stranger));
        vm.assertEq(
            groups.rotationDigest(GID, stranger),
            keccak256(abi.encodePacked(hex"1901", domain, rotationStruct)),
            "rotation digest"
        );
        vm.assertEq(
            groups.TOKEN_TYPEHASH(), keccak256("DeviceToken(uint64 groupId,uint64 objectId,address device)"), "th"
        );
    }

    // ------------------------------------------------------------------ devicesOf

    function test_DevicesOf_Paginates() public {
        for (uint64 k = 1; k <= 5; ++k) {
            associateWith(MASTER_KEY, GID, OID + k, 0xE0 + k);
        }
        address[] memory page = groups.devicesOf(GID, 1, 2);
        vm.assertEq(page.length, 2, "page length");
        vm.assertEq(page[0], vm.addr(0xE2), "page[0]");
        vm.assertEq(page[1], vm.addr(0xE3), "page[1]");
        vm.assertEq(groups.devicesOf(GID, 3, 100).length, 2, "tail");
        vm.assertEq(groups.devicesOf(GID, 5, 1).length, 0, "past the end");
        vm.assertEq(groups.devicesOf(GID, 0, 0).length, 0, "limit 0");
        vm.assertEq(groups.devicesOf(GID, 2, type(uint256).max).length, 3, "huge limit");
        vm.assertEq(groups.devicesOf(OTHER_GID, 0, 10).length, 0, "unknown group");
    }

    // ------------------------------------------------------------------ fuzz

    function testFuzz_CreateGroup_AnyIds(uint64 groupId, uint64 masterObjectId, uint256 keySeed) public {
        vm.assume(groupId != 0 && groupId != GID && masterObjectId != MASTER_OID);
        uint256 key = boundKey(keySeed);
        vm.assume(key != MASTER_KEY);
        createGroupAs(key, groupId, masterObjectId);
        vm.assertEq(groups.masterOf(groupId), vm.addr(key), "master");
        vm.assertTrue(groups.objectIdTaken(masterObjectId), "oid");
        (, uint64 moid,, bytes memory mkey) = groups.groupOf(groupId);
        vm.assertEq(uint256(moid), masterObjectId, "moid");
        vm.assertEq(mkey, publicKey(key), "key");
    }

    function test_CreateGroup_MaxIds() public {
        createGroupAs(OTHER_MASTER_KEY, type(uint64).max, type(uint64).max);
        vm.assertEq(groups.masterOf(type(uint64).max), otherMaster, "max gid");
        associateWith(OTHER_MASTER_KEY, type(uint64).max, 0, DEVICE_KEY);
        (uint64 gid, uint64 oid,) = groups.deviceOf(device);
        vm.assertEq(uint256(gid), type(uint64).max, "gid");
        vm.assertEq(uint256(oid), 0, "oid 0 is a valid object ID");
    }

    function testFuzz_Associate_AnyIdsAndKeys(uint64 objectId, uint256 keySeed, uint64 otherObjectId) public {
        vm.assume(objectId != MASTER_OID && otherObjectId != MASTER_OID && otherObjectId != objectId);
        uint256 key = boundKey(keySeed);
        vm.assume(key != MASTER_KEY);
        associateWith(MASTER_KEY, GID, objectId, key);
        address dev = vm.addr(key);
        (uint64 gid, uint64 oid, ITrustGroups.DeviceStatus status) = groups.deviceOf(dev);
        vm.assertEq(uint256(gid), GID, "gid");
        vm.assertEq(uint256(oid), objectId, "oid");
        vm.assertEq(uint256(status), uint256(ITrustGroups.DeviceStatus.Active), "active");
        vm.assertEq(groups.devicePublicKey(dev), compressedKey(key), "key");
        // The same address can never take a second object ID.
        associateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__AddressTaken.selector, dev),
            MASTER_KEY,
            GID,
            otherObjectId,
            key
        );
    }

    function testFuzz_Associate_TokenForOtherIdsFails(uint64 tokenGroup, uint64 tokenObject) public {
        vm.assume(tokenGroup != GID || tokenObject != OID);
        bytes memory tok = token(MASTER_KEY, tokenGroup, tokenObject, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        expectAssociateRevert(
            abi.encodeWithSelector(TrustGroups.TrustGroups__InvalidToken.selector, GID, OID, device),
            GID,
            OID,
            publicKey(DEVICE_KEY),
            tok,
            req
        );
    }

    function testFuzz_DevicesOf_Window(uint8 n, uint256 offset, uint256 limit) public {
        n = uint8(bound(n, 0, 12));
        for (uint64 k = 0; k < n; ++k) {
            associateWith(MASTER_KEY, GID, OID + k, 0xF00 + k);
        }
        address[] memory page = groups.devicesOf(GID, offset, limit);
        uint256 expected = offset >= n ? 0 : (n - offset < limit ? n - offset : limit);
        vm.assertEq(page.length, expected, "length");
        for (uint256 i = 0; i < page.length; ++i) {
            vm.assertEq(page[i], vm.addr(0xF00 + offset + i), "order");
        }
    }
}
