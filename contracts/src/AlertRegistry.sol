// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAlertRegistry} from "./interfaces/IAlertRegistry.sol";
import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";
import {ITrustGroups} from "./interfaces/ITrustGroups.sol";

/**
 * @title AlertRegistry
 * @notice Threshold policies and the alert log. The gateway evaluates readings off chain against
 * {evaluate}'s rule, and records each alert it raises with {recordAlert}.
 */
contract AlertRegistry is IAlertRegistry {
    /// @notice Highest vital kind (capillary glucose; vitals.py is the registry).
    uint8 public constant MAX_VITAL = 8;

    /// @dev One storage slot (32 + 32 + 8 bits).
    struct Threshold {
        int32 low;
        int32 high;
        bool isSet;
    }

    ITrustGroups private immutable _trustGroups;
    IConsentRegistry private immutable _consents;

    mapping(address patient => mapping(uint8 vital => Threshold)) private _thresholds;
    mapping(bytes32 keyImageHash => bool) private _usedKeyImages;
    mapping(uint64 groupId => uint256) private _alertCounts;

    /// @notice Vital kinds are 1..8.
    error AlertRegistry__InvalidVital(uint8 vital);
    /// @notice `low` must be strictly below `high`.
    error AlertRegistry__InvalidRange(int32 low, int32 high);
    /// @notice The caller is neither the patient nor a provider with consent for this vital.
    error AlertRegistry__NotAuthorized(address patient, address caller);
    /// @notice No threshold is set for (patient, vital).
    error AlertRegistry__NoPolicy(address patient, uint8 vital);
    /// @notice Only the group's current master may record alerts.
    error AlertRegistry__NotMaster(uint64 groupId, address caller);
    /// @notice A key image is a 33-byte compressed point (0x02 or 0x03 prefix).
    error AlertRegistry__InvalidKeyImage();
    /// @notice The key image was already used: the alert is a replay.
    error AlertRegistry__KeyImageUsed(bytes32 keyImageHash);
    /// @notice Constructor addresses must be non-zero.
    error AlertRegistry__ZeroAddress();

    constructor(address trustGroups_, address consentRegistry_) {
        if (trustGroups_ == address(0) || consentRegistry_ == address(0)) revert AlertRegistry__ZeroAddress();
        _trustGroups = ITrustGroups(trustGroups_);
        _consents = IConsentRegistry(consentRegistry_);
    }

    /// @inheritdoc IAlertRegistry
    function setThreshold(address patient, uint8 vital, int32 low, int32 high) external {
        if (vital == 0 || vital > MAX_VITAL) revert AlertRegistry__InvalidVital(vital);
        if (low >= high) revert AlertRegistry__InvalidRange(low, high);
        if (msg.sender != patient && !_consents.hasAccess(patient, msg.sender, uint32(1) << vital)) {
            revert AlertRegistry__NotAuthorized(patient, msg.sender);
        }
        _thresholds[patient][vital] = Threshold({low: low, high: high, isSet: true});
        emit ThresholdSet(patient, vital, low, high, msg.sender);
    }

    /// @inheritdoc IAlertRegistry
    function thresholdOf(address patient, uint8 vital) external view returns (int32 low, int32 high, bool isSet) {
        Threshold memory threshold = _thresholds[patient][vital];
        return (threshold.low, threshold.high, threshold.isSet);
    }

    /// @inheritdoc IAlertRegistry
    function evaluate(address patient, uint8 vital, int32 value) external view returns (int8) {
        Threshold memory threshold = _thresholds[patient][vital];
        if (!threshold.isSet) revert AlertRegistry__NoPolicy(patient, vital);
        if (value < threshold.low) return -1;
        if (value > threshold.high) return 1;
        return 0;
    }

    /// @inheritdoc IAlertRegistry
    function recordAlert(uint64 groupId, bytes calldata keyImage, bytes32 ciphertextHash, bytes32 locator) external {
        if (_trustGroups.masterOf(groupId) != msg.sender) revert AlertRegistry__NotMaster(groupId, msg.sender);
        if (keyImage.length != 33 || (keyImage[0] != 0x02 && keyImage[0] != 0x03)) {
            revert AlertRegistry__InvalidKeyImage();
        }
        bytes32 keyImageHash = keccak256(keyImage);
        if (_usedKeyImages[keyImageHash]) revert AlertRegistry__KeyImageUsed(keyImageHash);
        _usedKeyImages[keyImageHash] = true;
        uint256 index = _alertCounts[groupId]++;
        emit AlertRecorded(groupId, index, keyImageHash, ciphertextHash, locator);
    }

    /// @inheritdoc IAlertRegistry
    function keyImageUsed(bytes calldata keyImage) external view returns (bool) {
        return _usedKeyImages[keccak256(keyImage)];
    }

    /// @inheritdoc IAlertRegistry
    function alertCount(uint64 groupId) external view returns (uint256) {
        return _alertCounts[groupId];
    }

    /// @notice The TrustGroups contract that says who a group's master is.
    function trustGroups() external view returns (address) {
        return address(_trustGroups);
    }

    /// @notice The ConsentRegistry consulted for providers' rights to set thresholds.
    function consentRegistry() external view returns (address) {
        return address(_consents);
    }
}
