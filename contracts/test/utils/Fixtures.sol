// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TrustGroups} from "../../src/TrustGroups.sol";
import {TestBase} from "./TestBase.sol";

/// @notice A TrustGroups deployment plus helpers that sign tokens and requests with known keys.
abstract contract TrustGroupsFixture is TestBase {
    TrustGroups internal groups;

    uint256 internal constant MASTER_KEY = 0xA11CE;
    uint256 internal constant OTHER_MASTER_KEY = 0xB0B;
    uint256 internal constant NEW_MASTER_KEY = 0xC0FFEE;
    uint256 internal constant DEVICE_KEY = 0xD1;
    uint256 internal constant DEVICE2_KEY = 0xD2;
    uint256 internal constant STRANGER_KEY = 0x5EED;

    uint64 internal constant GID = 7;
    uint64 internal constant OTHER_GID = 8;
    uint64 internal constant MASTER_OID = 1000;
    uint64 internal constant OTHER_MASTER_OID = 2000;
    uint64 internal constant OID = 1001;
    uint64 internal constant OID2 = 1002;

    address internal master;
    address internal otherMaster;
    address internal device;
    address internal device2;
    address internal stranger;

    function setUpGroups() internal {
        groups = new TrustGroups();
        master = vm.addr(MASTER_KEY);
        otherMaster = vm.addr(OTHER_MASTER_KEY);
        device = vm.addr(DEVICE_KEY);
        device2 = vm.addr(DEVICE2_KEY);
        stranger = vm.addr(STRANGER_KEY);
    }

    function createGroupAs(uint256 masterKey, uint64 groupId, uint64 masterObjectId) internal {
        bytes memory key = publicKey(masterKey);
        vm.prank(vm.addr(masterKey));
        groups.createGroup(groupId, masterObjectId, key);
    }

    function token(uint256 masterKey, uint64 groupId, uint64 objectId, address device_)
        internal
        view
        returns (bytes memory)
    {
        return signDigest(masterKey, groups.tokenDigest(groupId, objectId, device_));
    }

    function request(uint256 deviceKey, uint64 groupId, uint64 objectId, bytes memory token_)
        internal
        view
        returns (bytes memory)
    {
        return signDigest(deviceKey, groups.requestDigest(groupId, objectId, vm.addr(deviceKey), keccak256(token_)));
    }

    /// @dev Associates `deviceKey` with a token signed by `masterKey`, relayed by a stranger.
    function associateWith(uint256 masterKey, uint64 groupId, uint64 objectId, uint256 deviceKey) internal {
        bytes memory tok = token(masterKey, groupId, objectId, vm.addr(deviceKey));
        bytes memory req = request(deviceKey, groupId, objectId, tok);
        bytes memory key = publicKey(deviceKey);
        vm.prank(stranger);
        groups.associate(groupId, objectId, key, tok, req);
    }
}
