// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ITrustGroups} from "../interfaces/ITrustGroups.sol";

/**
 * @title BubblesBaseline
 * @notice Benchmark baseline only, never part of vitalchain's deployment: the data path of
 * "Bubbles of Trust" (Hammi, Hammi, Bellot and Serhrouchni, 2018), in which every data message of
 * a device is its own blockchain transaction. The contract accepts a message only from an active
 * device of the group and object it names, as recorded by the deployed {TrustGroups}, and puts the
 * ciphertext itself on chain in an event.
 *
 * vitalchain instead verifies, stores and seals messages at the gateway and anchors one Merkle
 * root per batch (`AnchorLog`); `benchmarks/baseline.py` compares the two on one chain.
 *
 * Nothing is stored: a submission costs the transaction, its calldata, one view call into
 * {TrustGroups} and the event.
 */
contract BubblesBaseline {
    ITrustGroups private immutable _trustGroups;

    /// @notice Emitted for every accepted data message, with the message as sent.
    event DataSubmitted(uint64 indexed groupId, address indexed device, uint64 objectId, bytes ciphertext);

    /// @notice The TrustGroups address must be non-zero.
    error BubblesBaseline__ZeroAddress();
    /// @notice The message is empty.
    error BubblesBaseline__EmptyMessage();
    /// @notice The sender is not an active device of `groupId` with object ID `objectId`.
    error BubblesBaseline__NotMember(uint64 groupId, uint64 objectId, address sender);

    constructor(address trustGroups_) {
        if (trustGroups_ == address(0)) revert BubblesBaseline__ZeroAddress();
        _trustGroups = ITrustGroups(trustGroups_);
    }

    /**
     * @notice Submits one data message (BoT's "transaction n": data, group ID, object ID, signed by
     * the device's own account).
     * @param groupId The sender's group.
     * @param objectId The sender's object ID in that group.
     * @param ciphertext The device's encrypted, signed data message.
     */
    function submit(uint64 groupId, uint64 objectId, bytes calldata ciphertext) external {
        if (ciphertext.length == 0) revert BubblesBaseline__EmptyMessage();
        (uint64 memberGroup, uint64 memberObject, ITrustGroups.DeviceStatus status) = _trustGroups.deviceOf(msg.sender);
        if (status != ITrustGroups.DeviceStatus.Active || memberGroup != groupId || memberObject != objectId) {
            revert BubblesBaseline__NotMember(groupId, objectId, msg.sender);
        }
        emit DataSubmitted(groupId, msg.sender, objectId, ciphertext);
    }

    /// @notice The TrustGroups contract whose devices may submit.
    function trustGroups() external view returns (address) {
        return address(_trustGroups);
    }
}
