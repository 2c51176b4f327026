// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";

/**
 * @title ConsentRegistry
 * @notice Consent of providers to a patient's vital-sign scopes. The patient is always
 * `msg.sender` of grant / deny / revoke, so only a patient's own key changes its consents.
 * The deployer is the admin and registers providers.
 */
contract ConsentRegistry is IConsentRegistry, AccessControl {
    /// @notice Role of registered care providers.
    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");

    /// @notice Length of a break-glass window.
    uint64 public constant BREAK_GLASS_WINDOW = 4 hours;

    /// @notice The scope bits of the eight known vital kinds (bits 1..8).
    uint32 public constant ALL_VITALS = 0x1FE;

    /// @dev One storage slot (8 + 32 + 64 + 64 + 32 bits).
    struct Consent {
        ConsentStatus status;
        uint32 scope;
        uint64 expiresAt;
        uint64 breakGlassUntil;
        uint32 breakGlassScope;
    }

    mapping(address patient => mapping(address provider => Consent)) private _consents;
    mapping(address patient => address[]) private _providers;

    /// @notice The account is not a registered provider.
    error ConsentRegistry__NotProvider(address account);
    /// @notice The provider is already registered.
    error ConsentRegistry__AlreadyProvider(address provider);
    /// @notice A scope must be non-zero and only use the known vital bits (0x1FE).
    error ConsentRegistry__InvalidScope(uint32 scope);
    /// @notice The patient address must be non-zero.
    error ConsentRegistry__InvalidPatient();
    /// @notice A grant must expire in the future.
    error ConsentRegistry__ExpiryNotInFuture(uint64 expiresAt, uint256 nowTimestamp);
    /// @notice The provider already holds an unexpired grant; the patient can widen it directly.
    error ConsentRegistry__AlreadyGranted(address patient, address provider);
    /// @notice There is no pending request to deny.
    error ConsentRegistry__NoPendingRequest(address patient, address provider);
    /// @notice There is no grant to revoke.
    error ConsentRegistry__NotGranted(address patient, address provider);
    /// @notice Break-glass needs a non-zero reason code.
    error ConsentRegistry__ReasonRequired();

    constructor() {
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
    }

    modifier onlyProvider() {
        if (!hasRole(PROVIDER_ROLE, msg.sender)) revert ConsentRegistry__NotProvider(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ mutations

    /// @inheritdoc IConsentRegistry
    function registerProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (!_grantRole(PROVIDER_ROLE, provider)) revert ConsentRegistry__AlreadyProvider(provider);
        emit ProviderRegistered(provider);
    }

    /// @inheritdoc IConsentRegistry
    function requestAccess(address patient, uint32 scope) external onlyProvider {
        if (patient == address(0)) revert ConsentRegistry__InvalidPatient();
        _requireScope(scope);
        Consent storage consent = _record(patient, msg.sender);
        if (consent.status == ConsentStatus.Granted && block.timestamp < consent.expiresAt) {
            revert ConsentRegistry__AlreadyGranted(patient, msg.sender);
        }
        consent.status = ConsentStatus.Requested;
        consent.scope = scope;
        consent.expiresAt = 0;
        emit AccessRequested(patient, msg.sender, scope);
    }

    /// @inheritdoc IConsentRegistry
    function grant(address provider, uint32 scope, uint64 expiresAt) external {
        if (!hasRole(PROVIDER_ROLE, provider)) revert ConsentRegistry__NotProvider(provider);
        _requireScope(scope);
        if (expiresAt <= block.timestamp) revert ConsentRegistry__ExpiryNotInFuture(expiresAt, block.timestamp);
        Consent storage consent = _record(msg.sender, provider);
        consent.status = ConsentStatus.Granted;
        consent.scope = scope;
        consent.expiresAt = expiresAt;
        emit ConsentGranted(msg.sender, provider, scope, expiresAt);
    }

    /// @inheritdoc IConsentRegistry
    function deny(address provider) external {
        Consent storage consent = _consents[msg.sender][provider];
        if (consent.status != ConsentStatus.Requested) revert ConsentRegistry__NoPendingRequest(msg.sender, provider);
        consent.status = ConsentStatus.Denied;
        consent.scope = 0;
        emit ConsentDenied(msg.sender, provider);
    }

    /// @inheritdoc IConsentRegistry
    function revoke(address provider) external {
        Consent storage consent = _consents[msg.sender][provider];
        if (consent.status != ConsentStatus.Granted) revert ConsentRegistry__NotGranted(msg.sender, provider);
        consent.status = ConsentStatus.Revoked;
        consent.scope = 0;
        consent.expiresAt = 0;
        emit ConsentRevoked(msg.sender, provider);
    }

    /// @inheritdoc IConsentRegistry
    function breakGlass(address patient, uint32 scope, uint8 reasonCode, bytes32 reasonHash) external onlyProvider {
        if (patient == address(0)) revert ConsentRegistry__InvalidPatient();
        _requireScope(scope);
        if (reasonCode == 0) revert ConsentRegistry__ReasonRequired();
        uint64 until = uint64(block.timestamp) + BREAK_GLASS_WINDOW;
        Consent storage consent = _record(patient, msg.sender);
        consent.breakGlassUntil = until;
        consent.breakGlassScope = scope;
        emit BreakGlassAccessed(patient, msg.sender, scope, reasonCode, reasonHash, until);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IConsentRegistry
    function hasAccess(address patient, address provider, uint32 scope) external view returns (bool) {
        Consent memory consent = _consents[patient][provider];
        bool granted = consent.status == ConsentStatus.Granted && block.timestamp < consent.expiresAt
            && scope & ~consent.scope == 0;
        bool emergency = block.timestamp < consent.breakGlassUntil && scope & ~consent.breakGlassScope == 0;
        return granted || emergency;
    }

    /// @inheritdoc IConsentRegistry
    function consentOf(address patient, address provider)
        external
        view
        returns (ConsentStatus status, uint32 scope, uint64 expiresAt, uint64 breakGlassUntil)
    {
        Consent memory consent = _consents[patient][provider];
        return (consent.status, consent.scope, consent.expiresAt, consent.breakGlassUntil);
    }

    /// @inheritdoc IConsentRegistry
    function breakGlassOf(address patient, address provider) external view returns (uint32 scope, uint64 until) {
        Consent memory consent = _consents[patient][provider];
        return (consent.breakGlassScope, consent.breakGlassUntil);
    }

    /// @inheritdoc IConsentRegistry
    function providersOf(address patient) external view returns (address[] memory) {
        return _providers[patient];
    }

    /// @inheritdoc IConsentRegistry
    function isProvider(address account) external view returns (bool) {
        return hasRole(PROVIDER_ROLE, account);
    }

    // ------------------------------------------------------------------ internals

    function _requireScope(uint32 scope) private pure {
        if (scope == 0 || scope & ~ALL_VITALS != 0) revert ConsentRegistry__InvalidScope(scope);
    }

    /// @dev The (patient, provider) record, listing the provider under the patient on first use.
    function _record(address patient, address provider) private returns (Consent storage consent) {
        consent = _consents[patient][provider];
        if (consent.status == ConsentStatus.None && consent.breakGlassUntil == 0) {
            _providers[patient].push(provider);
        }
    }
}
