// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IConsentRegistry
 * @notice Patient-controlled consent of registered providers to vital-sign scopes, with an
 * always-recorded, time-boxed emergency ("break-glass") path.
 *
 * A scope is a uint32 bitmask with bit `1 << vital` for each vital kind: 1 systolic BP,
 * 2 diastolic BP, 3 heart rate, 4 SpO2, 5 body temperature, 6 glucose, 7 respiratory rate,
 * 8 capillary glucose (so valid bits are 0x1FE).
 * Patients and providers are pseudonymous addresses; nothing else about them is stored.
 */
interface IConsentRegistry {
    /// @notice State of a (patient, provider) consent record.
    enum ConsentStatus {
        None,
        Requested,
        Granted,
        Denied,
        Revoked
    }

    /// @notice Emitted after the admin registers a provider.
    event ProviderRegistered(address indexed provider);
    /// @notice Emitted after a provider asks a patient for access to `scope`.
    event AccessRequested(address indexed patient, address indexed provider, uint32 scope);
    /// @notice Emitted after a patient grants `scope` to a provider until `expiresAt`.
    event ConsentGranted(address indexed patient, address indexed provider, uint32 scope, uint64 expiresAt);
    /// @notice Emitted after a patient refuses a provider's pending request.
    event ConsentDenied(address indexed patient, address indexed provider);
    /// @notice Emitted after a patient revokes a provider's grant.
    event ConsentRevoked(address indexed patient, address indexed provider);
    /// @notice Emitted after a provider used emergency access; always recorded.
    event BreakGlassAccessed(
        address indexed patient,
        address indexed provider,
        uint32 scope,
        uint8 reasonCode,
        bytes32 reasonHash,
        uint64 expiresAt
    );

    /// @notice Registers `provider` (grants PROVIDER_ROLE). Only the admin may call it.
    function registerProvider(address provider) external;

    /// @notice A registered provider asks `patient` for access to `scope`.
    function requestAccess(address patient, uint32 scope) external;

    /// @notice The caller (a patient) grants `scope` to a registered `provider` until `expiresAt`.
    function grant(address provider, uint32 scope, uint64 expiresAt) external;

    /// @notice The caller (a patient) refuses `provider`'s pending request.
    function deny(address provider) external;

    /// @notice The caller (a patient) revokes `provider`'s grant. A break-glass window is not ended.
    function revoke(address provider) external;

    /**
     * @notice A registered provider takes emergency access to `patient`'s `scope` for
     * {BREAK_GLASS_WINDOW}. `reasonCode` must be non-zero; `reasonHash` commits to the
     * off-chain justification.
     */
    function breakGlass(address patient, uint32 scope, uint8 reasonCode, bytes32 reasonHash) external;

    /**
     * @notice True iff the provider holds an unexpired grant (status Granted,
     * `block.timestamp < expiresAt`) whose scope contains `scope`, or an unexpired break-glass
     * window whose scope contains `scope`.
     */
    function hasAccess(address patient, address provider, uint32 scope) external view returns (bool);

    /// @notice The consent record of (patient, provider).
    function consentOf(address patient, address provider)
        external
        view
        returns (ConsentStatus status, uint32 scope, uint64 expiresAt, uint64 breakGlassUntil);

    /// @notice The scope and end of the latest break-glass window of (patient, provider).
    function breakGlassOf(address patient, address provider) external view returns (uint32 scope, uint64 until);

    /// @notice Every provider that ever had a consent record with `patient` (filter with {hasAccess}).
    function providersOf(address patient) external view returns (address[] memory);

    /// @notice Whether `account` is a registered provider.
    function isProvider(address account) external view returns (bool);
}
