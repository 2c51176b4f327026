// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AlertRegistry} from "../src/AlertRegistry.sol";
import {AnchorLog} from "../src/AnchorLog.sol";
import {ConsentRegistry} from "../src/ConsentRegistry.sol";
import {Vm} from "./utils/TestBase.sol";
import {TrustGroupsFixture} from "./utils/Fixtures.sol";

/**
 * @notice Gas budgets, measured as a transaction would be charged on a cancun chain:
 * 21,000 + calldata (4 gas per zero byte, 16 per non-zero byte) + the callee's execution gas.
 * Each measured call is the first touch of its storage in its test (setUp runs as a separate
 * transaction), so cold/warm access matches a real transaction. The figures agree with anvil
 * receipts and with `forge test --isolate --gas-report` (see docs/gas-report.md).
 */
contract GasTest is TrustGroupsFixture {
    uint256 internal constant ASSOCIATE_BUDGET = 150_000;
    uint256 internal constant ANCHOR_BUDGET = 50_000;
    bytes32 internal constant LOCATOR = keccak256("store locator");
    address internal constant PATIENT = address(0x9A71E47);
    address internal constant PROVIDER = address(0xD0C);

    AnchorLog internal log;
    AlertRegistry internal alerts;
    ConsentRegistry internal consent;

    function setUp() public {
        setUpGroups();
        createGroupAs(MASTER_KEY, GID, MASTER_OID);
        createGroupAs(OTHER_MASTER_KEY, OTHER_GID, OTHER_MASTER_OID); // its log is still empty
        log = new AnchorLog(address(groups));
        consent = new ConsentRegistry();
        alerts = new AlertRegistry(address(groups), address(consent));
        // Steady state for the anchor: the group's log already has 10 blocks anchored.
        vm.prank(master);
        log.anchor(GID, keccak256("root 10"), 10, 0, 9);
        // Steady state for alerts, grants and thresholds: one of each already exists.
        vm.prank(master);
        alerts.recordAlert(GID, compressedKey(0x1111), keccak256("ct"), LOCATOR);
        consent.registerProvider(PROVIDER);
        vm.prank(PATIENT);
        consent.grant(PROVIDER, 0x7E, uint64(block.timestamp + 1 days));
        vm.prank(PATIENT);
        alerts.setThreshold(PATIENT, 5, 3600, 3800);
    }

    /// @dev Transaction gas of the last call made with `data`.
    function txGas(bytes memory data) internal view returns (uint256) {
        uint256 calldataGas = 0;
        for (uint256 i = 0; i < data.length; ++i) {
            calldataGas += data[i] == 0 ? 4 : 16;
        }
        Vm.Gas memory g = vm.lastCallGas();
        return 21_000 + calldataGas + g.gasTotalUsed;
    }

    function callAs(address who, address target, bytes memory data) internal returns (uint256 gasUsed) {
        vm.prank(who);
        (bool ok,) = target.call(data);
        vm.assertTrue(ok, "call failed");
        gasUsed = txGas(data);
    }

    function anchorCall(uint64 size, uint64 first) internal view returns (bytes memory) {
        return abi.encodeCall(log.anchor, (GID, keccak256(abi.encode(size)), size, first, size - 1));
    }

    function test_Gas_AssociateWithinBudget() public {
        bytes memory tok = token(MASTER_KEY, GID, OID, device);
        bytes memory req = request(DEVICE_KEY, GID, OID, tok);
        bytes memory data = abi.encodeCall(groups.associate, (GID, OID, publicKey(DEVICE_KEY), tok, req));
        uint256 used = callAs(stranger, address(groups), data);
        vm.snapshotValue("associate", used);
        vm.assertLe(used, ASSOCIATE_BUDGET, "associate over budget");
    }

    function test_Gas_AnchorSteadyStateWithinBudget() public {
        uint256 used = callAs(master, address(log), anchorCall(11, 10));
        vm.snapshotValue("anchor (steady state, 1 block)", used);
        vm.assertLe(used, ANCHOR_BUDGET, "anchor over budget");
    }

    function test_Gas_AnchorCostIndependentOfBlockCount() public {
        bytes memory one = anchorCall(11, 10);
        bytes memory many = anchorCall(100_010, 10);
        // Execution gas must be identical; only calldata bytes may differ (a few non-zero bytes).
        uint256 calldataDelta = 0;
        for (uint256 i = 0; i < one.length; ++i) {
            uint256 a = one[i] == 0 ? 4 : 16;
            uint256 b = many[i] == 0 ? 4 : 16;
            calldataDelta += b > a ? b - a : 0;
        }
        uint256 usedOne = measureThenRollBack(one);
        uint256 usedMany = measureThenRollBack(many);
        vm.snapshotValue("anchor (steady state, 100000 blocks)", usedMany);
        vm.assertLe(usedMany, ANCHOR_BUDGET, "anchor of 100k blocks over budget");
        vm.assertEq(usedMany - calldataDelta, usedOne, "cost depends on block count beyond calldata");
    }

    /// @dev Measures one anchor call, then rolls the state back so both measurements start equal.
    function measureThenRollBack(bytes memory data) internal returns (uint256 used) {
        uint256 id = vm.snapshotState();
        used = callAs(master, address(log), data);
        vm.revertToState(id);
    }

    /// @dev The first anchor of a group also creates the group's `Latest` slot (zero → non-zero).
    function test_Gas_FirstAnchorOfAGroup() public {
        bytes memory data = abi.encodeCall(log.anchor, (OTHER_GID, keccak256("first"), 1, 0, 0));
        uint256 used = callAs(otherMaster, address(log), data);
        vm.snapshotValue("anchor (first of a group)", used);
    }

    // Figures recorded for docs/gas-report.md (no budget).

    function test_Gas_CreateGroup() public {
        bytes memory data = abi.encodeCall(groups.createGroup, (9, 9000, publicKey(NEW_MASTER_KEY)));
        vm.snapshotValue("createGroup", callAs(vm.addr(NEW_MASTER_KEY), address(groups), data));
    }

    function test_Gas_RecordAlertFirstOfAGroup() public {
        bytes memory data =
            abi.encodeCall(alerts.recordAlert, (OTHER_GID, compressedKey(0x2222), keccak256("ct"), LOCATOR));
        vm.snapshotValue("recordAlert (first of a group)", callAs(otherMaster, address(alerts), data));
    }

    function test_Gas_RecordAlertSteadyState() public {
        bytes memory data = abi.encodeCall(alerts.recordAlert, (GID, compressedKey(0x2222), keccak256("ct"), LOCATOR));
        vm.snapshotValue("recordAlert (steady state)", callAs(master, address(alerts), data));
    }

    function test_Gas_GrantFirst() public {
        bytes memory data = abi.encodeCall(consent.grant, (PROVIDER, 0x7E, uint64(block.timestamp + 1 days)));
        vm.snapshotValue("grant (first for the pair)", callAs(address(0xFEED), address(consent), data));
    }

    function test_Gas_GrantUpdate() public {
        bytes memory data = abi.encodeCall(consent.grant, (PROVIDER, 0x08, uint64(block.timestamp + 2 days)));
        vm.snapshotValue("grant (update)", callAs(PATIENT, address(consent), data));
    }

    function test_Gas_SetThresholdFirst() public {
        bytes memory data = abi.encodeCall(alerts.setThreshold, (PATIENT, 3, 5000, 11000));
        vm.snapshotValue("setThreshold (first for the vital)", callAs(PATIENT, address(alerts), data));
    }

    function test_Gas_SetThresholdUpdate() public {
        bytes memory data = abi.encodeCall(alerts.setThreshold, (PATIENT, 5, 3500, 3900));
        vm.snapshotValue("setThreshold (update)", callAs(PATIENT, address(alerts), data));
    }

    function test_Gas_SetThresholdByProvider() public {
        bytes memory data = abi.encodeCall(alerts.setThreshold, (PATIENT, 3, 5000, 11000));
        vm.snapshotValue("setThreshold (first, by a consented provider)", callAs(PROVIDER, address(alerts), data));
    }
}
