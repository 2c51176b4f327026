// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAnchorLog} from "./interfaces/IAnchorLog.sol";
import {ITrustGroups} from "./interfaces/ITrustGroups.sol";

/**
 * @title AnchorLog
 * @notice Anchors of each group's block log. An anchor costs the same whatever the number of
 * blocks it covers: it overwrites the group's three slots (packed sizes, latest root, history
 * hash) and emits one event. No storage is created per anchor.
 *
 * History: the ordered list of anchors (index → root, size, range) is the `Anchored` event log;
 * {anchorHistory} commits to all of it with a hash chain, so a verifier can check with one view
 * call that the events it was given are complete and unaltered.
 */
contract AnchorLog is IAnchorLog {
    /// @dev One storage slot (3 × 64 bits).
    struct Latest {
        uint64 treeSize;
        uint64 anchorCount;
        uint64 timestamp;
    }

    /// @dev Three storage slots per group, all overwritten by each anchor.
    struct GroupAnchors {
        Latest latest;
        bytes32 latestRoot;
        bytes32 history;
    }

    ITrustGroups private immutable _trustGroups;

    mapping(uint64 groupId => GroupAnchors) private _anchors;

    /// @notice Only the group's current master may anchor.
    error AnchorLog__NotMaster(uint64 groupId, address caller);
    /// @notice The tree size must strictly grow.
    error AnchorLog__SizeNotGrowing(uint64 previous, uint64 given);
    /// @notice The range must be exactly [previous size, treeSize - 1].
    error AnchorLog__InvalidRange(uint64 expectedFirst, uint64 expectedLast, uint64 firstBlock, uint64 lastBlock);
    /// @notice The root must be non-zero (a zero root in {latestAnchor} means "no anchor yet").
    error AnchorLog__ZeroRoot();
    /// @notice The TrustGroups address must be non-zero.
    error AnchorLog__ZeroAddress();

    constructor(address trustGroups_) {
        if (trustGroups_ == address(0)) revert AnchorLog__ZeroAddress();
        _trustGroups = ITrustGroups(trustGroups_);
    }

    /// @inheritdoc IAnchorLog
    function anchor(uint64 groupId, bytes32 root, uint64 treeSize, uint64 firstBlock, uint64 lastBlock) external {
        if (_trustGroups.masterOf(groupId) != msg.sender) revert AnchorLog__NotMaster(groupId, msg.sender);
        if (root == bytes32(0)) revert AnchorLog__ZeroRoot();
        GroupAnchors storage anchors = _anchors[groupId];
        Latest memory latest = anchors.latest;
        uint64 previous = latest.treeSize;
        if (treeSize <= previous) revert AnchorLog__SizeNotGrowing(previous, treeSize);
        // treeSize > previous >= 0, so treeSize - 1 cannot underflow.
        if (firstBlock != previous || lastBlock != treeSize - 1) {
            revert AnchorLog__InvalidRange(previous, treeSize - 1, firstBlock, lastBlock);
        }
        uint64 index = latest.anchorCount;
        anchors.latest = Latest({treeSize: treeSize, anchorCount: index + 1, timestamp: uint64(block.timestamp)});
        anchors.latestRoot = root;
        anchors.history = keccak256(abi.encodePacked(anchors.history, root, treeSize));
        emit Anchored(groupId, index, root, treeSize, firstBlock, lastBlock);
    }

    /// @inheritdoc IAnchorLog
    function latestAnchor(uint64 groupId)
        external
        view
        returns (bytes32 root, uint64 treeSize, uint64 anchorCount, uint64 timestamp)
    {
        GroupAnchors storage anchors = _anchors[groupId];
        Latest memory latest = anchors.latest;
        return (anchors.latestRoot, latest.treeSize, latest.anchorCount, latest.timestamp);
    }

    /// @inheritdoc IAnchorLog
    function anchorHistory(uint64 groupId) external view returns (bytes32) {
        return _anchors[groupId].history;
    }

    /// @inheritdoc IAnchorLog
    function trustGroups() external view returns (address) {
        return address(_trustGroups);
    }
}
