// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAnchorLog} from "./interfaces/IAnchorLog.sol";
import {ITrustGroups} from "./interfaces/ITrustGroups.sol";

/**
 * @title AnchorLog
 * @notice Anchors of each group's block log. An anchor costs the same whatever the number of
 * blocks it covers: one packed slot per group is updated and one root slot is written.
 *
 * History: `rootAt(groupId, treeSize)` keeps every anchored root; the ordered list of anchors
 * (index → root, size, time) is the `Anchored` event log. Keeping an on-chain index → anchor
 * array as well would cost a second fresh slot (22.1k gas) per anchor and break the 60k budget.
 */
contract AnchorLog is IAnchorLog {
    /// @dev One storage slot (3 × 64 bits).
    struct Latest {
        uint64 treeSize;
        uint64 anchorCount;
        uint64 timestamp;
    }

    ITrustGroups private immutable _trustGroups;

    mapping(uint64 groupId => Latest) private _latest;
    mapping(uint64 groupId => mapping(uint64 treeSize => bytes32 root)) private _roots;

    /// @notice Only the group's current master may anchor.
    error AnchorLog__NotMaster(uint64 groupId, address caller);
    /// @notice The tree size must strictly grow.
    error AnchorLog__SizeNotGrowing(uint64 previous, uint64 given);
    /// @notice The range must be exactly [previous size, treeSize - 1].
    error AnchorLog__InvalidRange(uint64 expectedFirst, uint64 expectedLast, uint64 firstBlock, uint64 lastBlock);
    /// @notice The root must be non-zero (zero means "no anchor" in {rootAt}).
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
        Latest storage latest = _latest[groupId];
        uint64 previous = latest.treeSize;
        if (treeSize <= previous) revert AnchorLog__SizeNotGrowing(previous, treeSize);
        // treeSize > previous >= 0, so treeSize - 1 cannot underflow.
        if (firstBlock != previous || lastBlock != treeSize - 1) {
            revert AnchorLog__InvalidRange(previous, treeSize - 1, firstBlock, lastBlock);
        }
        uint64 index = latest.anchorCount;
        _latest[groupId] = Latest({treeSize: treeSize, anchorCount: index + 1, timestamp: uint64(block.timestamp)});
        _roots[groupId][treeSize] = root;
        emit Anchored(groupId, index, root, treeSize, firstBlock, lastBlock);
    }

    /// @inheritdoc IAnchorLog
    function latestAnchor(uint64 groupId)
        external
        view
        returns (bytes32 root, uint64 treeSize, uint64 anchorCount, uint64 timestamp)
    {
        Latest memory latest = _latest[groupId];
        return (_roots[groupId][latest.treeSize], latest.treeSize, latest.anchorCount, latest.timestamp);
    }

    /// @inheritdoc IAnchorLog
    function rootAt(uint64 groupId, uint64 treeSize) external view returns (bytes32) {
        return _roots[groupId][treeSize];
    }

    /// @inheritdoc IAnchorLog
    function trustGroups() external view returns (address) {
        return address(_trustGroups);
    }
}
