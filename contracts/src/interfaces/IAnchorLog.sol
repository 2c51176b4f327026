// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IAnchorLog
 * @notice Per-group anchors of the RFC 9162 Merkle log of sealed blocks: the group's master
 * publishes (root, treeSize) once per batch. Tree sizes strictly grow and each anchor covers
 * exactly the blocks added since the previous one, so no block can be skipped.
 * See `docs/spec/anchor.md` (v1).
 */
interface IAnchorLog {
    /// @notice Emitted after the `index`-th (0-based) anchor of `groupId`, covering blocks
    /// `firstBlock..lastBlock` (inclusive) of the group's log.
    event Anchored(
        uint64 indexed groupId,
        uint256 indexed index,
        bytes32 root,
        uint64 treeSize,
        uint64 firstBlock,
        uint64 lastBlock
    );

    /**
     * @notice Anchors the log root `root` of the first `treeSize` blocks of `groupId`.
     * Only the group's current master may call it. `treeSize` must exceed the previous size,
     * `firstBlock` must equal the previous size and `lastBlock` must equal `treeSize - 1`.
     */
    function anchor(uint64 groupId, bytes32 root, uint64 treeSize, uint64 firstBlock, uint64 lastBlock) external;

    /// @notice The latest anchor of `groupId`; all zero if there is none.
    /// @return root The latest root.
    /// @return treeSize The number of blocks it covers.
    /// @return anchorCount How many anchors the group has.
    /// @return timestamp Block timestamp of the latest anchor.
    function latestAnchor(uint64 groupId)
        external
        view
        returns (bytes32 root, uint64 treeSize, uint64 anchorCount, uint64 timestamp);

    /**
     * @notice Hash chain over every anchor of `groupId`, in order; zero if there is none.
     * With `h_0 = bytes32(0)`, the `i`-th anchor (0-based) with `root` and `treeSize` gives
     * `h_{i+1} = keccak256(abi.encodePacked(h_i, root, treeSize))`: 32 + 32 + 8 bytes, `treeSize`
     * as a big-endian uint64. Recomputed from the `Anchored` events in `index` order, it must
     * equal this value for the event list to be complete and unaltered.
     */
    function anchorHistory(uint64 groupId) external view returns (bytes32);

    /// @notice The TrustGroups contract that says who a group's master is.
    function trustGroups() external view returns (address);
}
