// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IAlertRegistry
 * @notice On-chain alert policy (per-patient, per-vital thresholds) and the log of alerts the
 * gateways raised. Values are int32 fixed-point with 2 decimals (37.25 °C → 3725). Vital kinds:
 * 1 systolic BP, 2 diastolic BP, 3 heart rate, 4 SpO2, 5 body temperature, 6 glucose.
 *
 * An alert record holds only hashes and an opaque locator: the bLSAG key image (hashed), the hash
 * of the encrypted alert and where to fetch it. Neither the vital nor its value is on chain.
 */
interface IAlertRegistry {
    /// @notice Emitted after the thresholds of (`patient`, `vital`) were set by `setBy`.
    event ThresholdSet(address indexed patient, uint8 indexed vital, int32 low, int32 high, address setBy);

    /// @notice Emitted after the `alertIndex`-th (0-based) alert of `groupId` was recorded.
    event AlertRecorded(
        uint64 indexed groupId,
        uint256 indexed alertIndex,
        bytes32 keyImageHash,
        bytes32 ciphertextHash,
        bytes32 locator
    );

    /**
     * @notice Sets the inclusive normal range [`low`, `high`] of `vital` for `patient`.
     * The caller is the patient, or a provider the patient consented to for `1 << vital`.
     */
    function setThreshold(address patient, uint8 vital, int32 low, int32 high) external;

    /// @notice The thresholds of (`patient`, `vital`), and whether they were ever set.
    function thresholdOf(address patient, uint8 vital) external view returns (int32 low, int32 high, bool isSet);

    /**
     * @notice -1 if `value < low`, 0 if `low <= value <= high`, +1 if `value > high`.
     * Reverts with `AlertRegistry__NoPolicy` if no threshold is set.
     */
    function evaluate(address patient, uint8 vital, int32 value) external view returns (int8);

    /**
     * @notice Records an alert of `groupId`. Only the group's current master may call it.
     * @param keyImage The 33-byte compressed secp256k1 key image of the alert's bLSAG ring
     * signature; each key image is accepted once, so a replayed alert is refused.
     * @param ciphertextHash Hash of the encrypted alert.
     * @param locator Opaque pointer to the ciphertext in the store.
     */
    function recordAlert(uint64 groupId, bytes calldata keyImage, bytes32 ciphertextHash, bytes32 locator) external;

    /// @notice Whether `keyImage` was already used by a recorded alert.
    function keyImageUsed(bytes calldata keyImage) external view returns (bool);

    /// @notice Number of alerts recorded for `groupId`.
    function alertCount(uint64 groupId) external view returns (uint256);
}
