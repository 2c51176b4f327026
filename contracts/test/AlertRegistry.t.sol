// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AlertRegistry} from "../src/AlertRegistry.sol";
import {ConsentRegistry} from "../src/ConsentRegistry.sol";
import {TrustGroupsFixture} from "./utils/Fixtures.sol";

contract AlertRegistryTest is TrustGroupsFixture {
    event ThresholdSet(address indexed patient, uint8 indexed vital, int32 low, int32 high, address setBy);
    event AlertRecorded(
        uint64 indexed groupId,
        uint256 indexed alertIndex,
        bytes32 keyImageHash,
        bytes32 ciphertextHash,
        bytes32 locator
    );

    AlertRegistry internal alerts;
    ConsentRegistry internal consent;
    address internal admin = address(0xAD);
    address internal patient = address(0x9A71E47);
    address internal provider = address(0xD0C);

    bytes internal keyImage;
    bytes32 internal constant CT_HASH = keccak256("ciphertext");
    bytes32 internal constant LOCATOR = keccak256("store://alerts/1");

    function setUp() public {
        setUpGroups();
        createGroupAs(MASTER_KEY, GID, MASTER_OID);
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID);
        vm.prank(admin);
        consent = new ConsentRegistry();
        vm.prank(admin);
        consent.registerProvider(provider);
        alerts = new AlertRegistry(address(groups), address(consent));
        vm.warp(1_700_000_000);
        keyImage = compressedKey(0x1111); // any valid compressed point stands in for a key image
    }

    // ------------------------------------------------------------------ thresholds

    function test_SetThreshold_ByPatient() public {
        vm.expectEmit(true, true, true, true, address(alerts));
        emit ThresholdSet(patient, TEMPERATURE, 3600, 3800, patient);
        vm.prank(patient);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
        (int32 low, int32 high, bool isSet) = alerts.thresholdOf(patient, TEMPERATURE);
        vm.assertEq(int256(low), 3600, "low");
        vm.assertEq(int256(high), 3800, "high");
        vm.assertTrue(isSet, "set");
    }

    function test_SetThreshold_ByConsentedProvider() public {
        vm.prank(patient);
        consent.grant(provider, uint32(1) << HEART_RATE, uint64(block.timestamp + 1 days));
        vm.expectEmit(true, true, true, true, address(alerts));
        emit ThresholdSet(patient, HEART_RATE, 4000, 12000, provider);
        vm.prank(provider);
        alerts.setThreshold(patient, HEART_RATE, 4000, 12000);
        (,, bool isSet) = alerts.thresholdOf(patient, HEART_RATE);
        vm.assertTrue(isSet, "set");
    }

    /// @dev Respiratory rate (7) and capillary glucose (8): the full scope of the registry.
    function test_SetThreshold_NewestVitalsUnderAllVitalsConsent() public {
        uint32 all = consent.ALL_VITALS(); // read before vm.prank, which the next call takes
        uint8 last = alerts.MAX_VITAL();
        vm.prank(patient);
        consent.grant(provider, all, uint64(block.timestamp + 1 days));
        for (uint8 vital = 7; vital <= last; ++vital) {
            vm.prank(provider);
            alerts.setThreshold(patient, vital, 900, 2000);
            (int32 low, int32 high, bool isSet) = alerts.thresholdOf(patient, vital);
            vm.assertEq(int256(low), 900, "low");
            vm.assertEq(int256(high), 2000, "high");
            vm.assertTrue(isSet, "set");
        }
        vm.assertEq(last, 8, "max vital");
        vm.assertEq(all, (uint32(1) << 9) - 2, "all vitals: bits 1..8");
    }

    function test_SetThreshold_ByProviderUnderBreakGlass() public {
        vm.prank(provider);
        consent.breakGlass(patient, uint32(1) << SPO2, 1, keccak256("hypoxia"));
        vm.prank(provider);
        alerts.setThreshold(patient, SPO2, 9000, 10000);
        (,, bool isSet) = alerts.thresholdOf(patient, SPO2);
        vm.assertTrue(isSet, "set");
    }

    function test_RevertWhen_SetThreshold_ByStranger() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotAuthorized.selector, patient, stranger));
        vm.prank(stranger);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
    }

    function test_RevertWhen_SetThreshold_ProviderWithoutConsent() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotAuthorized.selector, patient, provider));
        vm.prank(provider);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
    }

    function test_RevertWhen_SetThreshold_ProviderConsentForAnotherVital() public {
        vm.prank(patient);
        consent.grant(provider, uint32(1) << HEART_RATE, uint64(block.timestamp + 1 days));
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotAuthorized.selector, patient, provider));
        vm.prank(provider);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
    }

    function test_RevertWhen_SetThreshold_ProviderConsentExpiredOrRevoked() public {
        vm.prank(patient);
        consent.grant(provider, uint32(1) << TEMPERATURE, uint64(block.timestamp + 1 days));
        vm.warp(block.timestamp + 1 days);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotAuthorized.selector, patient, provider));
        vm.prank(provider);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);

        vm.prank(patient);
        consent.grant(provider, uint32(1) << TEMPERATURE, uint64(block.timestamp + 1 days));
        vm.prank(patient);
        consent.revoke(provider);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotAuthorized.selector, patient, provider));
        vm.prank(provider);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
    }

    function test_RevertWhen_SetThreshold_InvalidVital() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidVital.selector, 0));
        vm.prank(patient);
        alerts.setThreshold(patient, 0, 1, 2);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidVital.selector, 9));
        vm.prank(patient);
        alerts.setThreshold(patient, 9, 1, 2);
    }

    function test_RevertWhen_SetThreshold_LowNotBelowHigh() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidRange.selector, 3800, 3800));
        vm.prank(patient);
        alerts.setThreshold(patient, TEMPERATURE, 3800, 3800);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidRange.selector, 3900, 3800));
        vm.prank(patient);
        alerts.setThreshold(patient, TEMPERATURE, 3900, 3800);
    }

    function test_Evaluate_Boundaries() public {
        vm.prank(patient);
        alerts.setThreshold(patient, TEMPERATURE, 3600, 3800);
        vm.assertEq(int256(alerts.evaluate(patient, TEMPERATURE, 3599)), -1, "below");
        vm.assertEq(int256(alerts.evaluate(patient, TEMPERATURE, 3600)), 0, "== low");
        vm.assertEq(int256(alerts.evaluate(patient, TEMPERATURE, 3725)), 0, "inside");
        vm.assertEq(int256(alerts.evaluate(patient, TEMPERATURE, 3800)), 0, "== high");
        vm.assertEq(int256(alerts.evaluate(patient, TEMPERATURE, 3801)), 1, "above");
    }

    function test_RevertWhen_Evaluate_NoPolicy() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NoPolicy.selector, patient, GLUCOSE));
        alerts.evaluate(patient, GLUCOSE, 100);
    }

    // ------------------------------------------------------------------ alerts

    function test_RecordAlert_StoresKeyImageAndEmits() public {
        vm.expectEmit(true, true, true, true, address(alerts));
        emit AlertRecorded(GID, 0, keccak256(keyImage), CT_HASH, LOCATOR);
        vm.prank(master);
        alerts.recordAlert(GID, keyImage, CT_HASH, LOCATOR);
        vm.assertTrue(alerts.keyImageUsed(keyImage), "used");
        vm.assertEq(alerts.alertCount(GID), 1, "count");
        vm.assertEq(alerts.alertCount(OTHER_GID), 0, "other group");

        bytes memory keyImage2 = compressedKey(0x2222);
        vm.expectEmit(true, true, true, true, address(alerts));
        emit AlertRecorded(GID, 1, keccak256(keyImage2), CT_HASH, LOCATOR);
        vm.prank(master);
        alerts.recordAlert(GID, keyImage2, CT_HASH, LOCATOR);
        vm.assertEq(alerts.alertCount(GID), 2, "count 2");
    }

    function test_RevertWhen_RecordAlert_ReusedKeyImage() public {
        vm.prank(master);
        alerts.recordAlert(GID, keyImage, CT_HASH, LOCATOR);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__KeyImageUsed.selector, keccak256(keyImage)));
        vm.prank(master);
        alerts.recordAlert(GID, keyImage, keccak256("another ciphertext"), LOCATOR);
        // A key image is global: another group cannot replay it either.
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__KeyImageUsed.selector, keccak256(keyImage)));
        vm.prank(otherMaster);
        alerts.recordAlert(OTHER_GID, keyImage, CT_HASH, LOCATOR);
        vm.assertEq(alerts.alertCount(GID), 1, "count unchanged");
    }

    function test_RevertWhen_RecordAlert_NotMaster() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotMaster.selector, GID, stranger));
        vm.prank(stranger);
        alerts.recordAlert(GID, keyImage, CT_HASH, LOCATOR);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotMaster.selector, GID, otherMaster));
        vm.prank(otherMaster);
        alerts.recordAlert(GID, keyImage, CT_HASH, LOCATOR);
        associateWith(MASTER_KEY, GID, OID, DEVICE_KEY);
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__NotMaster.selector, GID, device));
        vm.prank(device);
        alerts.recordAlert(GID, keyImage, CT_HASH, LOCATOR);
    }

    function test_RevertWhen_RecordAlert_MalformedKeyImage() public {
        bytes memory tooShort = new bytes(32);
        bytes memory uncompressed = abi.encodePacked(bytes1(0x04), publicKey(0x1111));
        bytes memory badPrefix = abi.encodePacked(keyImage);
        badPrefix[0] = 0x04;
        bytes[3] memory bad = [tooShort, uncompressed, badPrefix];
        for (uint256 i = 0; i < bad.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidKeyImage.selector));
            vm.prank(master);
            alerts.recordAlert(GID, bad[i], CT_HASH, LOCATOR);
        }
    }

    function test_RevertWhen_Constructor_ZeroAddress() public {
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__ZeroAddress.selector));
        new AlertRegistry(address(0), address(consent));
        vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__ZeroAddress.selector));
        new AlertRegistry(address(groups), address(0));
    }

    // ------------------------------------------------------------------ fuzz

    /// @dev Reference rule for evaluate(): -1 below low, 0 within [low, high], +1 above high.
    function referenceEvaluate(int32 low, int32 high, int32 value) internal pure returns (int8) {
        if (value < low) return -1;
        if (value > high) return 1;
        return 0;
    }

    function testFuzz_Evaluate_MatchesReference(int32 a, int32 b, int32 value, uint8 vital) public {
        vm.assume(a != b);
        (int32 low, int32 high) = a < b ? (a, b) : (b, a);
        vital = uint8(bound(vital, 1, 8));
        vm.prank(patient);
        alerts.setThreshold(patient, vital, low, high);
        vm.assertEq(int256(alerts.evaluate(patient, vital, value)), int256(referenceEvaluate(low, high, value)), "v");
        // The boundaries and their neighbours, whatever the fuzzer picked for value.
        vm.assertEq(int256(alerts.evaluate(patient, vital, low)), 0, "low");
        vm.assertEq(int256(alerts.evaluate(patient, vital, high)), 0, "high");
        if (low > type(int32).min) vm.assertEq(int256(alerts.evaluate(patient, vital, low - 1)), -1, "low - 1");
        if (high < type(int32).max) vm.assertEq(int256(alerts.evaluate(patient, vital, high + 1)), 1, "high + 1");
    }

    function testFuzz_SetThreshold_RangeRule(int32 low, int32 high) public {
        if (low >= high) {
            vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidRange.selector, low, high));
        }
        vm.prank(patient);
        alerts.setThreshold(patient, GLUCOSE, low, high);
    }

    function testFuzz_SetThreshold_VitalRule(uint8 vital) public {
        if (vital == 0 || vital > 8) {
            vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__InvalidVital.selector, vital));
        }
        vm.prank(patient);
        alerts.setThreshold(patient, vital, -100, 100);
    }

    function testFuzz_RecordAlert_KeyImagesOnce(uint256 seed1, uint256 seed2) public {
        bytes memory k1 = compressedKey(boundKey(seed1));
        bytes memory k2 = compressedKey(boundKey(seed2));
        vm.prank(master);
        alerts.recordAlert(GID, k1, CT_HASH, LOCATOR);
        if (keccak256(k1) == keccak256(k2)) {
            vm.expectRevert(abi.encodeWithSelector(AlertRegistry.AlertRegistry__KeyImageUsed.selector, keccak256(k2)));
        }
        vm.prank(master);
        alerts.recordAlert(GID, k2, CT_HASH, LOCATOR);
    }
}
