// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {BubblesBaseline} from "../src/baseline/BubblesBaseline.sol";
import {ITrustGroups} from "../src/interfaces/ITrustGroups.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @notice Stands in for TrustGroups' `deviceOf`, so that these tests leave the TrustGroups rows of
/// `make gas-report` alone. The Python tests (tests/unit/test_baseline_contract.py) run the
/// baseline against the real TrustGroups, on the embedded chain and on anvil.
contract StubTrustGroups {
    struct Entry {
        uint64 groupId;
        uint64 objectId;
        ITrustGroups.DeviceStatus status;
    }

    mapping(address device => Entry) private _devices;

    function set(address device, uint64 groupId, uint64 objectId, ITrustGroups.DeviceStatus status) external {
        _devices[device] = Entry(groupId, objectId, status);
    }

    function deviceOf(address device) external view returns (uint64, uint64, ITrustGroups.DeviceStatus) {
        Entry memory entry = _devices[device];
        return (entry.groupId, entry.objectId, entry.status);
    }
}

/// @notice The Bubbles-of-Trust benchmark baseline: only active members of the named group submit.
contract BaselineBubblesTest is TestBase {
    event DataSubmitted(uint64 indexed groupId, address indexed device, uint64 objectId, bytes ciphertext);

    BubblesBaseline internal baseline;
    StubTrustGroups internal groups;

    uint64 internal constant GID = 7;
    uint64 internal constant OTHER_GID = 8;
    uint64 internal constant OID = 1001;
    uint64 internal constant OTHER_OID = 1002;
    address internal constant DEVICE = address(0xD1);
    address internal constant OTHER_DEVICE = address(0xD2);
    address internal constant REVOKED = address(0xD3);
    address internal constant STRANGER = address(0x5EED);
    bytes internal constant MESSAGE = hex"56434d01a1b2c3d4e5f60718293a4b5c6d7e8f90";

    function setUp() public {
        groups = new StubTrustGroups();
        groups.set(DEVICE, GID, OID, ITrustGroups.DeviceStatus.Active);
        groups.set(OTHER_DEVICE, OTHER_GID, OTHER_OID, ITrustGroups.DeviceStatus.Active);
        groups.set(REVOKED, GID, OTHER_OID, ITrustGroups.DeviceStatus.Revoked);
        baseline = new BubblesBaseline(address(groups));
    }

    function expectNotMember(uint64 groupId, uint64 objectId, address sender) internal {
        vm.expectRevert(
            abi.encodeWithSelector(BubblesBaseline.BubblesBaseline__NotMember.selector, groupId, objectId, sender)
        );
    }

    function test_Submit_ActiveMemberEmitsTheCiphertext() public {
        vm.expectEmit(true, true, true, true, address(baseline));
        emit DataSubmitted(GID, DEVICE, OID, MESSAGE);
        vm.prank(DEVICE);
        baseline.submit(GID, OID, MESSAGE);
        vm.assertEq(baseline.trustGroups(), address(groups), "trustGroups");
    }

    function test_RevertWhen_Submit_Stranger() public {
        expectNotMember(GID, OID, STRANGER);
        vm.prank(STRANGER);
        baseline.submit(GID, OID, MESSAGE);
    }

    function test_RevertWhen_Submit_OtherGroupsDevice() public {
        expectNotMember(GID, OTHER_OID, OTHER_DEVICE);
        vm.prank(OTHER_DEVICE);
        baseline.submit(GID, OTHER_OID, MESSAGE);
    }

    function test_RevertWhen_Submit_WrongObjectId() public {
        expectNotMember(GID, OTHER_OID, DEVICE);
        vm.prank(DEVICE);
        baseline.submit(GID, OTHER_OID, MESSAGE);
    }

    function test_RevertWhen_Submit_RevokedDevice() public {
        expectNotMember(GID, OTHER_OID, REVOKED);
        vm.prank(REVOKED);
        baseline.submit(GID, OTHER_OID, MESSAGE);
    }

    function test_RevertWhen_Submit_EmptyMessage() public {
        vm.expectRevert(BubblesBaseline.BubblesBaseline__EmptyMessage.selector);
        vm.prank(DEVICE);
        baseline.submit(GID, OID, "");
    }

    function testFuzz_Submit_OnlyTheExactMemberships(address sender, uint64 groupId, uint64 objectId) public {
        bool member = sender == DEVICE && groupId == GID && objectId == OID;
        member = member || (sender == OTHER_DEVICE && groupId == OTHER_GID && objectId == OTHER_OID);
        if (!member) expectNotMember(groupId, objectId, sender);
        vm.prank(sender);
        baseline.submit(groupId, objectId, MESSAGE);
    }

    function test_RevertWhen_Constructor_ZeroAddress() public {
        vm.expectRevert(BubblesBaseline.BubblesBaseline__ZeroAddress.selector);
        new BubblesBaseline(address(0));
    }
}
