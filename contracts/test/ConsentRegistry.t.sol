// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {ConsentRegistry} from "../src/ConsentRegistry.sol";
import {IConsentRegistry} from "../src/interfaces/IConsentRegistry.sol";
import {TestBase} from "./utils/TestBase.sol";

contract ConsentRegistryTest is TestBase {
    event ProviderRegistered(address indexed provider);
    event AccessRequested(address indexed patient, address indexed provider, uint32 scope);
    event ConsentGranted(address indexed patient, address indexed provider, uint32 scope, uint64 expiresAt);
    event ConsentDenied(address indexed patient, address indexed provider);
    event ConsentRevoked(address indexed patient, address indexed provider);
    event BreakGlassAccessed(
        address indexed patient,
        address indexed provider,
        uint32 scope,
        uint8 reasonCode,
        bytes32 reasonHash,
        uint64 expiresAt
    );

    ConsentRegistry internal consent;
    address internal admin = address(0xAD);
    address internal patient = address(0x9A71E47);
    address internal provider = address(0xD0C);
    address internal provider2 = address(0xD0C2);
    address internal stranger = address(0x5EED);

    uint32 internal constant HR = uint32(1) << 3;
    uint32 internal constant SPO2_BIT = uint32(1) << 4;
    uint32 internal constant TEMP = uint32(1) << 5;
    uint64 internal constant T0 = 1_700_000_000;
    uint64 internal constant DAY = 1 days;

    function setUp() public {
        vm.warp(T0);
        vm.prank(admin);
        consent = new ConsentRegistry();
        vm.startPrank(admin);
        consent.registerProvider(provider);
        consent.registerProvider(provider2);
        vm.stopPrank();
    }

    function status(address p, address q) internal view returns (IConsentRegistry.ConsentStatus s) {
        (s,,,) = consent.consentOf(p, q);
    }

    // ------------------------------------------------------------------ providers

    function test_RegisterProvider_GrantsRoleAndEmits() public {
        vm.expectEmit(true, true, true, true, address(consent));
        emit ProviderRegistered(stranger);
        vm.prank(admin);
        consent.registerProvider(stranger);
        vm.assertTrue(consent.isProvider(stranger), "provider");
        vm.assertTrue(consent.hasRole(consent.PROVIDER_ROLE(), stranger), "role");
        vm.assertTrue(consent.hasRole(consent.DEFAULT_ADMIN_ROLE(), admin), "deployer is admin");
    }

    function test_RevertWhen_RegisterProvider_NotAdmin() public {
        bytes32 adminRole = consent.DEFAULT_ADMIN_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, provider, adminRole)
        );
        vm.prank(provider);
        consent.registerProvider(stranger);
    }

    function test_RevertWhen_RegisterProvider_Twice() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__AlreadyProvider.selector, provider));
        vm.prank(admin);
        consent.registerProvider(provider);
    }

    // ------------------------------------------------------------------ request / grant / deny / revoke

    function test_RequestAccess_RecordsAndEmits() public {
        vm.expectEmit(true, true, true, true, address(consent));
        emit AccessRequested(patient, provider, HR | SPO2_BIT);
        vm.prank(provider);
        consent.requestAccess(patient, HR | SPO2_BIT);
        (IConsentRegistry.ConsentStatus s, uint32 scope, uint64 exp, uint64 bg) = consent.consentOf(patient, provider);
        vm.assertEq(uint256(s), uint256(IConsentRegistry.ConsentStatus.Requested), "status");
        vm.assertEq(uint256(scope), HR | SPO2_BIT, "scope");
        vm.assertEq(uint256(exp) + uint256(bg), 0, "no expiry");
        vm.assertFalse(consent.hasAccess(patient, provider, HR), "a request is not access");
        vm.assertEq(consent.providersOf(patient).length, 1, "listed");
    }

    function test_RevertWhen_RequestAccess_NotProvider() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NotProvider.selector, stranger));
        vm.prank(stranger);
        consent.requestAccess(patient, HR);
    }

    function test_RevertWhen_RequestAccess_BadScope() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, 0));
        vm.prank(provider);
        consent.requestAccess(patient, 0);
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, 1));
        vm.prank(provider);
        consent.requestAccess(patient, 1); // bit 0 is no vital
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, 1 << 9));
        vm.prank(provider);
        consent.requestAccess(patient, 1 << 9);
    }

    function test_RevertWhen_RequestAccess_ZeroPatient() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidPatient.selector));
        vm.prank(provider);
        consent.requestAccess(address(0), HR);
    }

    function test_RevertWhen_RequestAccess_AlreadyGranted() public {
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        vm.expectRevert(
            abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__AlreadyGranted.selector, patient, provider)
        );
        vm.prank(provider);
        consent.requestAccess(patient, HR | TEMP);
        // Once the grant has expired, asking again is fine.
        vm.warp(T0 + DAY);
        vm.prank(provider);
        consent.requestAccess(patient, HR | TEMP);
        vm.assertEq(uint256(status(patient, provider)), uint256(IConsentRegistry.ConsentStatus.Requested), "re-ask");
    }

    function test_Grant_GivesAccessWithinScopeAndTime() public {
        vm.prank(provider);
        consent.requestAccess(patient, HR | SPO2_BIT);
        vm.expectEmit(true, true, true, true, address(consent));
        emit ConsentGranted(patient, provider, HR | SPO2_BIT, T0 + DAY);
        vm.prank(patient);
        consent.grant(provider, HR | SPO2_BIT, T0 + DAY);

        vm.assertTrue(consent.hasAccess(patient, provider, HR), "HR");
        vm.assertTrue(consent.hasAccess(patient, provider, HR | SPO2_BIT), "HR+SpO2");
        vm.assertFalse(consent.hasAccess(patient, provider, TEMP), "out of scope");
        vm.assertFalse(consent.hasAccess(patient, provider, HR | TEMP), "partly out of scope");
        vm.assertFalse(consent.hasAccess(patient, provider2, HR), "other provider");
        vm.assertFalse(consent.hasAccess(provider, patient, HR), "direction matters");
        vm.assertEq(consent.providersOf(patient).length, 1, "listed once");
    }

    function test_Grant_ExpiresAtExactlyExpiresAt() public {
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        vm.warp(T0 + DAY - 1);
        vm.assertTrue(consent.hasAccess(patient, provider, HR), "last second");
        vm.warp(T0 + DAY);
        vm.assertFalse(consent.hasAccess(patient, provider, HR), "expired");
    }

    function test_Grant_WithoutRequestAndOverwrite() public {
        vm.prank(patient);
        consent.grant(provider, HR | TEMP, T0 + DAY);
        vm.prank(patient);
        consent.grant(provider, HR, T0 + 2 * DAY); // narrow and extend
        vm.assertFalse(consent.hasAccess(patient, provider, TEMP), "narrowed");
        vm.warp(T0 + DAY + 1);
        vm.assertTrue(consent.hasAccess(patient, provider, HR), "extended");
    }

    function test_RevertWhen_Grant_NotProvider() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NotProvider.selector, stranger));
        vm.prank(patient);
        consent.grant(stranger, HR, T0 + DAY);
    }

    function test_RevertWhen_Grant_ExpiryNotInFuture() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__ExpiryNotInFuture.selector, T0, T0));
        vm.prank(patient);
        consent.grant(provider, HR, T0);
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__ExpiryNotInFuture.selector, T0 - 1, T0));
        vm.prank(patient);
        consent.grant(provider, HR, T0 - 1);
    }

    function test_RevertWhen_Grant_BadScope() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, 0));
        vm.prank(patient);
        consent.grant(provider, 0, T0 + DAY);
    }

    function test_Deny_RefusesPendingRequest() public {
        vm.prank(provider);
        consent.requestAccess(patient, HR);
        vm.expectEmit(true, true, true, true, address(consent));
        emit ConsentDenied(patient, provider);
        vm.prank(patient);
        consent.deny(provider);
        vm.assertEq(uint256(status(patient, provider)), uint256(IConsentRegistry.ConsentStatus.Denied), "denied");
        vm.assertFalse(consent.hasAccess(patient, provider, HR), "no access");
    }

    function test_RevertWhen_Deny_NothingPending() public {
        vm.expectRevert(
            abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NoPendingRequest.selector, patient, provider)
        );
        vm.prank(patient);
        consent.deny(provider);
        // A grant is not a pending request either.
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        vm.expectRevert(
            abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NoPendingRequest.selector, patient, provider)
        );
        vm.prank(patient);
        consent.deny(provider);
    }

    function test_RevertWhen_Deny_ByAnotherAccount() public {
        vm.prank(provider);
        consent.requestAccess(patient, HR);
        // Only the patient's own key can deny: a stranger has no pending request of its own.
        vm.expectRevert(
            abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NoPendingRequest.selector, stranger, provider)
        );
        vm.prank(stranger);
        consent.deny(provider);
    }

    function test_Revoke_EndsAccess() public {
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        vm.expectEmit(true, true, true, true, address(consent));
        emit ConsentRevoked(patient, provider);
        vm.prank(patient);
        consent.revoke(provider);
        vm.assertFalse(consent.hasAccess(patient, provider, HR), "revoked");
        vm.assertEq(uint256(status(patient, provider)), uint256(IConsentRegistry.ConsentStatus.Revoked), "status");
        vm.assertEq(consent.providersOf(patient).length, 1, "stays listed");
    }

    function test_RevertWhen_Revoke_NotGranted() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NotGranted.selector, patient, provider));
        vm.prank(patient);
        consent.revoke(provider);
    }

    function test_RevertWhen_Revoke_ByProvider() public {
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        // msg.sender is the patient side: the provider has no grant *from itself* to revoke.
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NotGranted.selector, provider, patient));
        vm.prank(provider);
        consent.revoke(patient);
        vm.assertTrue(consent.hasAccess(patient, provider, HR), "untouched");
    }

    // ------------------------------------------------------------------ break-glass

    function test_BreakGlass_GrantsWindowAndIsRecorded() public {
        bytes32 reasonHash = keccak256("unconscious patient, ER admission");
        uint64 until = T0 + consent.BREAK_GLASS_WINDOW();
        vm.expectEmit(true, true, true, true, address(consent));
        emit BreakGlassAccessed(patient, provider, HR | SPO2_BIT, 3, reasonHash, until);
        vm.prank(provider);
        consent.breakGlass(patient, HR | SPO2_BIT, 3, reasonHash);

        vm.assertTrue(consent.hasAccess(patient, provider, HR | SPO2_BIT), "emergency access");
        vm.assertFalse(consent.hasAccess(patient, provider, TEMP), "scope still applies");
        (,,, uint64 bg) = consent.consentOf(patient, provider);
        vm.assertEq(uint256(bg), until, "until");
        (uint32 bgScope, uint64 bgUntil) = consent.breakGlassOf(patient, provider);
        vm.assertEq(uint256(bgScope), HR | SPO2_BIT, "bg scope");
        vm.assertEq(uint256(bgUntil), until, "bg until");
        vm.assertEq(consent.providersOf(patient).length, 1, "listed");
        vm.warp(until - 1);
        vm.assertTrue(consent.hasAccess(patient, provider, HR), "last second");
        vm.warp(until);
        vm.assertFalse(consent.hasAccess(patient, provider, HR), "window closed");
    }

    function test_BreakGlass_SurvivesRevokeOfGrant() public {
        vm.prank(patient);
        consent.grant(provider, TEMP, T0 + DAY);
        vm.prank(provider);
        consent.breakGlass(patient, HR, 1, bytes32(0));
        vm.prank(patient);
        consent.revoke(provider);
        vm.assertFalse(consent.hasAccess(patient, provider, TEMP), "grant gone");
        vm.assertTrue(consent.hasAccess(patient, provider, HR), "emergency window runs out on its own");
    }

    function test_RevertWhen_BreakGlass_WithoutRole() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__NotProvider.selector, stranger));
        vm.prank(stranger);
        consent.breakGlass(patient, HR, 1, keccak256("x"));
    }

    function test_RevertWhen_BreakGlass_WithoutReason() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__ReasonRequired.selector));
        vm.prank(provider);
        consent.breakGlass(patient, HR, 0, keccak256("x"));
    }

    function test_RevertWhen_BreakGlass_BadScopeOrPatient() public {
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, 0));
        vm.prank(provider);
        consent.breakGlass(patient, 0, 1, keccak256("x"));
        vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidPatient.selector));
        vm.prank(provider);
        consent.breakGlass(address(0), HR, 1, keccak256("x"));
    }

    function test_ProvidersOf_ListsEachProviderOnce() public {
        vm.prank(provider);
        consent.requestAccess(patient, HR);
        vm.prank(patient);
        consent.grant(provider, HR, T0 + DAY);
        vm.prank(provider2);
        consent.breakGlass(patient, HR, 2, bytes32(0));
        vm.prank(provider2);
        consent.requestAccess(patient, TEMP);
        vm.prank(patient);
        consent.revoke(provider);
        address[] memory list = consent.providersOf(patient);
        vm.assertEq(list.length, 2, "two providers");
        vm.assertEq(list[0], provider, "first");
        vm.assertEq(list[1], provider2, "second");
        vm.assertEq(consent.providersOf(stranger).length, 0, "none");
    }

    // ------------------------------------------------------------------ fuzz

    /// @dev hasAccess against a reference model, around the expiry instant.
    function testFuzz_HasAccess_ExpiryAndScope(uint32 granted, uint32 asked, uint64 lifetime, uint8 offset) public {
        granted = uint32(bound(granted, 0, 0xFF)) << 1; // any subset of the eight vitals
        vm.assume(granted != 0);
        lifetime = uint64(bound(lifetime, 1, 10 * 365 days));
        uint64 expiresAt = T0 + lifetime;
        vm.prank(patient);
        consent.grant(provider, granted, expiresAt);
        // From 10 seconds before the expiry to 10 seconds after it.
        uint256 t = uint256(expiresAt) - 10 + bound(offset, 0, 20);
        vm.warp(t);
        bool expected = t < expiresAt && (asked & ~granted) == 0;
        vm.assertEq(consent.hasAccess(patient, provider, asked), expected, "model");
    }

    function testFuzz_Grant_ExpiryMustBeFuture(uint64 expiresAt) public {
        if (expiresAt <= T0) {
            vm.expectRevert(
                abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__ExpiryNotInFuture.selector, expiresAt, T0)
            );
        }
        vm.prank(patient);
        consent.grant(provider, HR, expiresAt);
    }

    function testFuzz_Scope_OnlyVitalBits(uint32 scope) public {
        bool valid = scope != 0 && scope & ~uint32(0x1FE) == 0;
        if (!valid) {
            vm.expectRevert(abi.encodeWithSelector(ConsentRegistry.ConsentRegistry__InvalidScope.selector, scope));
        }
        vm.prank(patient);
        consent.grant(provider, scope, T0 + DAY);
    }

    function testFuzz_BreakGlass_Window(uint32 scope, uint64 elapsed) public {
        scope = uint32(bound(scope, 1, 0xFF)) << 1;
        elapsed = uint64(bound(elapsed, 0, 2 * consent.BREAK_GLASS_WINDOW()));
        vm.prank(provider);
        consent.breakGlass(patient, scope, 9, keccak256("reason"));
        vm.warp(T0 + elapsed);
        vm.assertEq(consent.hasAccess(patient, provider, scope), elapsed < consent.BREAK_GLASS_WINDOW(), "window model");
    }
}
