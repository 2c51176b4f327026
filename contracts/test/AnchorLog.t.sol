// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AnchorLog} from "../src/AnchorLog.sol";
import {TrustGroupsFixture} from "./utils/Fixtures.sol";

contract AnchorLogTest is TrustGroupsFixture {
    event Anchored(
        uint64 indexed groupId,
        uint256 indexed index,
        bytes32 root,
        uint64 treeSize,
        uint64 firstBlock,
        uint64 lastBlock
    );

    AnchorLog internal log;
    bytes32 internal constant ROOT1 = keccak256("root of 10 blocks");
    bytes32 internal constant ROOT2 = keccak256("root of 25 blocks");
    /// @dev History after (0x11…11, 10) then (0x22…22, 25): the vector of docs/spec/anchor.md.
    bytes32 internal constant H1 = 0x0f48222567b6118b9450dcd4b8ee5b9edcd1cf8b1c4599c23d3f9cef660a6ddf;
    bytes32 internal constant H2 = 0x10c49ae87d8cb34755043ea0d1f7fc9025013f25f8708e3f70c50f684434dfeb;

    function setUp() public {
        setUpGroups();
        createGroupAs(MASTER_KEY, GID, MASTER_OID);
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        log = new AnchorLog(address(groups));
        vm.warp(1_700_000_000);
    }

    function historyOf(bytes32 previous, bytes32 root, uint64 size) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(previous, root, size));
    }

    function anchorAs(address who, uint64 groupId, bytes32 root, uint64 size, uint64 first, uint64 last) internal {
        vm.prank(who);
        log.anchor(groupId, root, size, first, last);
    }

    function test_Anchor_FirstAndNextAndEmits() public {
        vm.expectEmit(true, true, true, true, address(log));
        emit Anchored(GID, 0, ROOT1, 10, 0, 9);
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        (bytes32 root, uint64 size, uint64 count, uint64 ts) = log.latestAnchor(GID);
        vm.assertEq(root, ROOT1, "root");
        vm.assertEq(uint256(size), 10, "size");
        vm.assertEq(uint256(count), 1, "count");
        vm.assertEq(uint256(ts), 1_700_000_000, "timestamp");

        vm.warp(1_700_000_600);
        vm.expectEmit(true, true, true, true, address(log));
        emit Anchored(GID, 1, ROOT2, 25, 10, 24);
        anchorAs(master, GID, ROOT2, 25, 10, 24);
        (root, size, count, ts) = log.latestAnchor(GID);
        vm.assertEq(root, ROOT2, "root 2");
        vm.assertEq(uint256(size), 25, "size 2");
        vm.assertEq(uint256(count), 2, "count 2");
        vm.assertEq(uint256(ts), 1_700_000_600, "timestamp 2");
        bytes32 history = historyOf(historyOf(bytes32(0), ROOT1, 10), ROOT2, 25);
        vm.assertEq(log.anchorHistory(GID), history, "history");
        vm.assertEq(log.trustGroups(), address(groups), "trustGroups");
    }

    function test_Anchor_GroupsAreIndependent() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        anchorAs(otherMaster, OTHER_GID, ROOT2, 3, 0, 2);
        (bytes32 root, uint64 size,,) = log.latestAnchor(OTHER_GID);
        vm.assertEq(root, ROOT2, "own root");
        vm.assertEq(uint256(size), 3, "own size");
        vm.assertEq(log.anchorHistory(GID), historyOf(bytes32(0), ROOT1, 10), "own history");
        vm.assertEq(log.anchorHistory(OTHER_GID), historyOf(bytes32(0), ROOT2, 3), "other history");
    }

    function test_LatestAnchor_NoneIsZero() public view {
        (bytes32 root, uint64 size, uint64 count, uint64 ts) = log.latestAnchor(GID);
        vm.assertEq(root, bytes32(0), "root");
        vm.assertEq(uint256(size) + uint256(count) + uint256(ts), 0, "zeros");
        vm.assertEq(log.anchorHistory(GID), bytes32(0), "history");
    }

    /// @dev The history test vector of docs/spec/anchor.md.
    function test_AnchorHistory_SpecVector() public {
        bytes32 rootA = 0x1111111111111111111111111111111111111111111111111111111111111111;
        bytes32 rootB = 0x2222222222222222222222222222222222222222222222222222222222222222;
        // The packed preimage is 72 bytes: previous history, root, treeSize as 8 big-endian bytes.
        vm.assertEq(abi.encodePacked(bytes32(0), rootA, uint64(10)).length, 72, "preimage length");
        vm.assertEq(historyOf(bytes32(0), rootA, 10), H1, "vector h1");
        vm.assertEq(historyOf(H1, rootB, 25), H2, "vector h2");
        anchorAs(master, GID, rootA, 10, 0, 9);
        vm.assertEq(log.anchorHistory(GID), H1, "history after anchor 1");
        anchorAs(master, GID, rootB, 25, 10, 24);
        vm.assertEq(log.anchorHistory(GID), H2, "history after anchor 2");
    }

    function test_AnchorHistory_RevertedAnchorLeavesItUnchanged() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        bytes32 before = log.anchorHistory(GID);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__SizeNotGrowing.selector, 10, 10));
        anchorAs(master, GID, ROOT2, 10, 10, 9);
        vm.assertEq(log.anchorHistory(GID), before, "unchanged");
    }

    function test_RevertWhen_Anchor_Shrinking() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__SizeNotGrowing.selector, 10, 9));
        anchorAs(master, GID, ROOT2, 9, 10, 8);
    }

    function test_RevertWhen_Anchor_EqualSize() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__SizeNotGrowing.selector, 10, 10));
        anchorAs(master, GID, ROOT2, 10, 10, 9);
    }

    function test_RevertWhen_Anchor_ZeroSize() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__SizeNotGrowing.selector, 0, 0));
        anchorAs(master, GID, ROOT1, 0, 0, 0);
    }

    function test_RevertWhen_Anchor_SkipsBlocks() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__InvalidRange.selector, 10, 24, 11, 24));
        anchorAs(master, GID, ROOT2, 25, 11, 24);
    }

    function test_RevertWhen_Anchor_OverlapsBlocks() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__InvalidRange.selector, 10, 24, 9, 24));
        anchorAs(master, GID, ROOT2, 25, 9, 24);
    }

    function test_RevertWhen_Anchor_WrongLastBlock() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__InvalidRange.selector, 0, 9, 0, 10));
        anchorAs(master, GID, ROOT1, 10, 0, 10);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__InvalidRange.selector, 0, 9, 0, 8));
        anchorAs(master, GID, ROOT1, 10, 0, 8);
    }

    function test_RevertWhen_Anchor_NotMaster() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__NotMaster.selector, GID, stranger));
        anchorAs(stranger, GID, ROOT1, 10, 0, 9);
        // Another group's master is not this group's master.
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__NotMaster.selector, GID, otherMaster));
        anchorAs(otherMaster, GID, ROOT1, 10, 0, 9);
    }

    function test_RevertWhen_Anchor_DeviceOfTheGroup() public {
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__NotMaster.selector, GID, device));
        anchorAs(device, GID, ROOT1, 10, 0, 9);
    }

    function test_RevertWhen_Anchor_UnknownGroup() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__NotMaster.selector, 99, master));
        anchorAs(master, 99, ROOT1, 10, 0, 9);
    }

    function test_RevertWhen_Anchor_ZeroRoot() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__ZeroRoot.selector));
        anchorAs(master, GID, bytes32(0), 10, 0, 9);
    }

    function test_RevertWhen_Constructor_ZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__ZeroAddress.selector));
        new AnchorLog(address(0));
    }

    function test_Anchor_FollowsMasterRotation() public {
        anchorAs(master, GID, ROOT1, 10, 0, 9);
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        bytes memory sig = signDigest(NEW_MASTER_KEY, groups.rotationDigest(GID, vm.addr(NEW_MASTER_KEY)));
        vm.prank(master);
        groups.rotateMaster(GID, newKey, sig);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__NotMaster.selector, GID, master));
        anchorAs(master, GID, ROOT2, 25, 10, 24);
        anchorAs(vm.addr(NEW_MASTER_KEY), GID, ROOT2, 25, 10, 24);
        (, uint64 size, uint64 count,) = log.latestAnchor(GID);
        vm.assertEq(uint256(size), 25, "continues the same log");
        vm.assertEq(uint256(count), 2, "count");
    }

    // ------------------------------------------------------------------ fuzz

    /// @dev Any growing sequence of sizes (up to type(uint64).max) anchors; the range rule follows.
    function testFuzz_Anchor_GrowingSizes(uint64[6] memory steps) public {
        uint64 previous = 0;
        for (uint256 i = 0; i < steps.length; ++i) {
            uint64 room = type(uint64).max - previous;
            if (room == 0) break;
            uint64 step = uint64(bound(steps[i], 1, room));
            uint64 size = previous + step;
            bytes32 root = keccak256(abi.encode(i, size));
            anchorAs(master, GID, root, size, previous, size - 1);
            (bytes32 latestRoot, uint64 latestSize,,) = log.latestAnchor(GID);
            vm.assertEq(latestRoot, root, "latest root");
            vm.assertEq(uint256(latestSize), size, "latest size");
            previous = size;
        }
        (, uint64 latest, uint64 count,) = log.latestAnchor(GID);
        vm.assertEq(uint256(latest), previous, "latest size");
        vm.assertTrue(count > 0, "count");
    }

    function testFuzz_Anchor_NotGrowingFails(uint64 first, uint64 next) public {
        first = uint64(bound(first, 1, type(uint64).max));
        next = uint64(bound(next, 0, first));
        anchorAs(master, GID, ROOT1, first, 0, first - 1);
        vm.expectRevert(abi.encodeWithSelector(AnchorLog.AnchorLog__SizeNotGrowing.selector, first, next));
        anchorAs(master, GID, ROOT2, next, first, next == 0 ? 0 : next - 1);
    }

    function testFuzz_Anchor_RangeMustBeExact(uint64 size, uint64 firstBlock, uint64 lastBlock) public {
        size = uint64(bound(size, 1, type(uint64).max));
        bool exact = firstBlock == 0 && lastBlock == size - 1;
        if (!exact) {
            vm.expectRevert(
                abi.encodeWithSelector(AnchorLog.AnchorLog__InvalidRange.selector, 0, size - 1, firstBlock, lastBlock)
            );
        }
        anchorAs(master, GID, ROOT1, size, firstBlock, lastBlock);
    }

    function testFuzz_Anchor_AnyGroupId(uint64 groupId) public {
        vm.assume(groupId != 0 && groupId != GID && groupId != OTHER_GID);
        createGroupAs(NEW_MASTER_KEY, groupId, 77);
        anchorAs(vm.addr(NEW_MASTER_KEY), groupId, ROOT1, 1, 0, 0);
        (bytes32 root,,,) = log.latestAnchor(groupId);
        vm.assertEq(root, ROOT1, "root");
        vm.assertEq(log.anchorHistory(groupId), historyOf(bytes32(0), ROOT1, 1), "history");
    }

    /// @dev Replays 1..32 anchors with arbitrary roots and growing sizes and checks
    /// {anchorHistory} against the chain recomputed here, as a verifier would from the events.
    function testFuzz_AnchorHistory_MatchesReplayedChain(uint8 n, uint256 seed) public {
        n = uint8(bound(n, 1, 32));
        bytes32 expected = bytes32(0);
        uint64 previous = 0;
        for (uint256 i = 0; i < n; ++i) {
            bytes32 root = keccak256(abi.encode(seed, i));
            uint64 step = uint64(bound(uint256(keccak256(abi.encode(root))), 1, 1_000_000));
            uint64 size = previous + step;
            anchorAs(master, GID, root, size, previous, size - 1);
            expected = keccak256(abi.encodePacked(expected, root, size));
            previous = size;
        }
        vm.assertEq(log.anchorHistory(GID), expected, "history");
        (, uint64 latest, uint64 count,) = log.latestAnchor(GID);
        vm.assertEq(uint256(latest), previous, "latest size");
        vm.assertEq(uint256(count), n, "count");
        vm.assertEq(log.anchorHistory(OTHER_GID), bytes32(0), "other group untouched");
    }
}
