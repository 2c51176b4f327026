// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {KeyDirectory} from "../src/KeyDirectory.sol";
import {TestBase} from "./utils/TestBase.sol";

contract KeyDirectoryTest is TestBase {
    event KeyPublished(address indexed account);

    KeyDirectory internal directory;
    uint256 internal constant PATIENT_KEY = 0x9A71E47;
    address internal patient;

    function setUp() public {
        directory = new KeyDirectory();
        patient = vm.addr(PATIENT_KEY);
    }

    function test_PublishKey_StoresAndEmits() public {
        bytes memory key = publicKey(PATIENT_KEY);
        vm.expectEmit(true, true, true, true, address(directory));
        emit KeyPublished(patient);
        vm.prank(patient);
        directory.publishKey(key);
        vm.assertEq(directory.publicKeyOf(patient), key, "key");
        vm.assertTrue(directory.hasKey(patient), "hasKey");
    }

    function test_RevertWhen_PublishKey_SomeoneElsesKey() public {
        bytes memory key = publicKey(PATIENT_KEY);
        address mallory = vm.addr(0xBAD);
        vm.expectRevert(abi.encodeWithSelector(KeyDirectory.KeyDirectory__PublicKeyMismatch.selector, mallory, patient));
        vm.prank(mallory);
        directory.publishKey(key);
    }

    function test_RevertWhen_PublishKey_WrongLength() public {
        bytes memory key = compressedKey(PATIENT_KEY);
        vm.expectRevert(abi.encodeWithSelector(KeyDirectory.KeyDirectory__InvalidPublicKeyLength.selector, 33));
        vm.prank(patient);
        directory.publishKey(key);
    }

    function test_RevertWhen_PublishKey_Twice() public {
        bytes memory key = publicKey(PATIENT_KEY);
        vm.prank(patient);
        directory.publishKey(key);
        vm.expectRevert(abi.encodeWithSelector(KeyDirectory.KeyDirectory__AlreadyPublished.selector, patient));
        vm.prank(patient);
        directory.publishKey(key);
    }

    function test_RevertWhen_PublicKeyOf_NoKey() public {
        vm.expectRevert(abi.encodeWithSelector(KeyDirectory.KeyDirectory__NoKey.selector, patient));
        directory.publicKeyOf(patient);
        vm.assertFalse(directory.hasKey(patient), "hasKey");
    }

    function testFuzz_PublishKey_AnyKey(uint256 seed) public {
        uint256 key = boundKey(seed);
        bytes memory pub = publicKey(key);
        vm.prank(vm.addr(key));
        directory.publishKey(pub);
        vm.assertEq(directory.publicKeyOf(vm.addr(key)), pub, "round-trip");
    }
}
